"""Numba helpers for background trials: tiling lists and counting exceedances.

Examples
--------
>>> import numpy as np
>>> from kernels.trials import tile_offsets, count_at_least
>>> tile_offsets(2, 3)
array([0, 2, 4, 6])
>>> count_at_least(np.array([1.0, 2.0, 3.0]), np.array([2.0, 5.0]))
array([2, 0])
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["tile_offsets", "offsets_from_counts", "count_at_least"]


@njit(cache=True, nogil=True)
def tile_offsets(n, m):
    """CSR offsets of ``m`` copies of an ``n``-element list.

    Examples
    --------
    >>> tile_offsets(0, 2)
    array([0, 0, 0])
    """
    out = np.empty(m + 1, dtype=np.int64)
    for k in range(m + 1):
        out[k] = k * n
    return out


@njit(cache=True, nogil=True)
def offsets_from_counts(counts):
    """CSR offsets from per-list counts.

    Examples
    --------
    >>> import numpy as np
    >>> offsets_from_counts(np.array([2, 0, 3]))
    array([0, 2, 2, 5])
    """
    out = np.zeros(counts.shape[0] + 1, dtype=np.int64)
    for k in range(counts.shape[0]):
        out[k + 1] = out[k] + counts[k]
    return out


@njit(cache=True, nogil=True)
def count_at_least(trials, observed):
    """For each observed value x, the number of trial values >= x.

    Sorts a copy of ``trials`` once, then one binary search per observed value.

    Examples
    --------
    >>> import numpy as np
    >>> count_at_least(np.array([0.0, 0.0, 1.0]), np.array([0.0]))
    array([3])
    """
    s = np.sort(trials)
    n = s.shape[0]
    out = np.empty(observed.shape[0], dtype=np.int64)
    for k in range(observed.shape[0]):
        out[k] = n - np.searchsorted(s, observed[k], side="left")
    return out
