"""Sampling weights per level: validation, conditional/unconditional forms and Stata's ``pwscale``.

Columns come one per level, level 1 (the rows) first, as WeMix takes them.  Unconditional
columns (``cond_weights=False``) give w_l; the conditional weights are c_l = w_l / w_{l+1}
(the top level's is its own).  Conditional columns give c_l; then w_l = prod_{m >= l} c_m.
Rows with a zero weight are dropped (as WeMix does); negative, missing or infinite weights
are a :class:`~hlm.errors.DataError`.  A weight of level >= 2 must be constant within its group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from hlm.errors import DataError, OptionError

PwScale = Literal["size", "effective", "gk"] | None


@dataclass(frozen=True)
class LevelWeights:
    """Conditional and unconditional weights: ``cond[0]``/``uncond[0]`` per row, level l >= 1 per
    group of that level (``cond[l]``, ``uncond[l]``, groups of the chain's factor l - 1)."""

    columns: tuple[str, ...]
    cond: tuple[np.ndarray, ...]
    uncond: tuple[np.ndarray, ...]
    scaling: str


def check_counts(column: str, missing: int, bad: int) -> None:
    """A DataError for a weight column with ``missing`` missing values or ``bad`` infinite or
    negative ones."""
    if missing:
        raise DataError(f"the sampling-weight column '{column}' has {missing} missing or non-numeric values")
    if bad:
        raise DataError(f"the sampling-weight column '{column}' has infinite or negative values; weights must be >= 0")


def check_columns(frame: pd.DataFrame, columns: list[str]) -> int:
    """Raise a DataError for a missing column or a negative, missing or infinite weight;
    return the number of rows with a zero weight in some column."""
    zero = np.zeros(len(frame), dtype=bool)
    for col in columns:
        if col not in frame.columns:
            raise DataError(f"the sampling-weight column '{col}' is not in the data")
        if not pd.api.types.is_numeric_dtype(frame[col]):  # text is refused, never parsed as numbers
            raise DataError(
                f"the sampling-weight column '{col}' is not numeric ({frame[col].dtype}); weights are numbers"
            )
        v = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
        check_counts(col, int(np.isnan(v).sum()), int((np.isinf(v) | (v < 0)).sum()))
        zero |= v == 0
    return int(zero.sum())


def _per_group(values: np.ndarray, codes: np.ndarray, G: int, column: str, keys: np.ndarray) -> np.ndarray:
    """The one value of ``values`` in each group; a DataError names a group where it varies."""
    lo = np.full(G, np.inf)
    hi = np.full(G, -np.inf)
    np.minimum.at(lo, codes, values)
    np.maximum.at(hi, codes, values)
    bad = np.flatnonzero(hi - lo > 1e-12 * np.maximum(1.0, np.abs(hi)))
    if len(bad):
        raise DataError(
            f"the sampling weight '{column}' varies within group {keys[bad[0]]!r} ({lo[bad[0]]:g} to {hi[bad[0]]:g}); "
            "a level's weight must be constant within that level's groups"
        )
    return lo


def level_weights(
    rows: list[np.ndarray],
    columns: list[str],
    codes: list[np.ndarray],
    parents: list[np.ndarray],
    nlevels: list[int],
    keys: list[np.ndarray],
    *,
    conditional: bool,
    pwscale: PwScale,
) -> LevelWeights:
    """Per-level conditional and unconditional weights from the row values of each column.
    ``codes[l]`` maps rows to the groups of chain factor l; ``parents[l]`` those groups to
    factor l + 1's."""
    per = [rows[0]] + [
        _per_group(rows[l], codes[l - 1], nlevels[l - 1], columns[l], keys[l - 1]) for l in range(1, len(rows))
    ]
    # the group value of level l seen at level l-1 (rows for l = 1, groups of factor l-2 otherwise)
    down = [per[l][codes[0]] if l == 1 else per[l][parents[l - 2]] for l in range(1, len(per))]
    if conditional:
        cond = list(per)
    else:
        cond = [per[l] / down[l] for l in range(len(per) - 1)] + [per[-1]]
    scaling = "none"
    if pwscale is not None:
        cond, scaling = _pwscale(cond, codes[0], nlevels[0], pwscale)
    uncond = list(cond)
    for l in range(len(cond) - 2, -1, -1):
        up = uncond[l + 1][codes[0]] if l == 0 else uncond[l + 1][parents[l - 1]]
        uncond[l] = cond[l] * up
    return LevelWeights(tuple(columns), tuple(cond), tuple(uncond), scaling)


def _pwscale(cond: list[np.ndarray], codes: np.ndarray, G: int, how: str) -> tuple[list[np.ndarray], str]:
    """Stata's ``pwscale()`` of the level-1 conditional weights a within groups j (2 levels):
    size a n_j / sum a; effective a sum a / sum a^2; gk: w_j <- mean_i(a w_j), a <- 1."""
    if len(cond) != 2:
        raise OptionError("pwscale applies to two-level models only (as Stata's pwscale())")
    a, wj = cond
    n = np.bincount(codes, minlength=G).astype(float)
    s1 = np.bincount(codes, weights=a, minlength=G)
    s2 = np.bincount(codes, weights=a * a, minlength=G)
    if how == "size":
        return [a * (n / s1)[codes], wj], "stata_pwscale_size: w_i|j n_j / sum_i w_i|j"
    if how == "effective":
        return [a * (s1 / s2)[codes], wj], "stata_pwscale_effective: w_i|j sum_i w_i|j / sum_i w_i|j^2"
    if how == "gk":
        return [np.ones_like(a), wj * s1 / n], "stata_pwscale_gk: w_j <- mean_i(w_i|j w_j), w_i|j <- 1"
    raise OptionError(f"pwscale must be 'size', 'effective', 'gk' or None, not {how!r}")
