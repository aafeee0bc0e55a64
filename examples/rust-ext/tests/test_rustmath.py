import platform
import sys

import pytest

import rustmath
from rustmath import _rustmath


def test_where_it_runs():
    # The log says on which arch and Python the wheel was tested.
    print(f"platform.machine() == {platform.machine()!r}, python {sys.version_info[0]}.{sys.version_info[1]}.")
    assert _rustmath.__file__.endswith(".abi3.so"), _rustmath.__file__


def test_gcd():
    assert rustmath.gcd(12, 18) == 6
    assert rustmath.gcd(-12, 18) == 6
    assert rustmath.gcd(0, 7) == 7
    assert rustmath.gcd(2**61 - 1, 2**31 - 1) == 1


def test_primes():
    assert rustmath.primes_below(30) == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
    assert len(rustmath.primes_below(100_000)) == 9592
    assert rustmath.primes_below(2) == []
    with pytest.raises(ValueError, match="too large"):
        rustmath.primes_below(10**9)


def test_collatz():
    assert rustmath.collatz_steps(1) == 0
    assert rustmath.collatz_steps(27) == 111
    with pytest.raises(ValueError, match="positive"):
        rustmath.collatz_steps(0)
    with pytest.raises(OverflowError):
        rustmath.collatz_steps(-1)


def test_word_counts():
    assert rustmath.word_counts("The cat, the hat; THE end") == {"the": 3, "cat": 1, "hat": 1, "end": 1}
    assert rustmath.word_counts("") == {}
    assert rustmath.word_counts("Grüße, grüße") == {"grüße": 2}
