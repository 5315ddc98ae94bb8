"""Level coding: every grouping factor's levels as dense codes 0..G-1 in sorted order of the
values, and the first row of each level -- the one implementation every backend uses."""

from __future__ import annotations

import numpy as np
import pandas as pd


def factor_key(group: tuple[str, ...]) -> frozenset[str]:
    """Identity of a grouping factor: the set of columns it interacts."""
    return frozenset(group)


def dense_codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Codes 0..G-1 in sorted order of the values; O(n) for integers of moderate range."""
    if values.dtype.kind in "iu" and len(values):
        lo, hi = int(values.min()), int(values.max())
        if hi - lo <= 4 * len(values) + 1024:
            present = np.zeros(hi - lo + 1, dtype=bool)
            shifted = values - lo
            present[shifted] = True
            remap = np.cumsum(present, dtype=np.int64) - 1
            return remap[shifted], int(present.sum())
    codes, uniques = pd.factorize(values, sort=True)
    return codes.astype(np.int64), len(uniques)


def first_rows(codes: np.ndarray, G: int, backwards: np.ndarray | None = None) -> np.ndarray:
    """Index of the first row of every group (``backwards``: ``arange(n)[::-1]``, reusable)."""
    first = np.empty(G, dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1) if backwards is None else backwards
    return first


def determines(codes: np.ndarray, first: np.ndarray, other: np.ndarray) -> bool:
    """Whether each group of ``codes`` (first rows ``first``) has a single value of ``other``."""
    return bool(np.array_equal(other[first][codes], other))
