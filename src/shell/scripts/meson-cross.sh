# Writes a Meson cross file for a meson-python build in cross mode, from the toolchain's
# environment (exported before this runs): CC, CXX, AR, STRIP (optional), CPPFLAGS (where the
# target's headers are), CFLAGS and CXXFLAGS (a project's own; the toolchains set none, so that
# the optimisation comes from meson-python's release buildtype), LDFLAGS. Meson ignores CC & co. for the host machine of a cross build unless a cross file
# names them, and it needs [host_machine] to know it is one.
#
# Parameters (environment):
#   POOKIE_NS_MESON_CROSS_FILE  where to write it
#   POOKIE_NS_MESON_CPU_FAMILY, POOKIE_NS_MESON_CPU, POOKIE_NS_MESON_ENDIAN  [host_machine]
#   POOKIE_NS_SYSROOT           the target's base OS (headers, libraries, *.pc files)
#   POOKIE_NS_TRIPLET           its multiarch directory (aarch64-linux-gnu)
#
# Python itself is not in the file: meson-python runs Meson's python module with the build
# machine's interpreter, whose sysconfig is the target's (_PYTHON_SYSCONFIGDATA_NAME and
# PYTHONPATH of the cross environment): extension suffix, limited-API suffix and, through
# _PYTHON_HOST_PLATFORM, the wheel's platform tag.

set -eu
set -f # the words of CC, CFLAGS ... are split on blanks (quotes inside them are not honoured), never globbed

# A shell string of words as a Meson array: 'a b' -> ['a', 'b'].
meson_array() {
    out=""
    for word in $1; do
        word=$(printf '%s' "$word" | sed "s/'/\\\\'/g")
        out="$out${out:+, }'$word'"
    done
    printf '[%s]' "$out"
}

: "${POOKIE_NS_MESON_CROSS_FILE:?}" "${POOKIE_NS_MESON_CPU_FAMILY:?}" "${POOKIE_NS_MESON_CPU:?}"
: "${POOKIE_NS_MESON_ENDIAN:?}" "${POOKIE_NS_SYSROOT:?}" "${POOKIE_NS_TRIPLET:?}" "${CC:?}"

{
    echo "# Written by pookie-ns from the cross environment of this build."
    echo "[binaries]"
    echo "c = $(meson_array "$CC")"
    if [ -n "${CXX:-}" ]; then echo "cpp = $(meson_array "$CXX")"; fi
    if [ -n "${AR:-}" ]; then echo "ar = $(meson_array "$AR")"; fi
    if [ -n "${STRIP:-}" ]; then echo "strip = $(meson_array "$STRIP")"; fi
    echo "pkg-config = 'pkg-config'"
    echo
    echo "[built-in options]"
    echo "c_args = $(meson_array "${CPPFLAGS:-} ${CFLAGS:-}")"
    echo "cpp_args = $(meson_array "${CPPFLAGS:-} ${CXXFLAGS:-}")"
    echo "c_link_args = $(meson_array "${LDFLAGS:-}")"
    echo "cpp_link_args = $(meson_array "${LDFLAGS:-}")"
    echo
    echo "[properties]"
    echo "sys_root = '$POOKIE_NS_SYSROOT'"
    echo "pkg_config_libdir = ['$POOKIE_NS_SYSROOT/usr/lib/$POOKIE_NS_TRIPLET/pkgconfig', '$POOKIE_NS_SYSROOT/usr/share/pkgconfig']"
    # Tests and checks that would run a target binary are skipped (QEMU is not used here).
    echo "needs_exe_wrapper = true"
    echo
    echo "[host_machine]"
    echo "system = 'linux'"
    echo "cpu_family = '$POOKIE_NS_MESON_CPU_FAMILY'"
    echo "cpu = '$POOKIE_NS_MESON_CPU'"
    echo "endian = '$POOKIE_NS_MESON_ENDIAN'"
} > "$POOKIE_NS_MESON_CROSS_FILE"

echo "+ meson cross file $POOKIE_NS_MESON_CROSS_FILE:"
sed 's/^/  /' "$POOKIE_NS_MESON_CROSS_FILE"
