"""Streaming statistics in C++17: mean, variance (Welford), median and a stable sort."""

from ._cppstats import describe, median, sorted_unique, compiler

__all__ = ["describe", "median", "sorted_unique", "compiler"]
