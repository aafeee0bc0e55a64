"""pookie-ns example package: word counting in C++ (std::string, std::vector, std::map)."""

from ._cppwords import count, sorted_unique, nth_word

__all__ = ["count", "sorted_unique", "nth_word"]
