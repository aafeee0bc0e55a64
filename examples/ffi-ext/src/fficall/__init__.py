"""pookie-ns example: calls C functions through libffi, an external library the wheel carries."""

from ._fficall import call_muladd, call_strlen

__all__ = ["call_muladd", "call_strlen"]
