import platform
import sys
import zlib

import pytest

import rustsum
from rustsum import _rustsum

DATA = [b"", b"a", b"hello, world", bytes(range(256)) * 40, b"\xff" * 100_000]


def test_where_it_runs():
    # The log says on which arch and Python the wheel was tested.
    print(f"platform.machine() == {platform.machine()!r}, python {sys.version_info[0]}.{sys.version_info[1]}.")
    assert _rustsum.__file__.endswith(".abi3.so"), _rustsum.__file__


def test_crc32_is_zlibs():
    for data in DATA:
        assert rustsum.crc32(data) == zlib.crc32(data), data[:16]
    assert rustsum.crc32(b"123456789") == 0xCBF43926
    # Continued from a previous value, as zlib.crc32(data, value).
    assert rustsum.crc32(b"world", rustsum.crc32(b"hello ")) == zlib.crc32(b"hello world")
    with pytest.raises(TypeError):
        rustsum.crc32("text, not bytes")


def test_adler32_is_zlibs():
    for data in DATA:
        assert rustsum.adler32(data) == zlib.adler32(data), data[:16]
    assert rustsum.adler32(b"Wikipedia") == 0x11E60398
    assert rustsum.adler32(b"world", rustsum.adler32(b"hello ")) == zlib.adler32(b"hello world")


def test_fnv1a_64():
    assert rustsum.fnv1a_64(b"") == 0xCBF29CE484222325
    assert rustsum.fnv1a_64(b"a") == 0xAF63DC4C8601EC8C
    assert rustsum.fnv1a_64(b"foobar") == 0x85944171F73967E8


def test_levenshtein():
    assert rustsum.levenshtein("kitten", "sitting") == 3
    assert rustsum.levenshtein("", "abc") == 3
    assert rustsum.levenshtein("flaw", "lawn") == 2
    assert rustsum.levenshtein("Grüße", "Grüsse") == 2
    assert rustsum.levenshtein("same", "same") == 0
    with pytest.raises(ValueError, match="too long"):
        rustsum.levenshtein("x" * 100_001, "")
