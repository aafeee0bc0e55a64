import os
import pathlib

import fficall


def test_muladd_through_ffi():
    assert fficall.call_muladd(6, 7, 0) == 42
    assert fficall.call_muladd(-3, 5, 1) == -14
    assert fficall.call_muladd(1 << 31, 4, 7) == (1 << 33) + 7


def test_strlen_through_ffi():
    for s in ["", "a", "pookie-ns", "é" * 10]:
        assert fficall.call_strlen(s) == len(s.encode())


def test_the_vendored_libffi_is_the_one_loaded():
    # A repaired wheel carries libffi in fficall.libs/ beside the package; the extension must
    # load that copy, not the system's.
    libs = pathlib.Path(fficall.__file__).parent.parent / "fficall.libs"
    maps = pathlib.Path("/proc/self/maps").read_text()
    loaded = {line.split()[-1] for line in maps.splitlines() if "libffi" in line}
    assert loaded, "libffi is not loaded"
    if libs.is_dir():
        assert all(str(libs) in path for path in loaded), (loaded, os.listdir(libs))
