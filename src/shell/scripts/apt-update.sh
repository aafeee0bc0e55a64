# apt_update [APT OPTION...]: `apt-get update`, tried three times. Debian's mirrors are sometimes
# mid-sync for one index ("File has unexpected size ... Mirror sync in progress?", seen for
# bookworm-security's armhf Packages.xz, for hours). When the last try still fails, apt has kept
# every index it fetched and the old one of the failed, so the upgrade goes on from those, and
# the log says so. Put before the refresh scripts that call it (src/branch.rs).
apt_update() {
    try=1
    until apt-get "$@" update; do
        if [ "$try" = 3 ]; then
            echo "pookie-ns: apt-get update failed 3 times (a mirror mid-sync?): upgrading from the package lists it could fetch" >&2
            break
        fi
        try=$((try + 1))
        sleep 10
    done
}
