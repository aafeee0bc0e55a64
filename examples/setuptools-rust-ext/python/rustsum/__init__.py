"""pookie-ns example: checksums and an edit distance written in Rust (PyO3, abi3), built by
setuptools-rust."""

from rustsum._rustsum import adler32, crc32, fnv1a_64, levenshtein

__all__ = ["adler32", "crc32", "fnv1a_64", "levenshtein"]
