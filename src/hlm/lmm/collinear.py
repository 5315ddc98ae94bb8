"""Detect and drop fixed-effect columns that are linear combinations of earlier ones.

A pivoted (in column order) Cholesky of the scaled X'X: column j is kept when its
residual variance after projecting on the kept earlier columns exceeds ``tol`` times its
own; otherwise it is dropped, as Stata ("omitted because of collinearity") and lme4
("fixed-effect model matrix is rank deficient") do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from hlm.aggregate.stats import Aggregates

TOL = 1e-9


def independent_columns(
    M: np.ndarray, cols: Sequence[int] | None = None, scale: np.ndarray | None = None, tol: float = TOL
) -> list[int]:
    """Columns of ``cols`` (default: all, in order) that are not combinations of earlier kept ones.

    Column j's residual variance after projecting on the kept columns, r = M_jj - c' M_kk^-1 c
    (computed in the correlation scaling of M), must exceed ``tol * scale_j``.  ``scale``
    defaults to M's own diagonal, so the rule is relative: r / M_jj > tol.  The panel
    estimators pass the raw columns' second moments as ``scale`` while M is a transformed
    (within, between, quasi-demeaned) moment matrix: a column the transformation nearly
    removes, such as a time-invariant one in the within regression, is then dropped even when
    it is not a combination of the others."""
    scale = np.diag(M) if scale is None else scale
    kept: list[int] = []
    for j in range(M.shape[0]) if cols is None else cols:
        if M[j, j] <= 0:
            continue
        cand = kept + [j]
        sd = np.sqrt(np.diag(M)[cand])
        corr = M[np.ix_(cand, cand)] / np.outer(sd, sd)
        try:
            resid = 1.0 - corr[:-1, -1] @ np.linalg.solve(corr[:-1, :-1], corr[:-1, -1]) if kept else 1.0
        except np.linalg.LinAlgError:
            resid = 0.0
        if resid * M[j, j] > tol * max(scale[j], np.finfo(float).tiny):
            kept.append(j)
    return kept


def aliased_columns(xtx: np.ndarray, tol: float = TOL) -> list[int]:
    """Indices of columns of X that are (numerically) combinations of earlier kept ones."""
    kept = set(independent_columns(xtx, tol=tol))
    return [j for j in range(xtx.shape[0]) if j not in kept]


def drop_columns(agg: Aggregates, drop: list[int]) -> Aggregates:
    """The aggregates without the given fixed-effect columns."""
    if not drop:
        return agg
    keep = [j for j in range(agg.ktk.shape[0]) if j not in set(drop)]
    factors = tuple(
        replace(
            f,
            ztk=None if f.ztk is None else f.ztk[:, :, keep],
            pooled=None if f.pooled is None else f.pooled.keep_columns(np.array(keep)),
        )
        for f in agg.factors
    )
    return replace(
        agg,
        ktk=agg.ktk[np.ix_(keep, keep)],
        factors=factors,
        xnames=tuple(agg.xnames[j] for j in keep if j < len(agg.xnames)),
    )


def remove_collinear(agg: Aggregates) -> tuple[Aggregates, tuple[str, ...]]:
    """Drop aliased fixed-effect columns; return the new aggregates and the dropped names."""
    p = len(agg.xnames)
    drop = aliased_columns(agg.ktk[:p, :p])
    return drop_columns(agg, drop), tuple(agg.xnames[j] for j in drop)
