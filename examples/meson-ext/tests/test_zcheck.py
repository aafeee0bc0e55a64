import platform
import sys
import zlib

import pytest

import zcheck
from zcheck import _zcheck

DATA = b"pookie-ns builds meson-python wheels for foreign arches. " * 200


def test_where_it_runs():
    print(f"platform.machine() == {platform.machine()!r}, python {sys.version_info[0]}.{sys.version_info[1]}.")
    # The extension's suffix is the target's own (cpython-3XY-<triplet>), not the build machine's.
    machine = platform.machine()
    assert f"-{machine}-linux-gnu" in _zcheck.__file__, _zcheck.__file__


def test_crc32_matches_the_standard_library():
    assert zcheck.crc32(b"") == 0
    assert zcheck.crc32(b"123456789") == 0xCBF43926
    assert zcheck.crc32(DATA) == zlib.crc32(DATA)
    assert zcheck.crc32(DATA[100:], zcheck.crc32(DATA[:100])) == zlib.crc32(DATA)
    assert zcheck.crc32(memoryview(DATA)) == zlib.crc32(DATA)


def test_adler32():
    assert zcheck.adler32(b"Wikipedia") == 0x11E60398
    assert zcheck.adler32(DATA) == zlib.adler32(DATA)


def test_deflate_ratio():
    assert zcheck.deflate_ratio(DATA, 9) < 0.05
    assert zcheck.deflate_ratio(DATA, 0) > 1.0
    with pytest.raises(ValueError, match="between 0 and 9"):
        zcheck.deflate_ratio(DATA, 11)
    with pytest.raises(ValueError, match="empty"):
        zcheck.deflate_ratio(b"")
    with pytest.raises(TypeError):
        zcheck.crc32("text")


def test_zlib_version():
    assert zcheck.zlib_version().split(".")[0] == "1"
