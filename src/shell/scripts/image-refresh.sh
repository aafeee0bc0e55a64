# The instance refresh of an image base OS (run by `/bin/sh -c`, as uid 0, networked): the
# package index of the image's own manager, so that `before-all` can install packages
# (`yum install -y libffi-devel`, `apt-get install -y ...`, `apk add ...`). Nothing is
# upgraded: the image is pinned by its digest, and its glibc, compilers and CPythons are the
# ones its maintainers tested; `pookie-ns update-baseos` pulls a newer image instead.
# Parameter: POOKIE_NS_PACKAGE_MANAGER, one of apt, dnf, yum, apk (detected at import).
set -e
echo "pookie-ns: refreshing the package index with $POOKIE_NS_PACKAGE_MANAGER (image: no upgrade)"
case "$POOKIE_NS_PACKAGE_MANAGER" in
    apt)
        apt-get update
        ;;
    dnf)
        if command -v dnf >/dev/null 2>&1; then dnf -y makecache; else microdnf -y makecache; fi
        ;;
    yum)
        yum -y makecache
        ;;
    apk)
        apk update
        ;;
    *)
        echo "pookie-ns: unknown package manager '$POOKIE_NS_PACKAGE_MANAGER'" >&2
        exit 2
        ;;
esac
