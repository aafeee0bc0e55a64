"""Tests that check computed values against pure Python, and C++ exceptions turned into
IndexError (they need the C++ runtime linked into the extension)."""

import collections
import random

import pytest

import cppwords

TEXT = "the quick brown fox jumps over the lazy dog The DOG sleeps"


def test_count_matches_python():
    assert cppwords.count(TEXT) == dict(collections.Counter(TEXT.lower().split()))
    assert cppwords.count("") == {}


def test_sorted_unique_matches_python():
    assert cppwords.sorted_unique(TEXT) == sorted(set(TEXT.lower().split()))
    rng = random.Random(7)
    words = ["".join(rng.choice("abcxyz") for _ in range(rng.randrange(1, 6))) for _ in range(500)]
    text = " ".join(words)
    assert cppwords.sorted_unique(text) == sorted(set(words))


def test_nth_word():
    assert cppwords.nth_word(TEXT, 0) == "the"
    assert cppwords.nth_word(TEXT, 3) == "fox"


def test_a_cpp_exception_becomes_index_error():
    with pytest.raises(IndexError, match="no word 99"):
        cppwords.nth_word(TEXT, 99)
    with pytest.raises(IndexError):
        cppwords.nth_word(TEXT, -1)
