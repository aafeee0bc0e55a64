# shellcheck shell=sh
# After the repair: cibuildwheel's audit step (its 4.x default: abi3audit) on each repaired abi3
# wheel in POOKIE_NS_WHEELHOUSE, run where the repair ran (the target's build sandbox, with the
# target's python3). `audit-requires` is pip-installed first, `audit-command` run with the wheel
# in `$w`; a command that fails fails the target, its output in the build log. Wheels of another
# ABI are not audited (abi3audit checks the stable ABI only).
#
# Parameters:
#   POOKIE_NS_WHEELHOUSE      the repaired wheels
#   POOKIE_NS_AUDIT_REQUIRES  the pip requirements of the audit (audit-requires), or empty
#   POOKIE_NS_AUDIT_COMMAND   the command, `"$w"` standing for {wheel}
#   POOKIE_NS_AUDIT_SHOWN     the command as the project wrote it
: "${POOKIE_NS_WHEELHOUSE:?}" "${POOKIE_NS_AUDIT_COMMAND:?}" "${POOKIE_NS_AUDIT_SHOWN:?}"

pookie_ns_audit_ready=0
for w in "$POOKIE_NS_WHEELHOUSE"/*-abi3-*.whl; do
    [ -e "$w" ] || continue
    if [ "$pookie_ns_audit_ready" = 0 ] && [ -n "${POOKIE_NS_AUDIT_REQUIRES-}" ]; then
        echo "+ audit-requires: python3 -m pip install $POOKIE_NS_AUDIT_REQUIRES"
        # shellcheck disable=SC2086 # a list of requirements
        python3 -m pip install --quiet $POOKIE_NS_AUDIT_REQUIRES
    fi
    pookie_ns_audit_ready=1
    echo "+ audit-command: $POOKIE_NS_AUDIT_SHOWN  # $(basename "$w")"
    if ! eval "$POOKIE_NS_AUDIT_COMMAND"; then
        echo "pookie-ns: the audit of $(basename "$w") failed (audit-command:" \
            "$POOKIE_NS_AUDIT_SHOWN; its output above): the wheel is not delivered. Fix what" \
            "it reports, or set audit-command = \"\" to deliver abi3 wheels unaudited" >&2
        rm -f "$w"
        exit 1
    fi
done
