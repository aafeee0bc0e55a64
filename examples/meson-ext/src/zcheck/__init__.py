"""pookie-ns example: checksums and compression through zlib, from a Meson-built extension."""

from zcheck._zcheck import adler32, crc32, deflate_ratio, zlib_version

__all__ = ["adler32", "crc32", "deflate_ratio", "zlib_version"]
