# cython: language_level=3
"""Typed loops over memoryviews and strings, compiled to C by Cython during the build."""

import cython
from cpython.mem cimport PyMem_Free, PyMem_Malloc

cdef extern from *:
    """
    #if defined(__aarch64__)
    #define CYF_ARCH "aarch64"
    #elif defined(__x86_64__)
    #define CYF_ARCH "x86_64"
    #else
    #define CYF_ARCH "other"
    #endif
    """
    const char *CYF_ARCH


def compiled_by():
    """The arch the C compiler targeted (from its predefined macros)."""
    return CYF_ARCH.decode()


def moving_average(double[:] xs not None, Py_ssize_t window):
    """The means of every `window` consecutive values."""
    cdef Py_ssize_t n = xs.shape[0], i
    cdef double acc = 0.0
    if window <= 0:
        raise ValueError("window must be positive")
    if window > n:
        return []
    out = []
    for i in range(window):
        acc += xs[i]
    out.append(acc / window)
    for i in range(window, n):
        acc += xs[i] - xs[i - window]
        out.append(acc / window)
    return out


def running_max(long[:] xs not None):
    """The largest value so far, at every position."""
    cdef Py_ssize_t i, n = xs.shape[0]
    cdef long best
    out = []
    if n == 0:
        return out
    best = xs[0]
    for i in range(n):
        if xs[i] > best:
            best = xs[i]
        out.append(best)
    return out


def levenshtein(str a, str b):
    """The edit distance between two strings (insertions, deletions, substitutions)."""
    cdef Py_ssize_t n = len(a), m = len(b), i, j
    cdef Py_ssize_t *row
    cdef Py_ssize_t prev, cur, cost
    if m == 0:
        return n
    row = <Py_ssize_t *> PyMem_Malloc((m + 1) * sizeof(Py_ssize_t))
    if row == NULL:
        raise MemoryError()
    try:
        for j in range(m + 1):
            row[j] = j
        for i in range(1, n + 1):
            prev = row[0]
            row[0] = i
            for j in range(1, m + 1):
                cur = row[j]
                cost = 0 if a[i - 1] == b[j - 1] else 1
                row[j] = min(row[j] + 1, row[j - 1] + 1, prev + cost)
                prev = cur
        return row[m]
    finally:
        PyMem_Free(row)
