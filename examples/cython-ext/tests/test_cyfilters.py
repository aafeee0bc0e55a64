import array
import platform
import sys

import pytest

import cyfilters
from cyfilters import _filters


def test_where_it_runs():
    print(f"platform.machine() == {platform.machine()!r}, python {sys.version_info[0]}.{sys.version_info[1]}.")
    # Compiled for the arch it runs on, and a real extension module (not the .pyx source).
    assert cyfilters.compiled_by() == platform.machine()
    assert _filters.__file__.endswith(".so"), _filters.__file__


def test_moving_average():
    xs = array.array("d", [1, 2, 3, 4, 5, 6])
    assert cyfilters.moving_average(xs, 2) == [1.5, 2.5, 3.5, 4.5, 5.5]
    assert cyfilters.moving_average(xs, 6) == [3.5]
    assert cyfilters.moving_average(xs, 7) == []
    with pytest.raises(ValueError, match="positive"):
        cyfilters.moving_average(xs, 0)
    with pytest.raises(ValueError):
        cyfilters.moving_average(array.array("i", [1, 2]), 1)  # wrong item type


def test_running_max():
    xs = array.array("l", [3, 1, 4, 1, 5, 9, 2, 6])
    assert cyfilters.running_max(xs) == [3, 3, 4, 4, 5, 9, 9, 9]
    assert cyfilters.running_max(array.array("l")) == []


def test_levenshtein():
    assert cyfilters.levenshtein("kitten", "sitting") == 3
    assert cyfilters.levenshtein("", "abc") == 3
    assert cyfilters.levenshtein("abc", "") == 3
    assert cyfilters.levenshtein("flaw", "lawn") == 2
    assert cyfilters.levenshtein("Grüße", "Grüsse") == 2
    with pytest.raises(TypeError):
        cyfilters.levenshtein(b"bytes", "str")
