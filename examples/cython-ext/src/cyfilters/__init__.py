"""pookie-ns example: signal filters and string distances compiled from Cython."""

from cyfilters._filters import compiled_by, levenshtein, moving_average, running_max

__all__ = ["compiled_by", "levenshtein", "moving_average", "running_max"]
