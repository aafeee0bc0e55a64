# pookie-ns, mmdebstrap's customize hook for a foreign base OS (see src/bytecode/mod.rs): puts
# each version's real py_compile back, then compiles what the maintainer scripts asked for with
# an interpreter of the same Debian package version that runs natively — the host-arch base OS
# of the same recipe (`native`, its root; run through its own dynamic loader), or else the
# host's own — and under QEMU in the chroot only when neither matches. Set before this
# fragment: versions, native (may be empty), ldso (the host arch's loader, relative to a root),
# libdir (the host arch's multiarch library directory), compiler (compile.py's text); $1 is the
# chroot.
# shellcheck disable=SC2154 # the parameters are set before the fragment
set -eu
root=$1
lists=$root/var/lib/pookie-ns-bytecode
# version_of ADMINDIR PACKAGE: the installed version of PACKAGE in that dpkg database, or nothing.
version_of() {
    dpkg-query --admindir="$1" --showformat='${Version}\n' --show "$2" 2>/dev/null | head -n 1
}
for v in $versions; do
    rm -f "$root/usr/lib/python$v/py_compile.py"
    chroot "$root" dpkg-divert --quiet --package pookie-ns --rename \
        --divert "/usr/lib/python$v/py_compile.py.pookie-ns" --remove "/usr/lib/python$v/py_compile.py"
    want=$(version_of "$root/var/lib/dpkg" "libpython$v-minimal")
    for opt in 0 1; do
        list=$lists/$v.list
        [ "$opt" = 0 ] || list=$lists/$v-O.list
        [ -s "$list" ] || continue
        how="under QEMU"
        if [ -n "$native" ] && [ -n "$want" ] && [ -x "$native/usr/bin/python$v" ] \
            && [ "$(version_of "$native/var/lib/dpkg" "libpython$v-minimal")" = "$want" ]; then
            how="natively, with the host-arch base OS's python$v"
            run() {
                env -u PYTHONPATH -u PYTHONSTARTUP PYTHONHOME="$native/usr" \
                    "$native/$ldso" --library-path "$native/usr/$libdir:$native/$libdir" \
                    "$native/usr/bin/python$v" -S "$@"
            }
        elif [ -x "/usr/bin/python$v" ] && [ -n "$want" ] \
            && [ "$(version_of /var/lib/dpkg "libpython$v-minimal")" = "$want" ]; then
            how="natively, with the host's python$v"
            run() { env -u PYTHONPATH -u PYTHONHOME -u PYTHONSTARTUP "/usr/bin/python$v" -S "$@"; }
        else
            run() { chroot "$root" "/usr/bin/python$v" -E -S "$@"; }
        fi
        echo "pookie-ns: byte-compiling $(sort -u "$list" | wc -l) files for python$v $how"
        printf '%s\n' "$compiler" >"$lists/compile.py"
        if [ "$how" = "under QEMU" ]; then
            # Inside the chroot the root is /.
            sort -u "$list" | run /var/lib/pookie-ns-bytecode/compile.py "" "$opt"
        else
            sort -u "$list" | run "$lists/compile.py" "$root" "$opt"
        fi
    done
done
rm -rf "$lists"
