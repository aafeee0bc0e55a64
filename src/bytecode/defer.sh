# pookie-ns, mmdebstrap's essential hook for a foreign base OS (see src/bytecode/mod.rs): before
# the recipe's packages are installed, the stdlib's py_compile of each CPython version is
# diverted aside and the recording stand-in put in its place. Set before this fragment:
# versions (the recipe's CPython versions), stub (the stand-in's text); $1 is the chroot.
# shellcheck disable=SC2154 # the parameters are set before the fragment
set -eu
root=$1
mkdir -p "$root/var/lib/pookie-ns-bytecode"
for v in $versions; do
    chroot "$root" dpkg-divert --quiet --no-rename --package pookie-ns \
        --divert "/usr/lib/python$v/py_compile.py.pookie-ns" --add "/usr/lib/python$v/py_compile.py"
    mkdir -p "$root/usr/lib/python$v"
    printf '%s\n' "$stub" >"$root/usr/lib/python$v/py_compile.py"
done
