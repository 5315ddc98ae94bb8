"""The engine's rows: the model frame laid out for the compiled kernels, collapsed to sufficient
statistics where that is exact.

Row i's random-effect design is r = sum_t k_t (column, value) pairs, one block of k_t per term
(in A0's term order, so the columns increase along a row): A0[i, c_ir] = z_ir.

Collapse: rows sharing every random column and value (so every group key), the X row and the
offset have the same eta, and for the binomial and Poisson their log-likelihood depends on the
data only through the sums:
  sum_i log p(y_i | n_i, mu) = sum_i log choose(n_i, y_i) + Y log mu + (N - Y) log(1 - mu),
  sum_i log p(y_i | mu)      = -sum_i log y_i! + Y log mu - K mu           (K rows summed),
so one row (Y, N) -- (Y, K) for Poisson, K acting as n in the kernels -- with the constant
kept from the rows before the collapse gives the same full log-likelihood, exactly.  Frames
collapsed upstream (a GROUP BY in DuckDB, :mod:`hlm.glmm.collapse`) arrive with their sums,
row counts and constant.  nbinom2
is not collapsed: its likelihood in phi is not a function of the sums (Y is sufficient for mu
only at a known phi).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import special

from hlm.glmm.family import Family
from hlm.glmm.frame import GlmmFrame


@dataclass(frozen=True)
class EngineRows:
    """y, n, X, offset and the random design (cols, z) of the engine's rows; ``constant`` is the
    data-only part of the full log-likelihood; ``index`` maps every frame row to its engine row
    (None when nothing was collapsed)."""

    y: np.ndarray
    n: np.ndarray
    X: np.ndarray
    offset: np.ndarray
    cols: np.ndarray
    z: np.ndarray
    constant: float
    index: np.ndarray | None = None

    @property
    def collapsed(self) -> bool:
        return self.index is not None


def random_design(A0: sp.csc_matrix, blocks: tuple[int, ...], dims: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(cols, z) of every row from A0 (a row without an entry in a term gets its level 0 with
    value 0, which adds nothing)."""
    N = A0.shape[0]
    r = int(sum(dims))
    cols, z = np.zeros((N, r), np.int64), np.zeros((N, r))
    start, slot = 0, 0
    coo = A0.tocoo()
    for nlev, k in zip(blocks, dims):
        inside = (coo.col >= start) & (coo.col < start + nlev * k)
        rel = coo.col[inside] - start
        cols[:, slot : slot + k] = start + np.arange(k)[None, :]
        level = np.zeros(N, np.int64)
        level[coo.row[inside]] = rel // k
        cols[:, slot : slot + k] += level[:, None] * k
        z[coo.row[inside], slot + rel % k] = coo.data[inside]
        start += nlev * k
        slot += k
    return cols, z


def constant_part(family: Family, y: np.ndarray, n: np.ndarray) -> float:
    """sum_i log choose(n_i, y_i) (binomial) or -sum_i log y_i! (Poisson, nbinom2)."""
    if family.name == "binomial":
        return float((special.gammaln(n + 1) - special.gammaln(y + 1) - special.gammaln(n - y + 1)).sum())
    return float(-special.gammaln(y + 1).sum())


def _all_distinct(X: np.ndarray, probe: int = 1024) -> bool:
    """Whether some column of X takes a different value in every row (a continuous covariate):
    then no two rows share a key and the collapse's sort of the whole key is skipped.  Only
    columns whose first ``probe`` values are all distinct are hashed in full."""
    N = X.shape[0]
    for col in X.T:
        if len(np.unique(col[:probe])) == min(N, probe) and len(pd.unique(col)) == N:
            return True
    return False


def engine_rows(family: Family, frame: GlmmFrame, *, collapse: bool = True) -> EngineRows:
    """The frame's rows for the kernels, collapsed where exact (module docstring)."""
    cols, z = random_design(frame.A0, frame.blocks, frame.dims)
    X = np.ascontiguousarray(frame.X, dtype=float)
    const = constant_part(family, frame.y, frame.n) if frame.constant is None else frame.constant
    n = frame.n if family.name == "binomial" or frame.rows is None else frame.rows  # Poisson: rows summed
    whole = EngineRows(frame.y.astype(float), n.astype(float), X, frame.offset.astype(float), cols, z, const)
    if not collapse or family.name == "negative_binomial" or len(frame.y) < 2 or _all_distinct(X):
        return whole
    key = np.ascontiguousarray(np.column_stack([cols.astype(float), z, X, frame.offset]) + 0.0)  # -0.0 -> 0.0
    _, first, index = np.unique(
        key.view(np.dtype((np.void, key.dtype.itemsize * key.shape[1]))).ravel(), return_index=True, return_inverse=True
    )
    if len(first) == len(frame.y):
        return whole
    index = index.ravel()
    ysum = np.bincount(index, weights=frame.y, minlength=len(first))
    nsum = np.bincount(index, weights=whole.n, minlength=len(first))
    return EngineRows(
        ysum, nsum.astype(float), X[first], frame.offset[first].astype(float), cols[first], z[first], const, index
    )
