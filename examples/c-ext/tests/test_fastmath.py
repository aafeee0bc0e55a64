"""Tests that check computed values, and that the compiled code matches the machine it runs on."""

import math
import platform
import random

import fastmath


def test_gcd_matches_python():
    rng = random.Random(1234)
    for _ in range(1000):
        a, b = rng.randrange(1, 2**62), rng.randrange(1, 2**62)
        assert fastmath.gcd(a, b) == math.gcd(a, b)
    assert fastmath.gcd(0, 7) == 7
    assert fastmath.gcd(2**63, 2**40) == 2**40


def test_popcount():
    assert fastmath.popcount(0) == 0
    assert fastmath.popcount(2**64 - 1) == 64
    rng = random.Random(99)
    for _ in range(1000):
        x = rng.getrandbits(64)
        assert fastmath.popcount(x) == bin(x).count("1")


def test_dot():
    assert fastmath.dot([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == 32.0
    assert fastmath.dot([], []) == 0.0
    assert math.isclose(fastmath.dot([0.1] * 10, [10.0] * 10), 10.0)


def test_dot_rejects_bad_input():
    import pytest

    with pytest.raises(ValueError):
        fastmath.dot([1.0], [1.0, 2.0])
    with pytest.raises(TypeError):
        fastmath.dot([1.0], ["x"])


def test_compiled_for_the_machine_it_runs_on():
    assert fastmath.machine() == platform.machine()


def test_installed_not_source_tree():
    # The test must exercise the installed wheel, not a stray build in the source directory.
    assert "site-packages" in fastmath.__file__ or "dist-packages" in fastmath.__file__
