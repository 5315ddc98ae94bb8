"""Detect and drop fixed-effect columns that are linear combinations of earlier ones.

A pivoted (in column order) Cholesky of the scaled X'X: column j is kept when its
residual variance after projecting on the kept earlier columns exceeds ``tol`` times its
own; otherwise it is dropped, as Stata ("omitted because of collinearity") and lme4
("fixed-effect model matrix is rank deficient") do.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from hlm.aggregate.stats import Aggregates

TOL = 1e-9


def aliased_columns(xtx: np.ndarray, tol: float = TOL) -> list[int]:
    """Indices of columns of X that are (numerically) combinations of earlier kept ones."""
    p = xtx.shape[0]
    kept: list[int] = []
    dropped: list[int] = []
    for j in range(p):
        if xtx[j, j] <= 0:
            dropped.append(j)
            continue
        cand = kept + [j]
        sub = xtx[np.ix_(cand, cand)]
        scale = np.sqrt(np.diag(sub))
        corr = sub / np.outer(scale, scale)
        if kept:
            a = corr[:-1, :-1]
            b = corr[:-1, -1]
            try:
                resid = 1.0 - b @ np.linalg.solve(a, b)
            except np.linalg.LinAlgError:
                resid = 0.0
        else:
            resid = 1.0
        (kept if resid > tol else dropped).append(j)
    return dropped


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
