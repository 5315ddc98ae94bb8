"""The numpy backend: sufficient statistics of an in-memory model frame in one pass (every
sum over rows weighted by the precision weights, when the frame has them)."""

from __future__ import annotations

import numpy as np

from hlm.aggregate.stats import Aggregates, CrossBlock, FactorStats, nesting_chain
from hlm.modelframe import ModelFrame


def group_crossprods(
    codes: np.ndarray, G: int, Z: np.ndarray, K: np.ndarray, w: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per group: Z_g'W_gZ_g (G, z, z) and Z_g'W_gK_g (G, z, k), by weighted bincounts
    (W = I without precision weights ``w``)."""
    z, k = Z.shape[1], K.shape[1]
    ztz = np.empty((G, z, z))
    ztk = np.empty((G, z, k))
    for a in range(z):
        za = Z[:, a]
        ones = bool(np.all(za == 1.0))
        if ones:  # the intercept: plain (or w-weighted) sums
            wa = w
        else:
            wa = za if w is None else w * za
        for b in range(a, z):
            wt = Z[:, b] if wa is None else wa * Z[:, b]
            ztz[:, a, b] = ztz[:, b, a] = np.bincount(codes, weights=wt, minlength=G)
        for c in range(k):
            wt = K[:, c] if wa is None else wa * K[:, c]
            ztk[:, a, c] = np.bincount(codes, weights=wt, minlength=G)
    return ztz, ztk


def cross_block(
    i: int, j: int, ci: np.ndarray, cj: np.ndarray, Gj: int, Z: np.ndarray, w: np.ndarray | None = None
) -> CrossBlock:
    """Sum of w z z' over the rows shared by each pair of groups (gi, gj) (w = 1 unweighted)."""
    pair, inverse = np.unique(ci * Gj + cj, return_inverse=True)
    z = Z.shape[1]
    zz = np.empty((len(pair), z, z))
    for a in range(z):
        wa = Z[:, a] if w is None else w * Z[:, a]
        for b in range(a, z):
            zz[:, a, b] = zz[:, b, a] = np.bincount(inverse, weights=wa * Z[:, b], minlength=len(pair))
    return CrossBlock(i, j, pair // Gj, pair % Gj, zz)


def aggregate_frame(mf: ModelFrame) -> Aggregates:
    """Compute :class:`Aggregates` from a :class:`ModelFrame`.  Values whose products
    overflow give infinite cross-products, refused by :func:`hlm.lmm.checks_data.check_scales`
    (so numpy's overflow warnings are silenced here)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return _aggregate_frame(mf)


def _aggregate_frame(mf: ModelFrame) -> Aggregates:
    K = np.empty((len(mf.y), mf.X.shape[1] + 1), order="F")  # columns contiguous for bincount
    K[:, :-1] = mf.X
    K[:, -1] = mf.y
    ktk = K.T @ K if mf.w is None else K.T @ (mf.w[:, None] * K)
    codes = [f.codes for f in mf.factors]
    nlev = [len(f.keys[0]) for f in mf.factors]
    nested = (
        nesting_chain(codes, nlev, [f.first for f in mf.factors], [frozenset(f.columns) for f in mf.factors])
        if codes
        else ((), ())
    )
    stats = []
    for idx, f in enumerate(mf.factors):
        counts = np.bincount(f.codes, minlength=nlev[idx]).astype(np.int64)
        need = nested is None or idx == nested[0][0]
        ztz, ztk = group_crossprods(f.codes, nlev[idx], mf.Z, K, mf.w) if need else (None, None)
        stats.append(FactorStats(f.name, f.columns, f.keys, counts, ztz, ztk))
    cross: list[CrossBlock] = []
    if nested is None:
        for i in range(len(codes)):
            for j in range(i + 1, len(codes)):
                cross.append(cross_block(i, j, codes[i], codes[j], nlev[j], mf.Z, mf.w))
    return Aggregates(
        nobs=len(mf.y),
        ndropped=mf.ndropped,
        response=mf.spec.response,
        xnames=mf.xnames,
        pool=mf.pool,
        ktk=ktk,
        factors=tuple(stats),
        term_factor=mf.term_factor,
        term_columns=mf.term_columns,
        chain=None if nested is None else nested[0],
        parents=() if nested is None else nested[1],
        cross=tuple(cross),
        weights=mf.weights,
        log_weights=0.0 if mf.w is None else float(np.log(mf.w).sum()),
        zero_weights=mf.zero_weights,
    )
