"""pookie-ns example: integer and text kernels written in Rust (PyO3, abi3)."""

from rustmath._rustmath import collatz_steps, gcd, primes_below, word_counts

__all__ = ["collatz_steps", "gcd", "primes_below", "word_counts"]
