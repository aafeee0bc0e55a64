# shellcheck shell=sh
# The start of a toolchain (cross) build: the target's sysconfigdata, which tells Python's build
# tools the target's extension suffix (cpython-311-aarch64-linux-gnu) and compile flags, is
# copied from the sysroot to the cross directory (on PYTHONPATH), and its module name goes to
# POOKIE_NS_SYSCONFIGDATA for the toolchain's _PYTHON_SYSCONFIGDATA_NAME.
#
# Parameters:
#   POOKIE_NS_SYSROOT        where the target's base OS is mounted (/sysroot)
#   POOKIE_NS_SYSROOT_BASE   which base OS that is, for the log (debian-bookworm/arm64)
#   POOKIE_NS_CROSS_DIR      the cross directory (toolchain.cmake, build-requires.py)
#   POOKIE_NS_TOOLCHAIN      the toolchain's name, for the log
#   POOKIE_NS_TRIPLET        the target's multiarch triplet (aarch64-linux-gnu)
#   POOKIE_NS_PYTHON_VERSION the target's CPython (3.11)
: "${POOKIE_NS_SYSROOT:?}" "${POOKIE_NS_SYSROOT_BASE:?}" "${POOKIE_NS_CROSS_DIR:?}"
: "${POOKIE_NS_TOOLCHAIN:?}" "${POOKIE_NS_TRIPLET:?}" "${POOKIE_NS_PYTHON_VERSION:?}"

pookie_ns_lib=$POOKIE_NS_SYSROOT/usr/lib/python$POOKIE_NS_PYTHON_VERSION
echo "+ toolchain $POOKIE_NS_TOOLCHAIN: $POOKIE_NS_SYSROOT is $POOKIE_NS_SYSROOT_BASE; sysconfigdata from $pookie_ns_lib"
POOKIE_NS_SYSCONFIGDATA=
for f in "$pookie_ns_lib"/_sysconfigdata_*"$POOKIE_NS_TRIPLET"*.py; do
    case ${f##*/} in
    # The debug interpreter's (_sysconfigdata_d_linux_...).
    *_d_* | *_d.py) continue ;;
    esac
    if [ -e "$f" ]; then
        POOKIE_NS_SYSCONFIGDATA=${f##*/}
        break
    fi
done
if [ -z "$POOKIE_NS_SYSCONFIGDATA" ]; then
    echo "pookie-ns: no _sysconfigdata_*$POOKIE_NS_TRIPLET*.py in $pookie_ns_lib: is python$POOKIE_NS_PYTHON_VERSION installed in the target base OS?" >&2
    exit 1
fi
cp "$pookie_ns_lib/$POOKIE_NS_SYSCONFIGDATA" "$POOKIE_NS_CROSS_DIR/"
POOKIE_NS_SYSCONFIGDATA=${POOKIE_NS_SYSCONFIGDATA%.py}
