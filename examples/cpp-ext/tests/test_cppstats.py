"""Tests that check computed values against Python's statistics module."""

import math
import random
import statistics

import pytest

import cppstats


def test_describe_matches_statistics():
    rng = random.Random(7)
    xs = [rng.uniform(-1e3, 1e3) for _ in range(10_001)]
    d = cppstats.describe(xs)
    assert d["n"] == len(xs)
    assert math.isclose(d["mean"], statistics.fmean(xs), rel_tol=1e-12, abs_tol=1e-9)
    assert math.isclose(d["variance"], statistics.variance(xs), rel_tol=1e-9)
    assert d["min"] == min(xs) and d["max"] == max(xs)


def test_median_odd_and_even():
    assert cppstats.median([5, 1, 3]) == 3.0
    assert cppstats.median([4, 1, 3, 2]) == 2.5
    rng = random.Random(3)
    for n in (1, 2, 99, 100):
        xs = [rng.random() for _ in range(n)]
        assert cppstats.median(xs) == statistics.median(xs)


def test_sorted_unique():
    assert cppstats.sorted_unique([3, 1, 3, 2, 1]) == [1.0, 2.0, 3.0]
    assert cppstats.sorted_unique([]) == []


def test_errors_become_python_exceptions():
    with pytest.raises(ValueError):
        cppstats.describe([])
    with pytest.raises(TypeError):
        cppstats.median(["x"])
    with pytest.raises(TypeError):
        cppstats.sorted_unique(5)


def test_built_as_cpp17():
    info = cppstats.compiler()
    assert info["cplusplus"] >= 201703
    assert info["compiler"].split()[0] in ("gcc", "clang")


def test_installed_not_source_tree():
    assert "site-packages" in cppstats.__file__ or "dist-packages" in cppstats.__file__
