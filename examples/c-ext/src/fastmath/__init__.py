"""pookie-ns example package: integer and floating-point kernels written in C."""

from ._fastmath import gcd, machine, popcount, dot

__all__ = ["gcd", "machine", "popcount", "dot"]
