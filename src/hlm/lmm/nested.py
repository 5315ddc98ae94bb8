"""Nested factors: K'H^{-1}K and log|H| by a bottom-up Woodbury recursion.

With H = I + sum_l Z_l T_l Z_l' (T_l = Lambda_l Lambda_l'), the factors form a chain
(innermost first) and H is block diagonal by the groups of every level.  For a group g of
level l whose children have already been absorbed (H_c), with M = U'H_c^{-1}U over the
group's rows for U = [Z_pool, K]:

    G_g = I + Lambda' M_JJ Lambda,            log|H_g| = log|H_c| + log|G_g|
    U'H_g^{-1}U = M - M_.J Lambda G_g^{-1} Lambda' M_J.

The K'K block is only ever needed in total, so per group we carry M_zz (z x z) and M_zk
(z x k) and subtract each level's K-block correction from the global K'K.  The parent's M
is the sum of its children's.  For random intercepts this is the scalar recursion
``Q -= t/(1+tW) S S'``, ``W <- W/(1+tW)``, ``S <- S/(1+tW)``.  Cost: O(groups), no rows.

Leaf compression: when the only random-effect column is the intercept, the leaf groups are
pooled by their count -- their weight sum W_g under precision weights -- (:class:`~hlm.
aggregate.stats.LeafClasses`, exact), precomputed once per fit or delivered so by an SQL
backend, so the largest level (students) costs O(parents x distinct counts) per evaluation.

The random-intercept recursion runs as one compiled (numba) pass per level: per group a
handful of flops on 1 + k numbers, so the pass is bound by memory traffic; numpy's
vectorised form needed a temporary per operation and was 1.5-4x slower.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from hlm.aggregate.stats import Aggregates, LeafClasses
from hlm.lmm.kernels import vector_level
from hlm.lmm.structure import Structure


def leaf_classes(agg: Aggregates) -> LeafClasses | None:
    """Pool the leaf level by count (:class:`LeafClasses`) when that is exact and saves
    work, else None; a leaf that an SQL backend pooled already is returned as it is."""
    if agg.chain is None or len(agg.chain) < 2 or not agg.intercepts_only:
        return None
    leaf = agg.factors[agg.chain[0]]
    if leaf.pooled is not None:
        return leaf.pooled
    assert (
        leaf.counts is not None and leaf.ztz is not None and leaf.ztk is not None
    )  # an unpooled leaf keeps its groups' arrays
    # a leaf enters through W_g = 1'W_g1: its count, or its weight sum with precision weights
    counts, cls = np.unique(leaf.counts if agg.weights is None else leaf.ztz[:, 0, 0], return_inverse=True)
    G_parent = agg.factors[agg.chain[1]].nlevels
    m, k = len(counts), leaf.ztk.shape[2]
    if G_parent * m * 2 > leaf.nlevels:
        return None
    S = leaf.ztk[:, 0, :]
    if m == 1:  # balanced leaves: one class
        sss = (S.T @ S)[None]
    else:
        order = np.argsort(cls, kind="stable")
        bounds = np.searchsorted(cls[order], np.arange(m + 1))
        Ss = S[order]
        sss = np.stack([Ss[a:b].T @ Ss[a:b] for a, b in zip(bounds[:-1], bounds[1:])])
    cell = agg.parents[0] * m + cls
    children = np.bincount(cell, minlength=G_parent * m).reshape(G_parent, m).astype(float)
    sums = np.stack([np.bincount(cell, weights=S[:, j], minlength=G_parent * m) for j in range(k)], axis=1)
    return LeafClasses(
        counts.astype(float), np.bincount(cls, minlength=m).astype(float), sss, children, sums.reshape(G_parent, m, k)
    )


def sum_by(parent: np.ndarray, arr: np.ndarray, G: int) -> np.ndarray:
    """Sum the rows of ``arr`` (n, ...) into G parent groups."""
    flat = arr.reshape(len(arr), -1)
    out = np.empty((G, flat.shape[1]))
    for c in range(flat.shape[1]):
        out[:, c] = np.bincount(parent, weights=flat[:, c], minlength=G)
    return out.reshape((G,) + arr.shape[1:])


@dataclass(frozen=True)
class InterceptChain:
    """Precomputed layout for chains of random intercepts (the pool is the intercept).

    Per group the recursion carries M = [W, S] (1 + k numbers); ``parents[l]`` maps level
    l's groups onto level l+1's (``ngroups[l + 1]`` of them)."""

    leaf: np.ndarray | None  # (G_leaf, 1 + k): counts and sums of K (None when pooled)
    parents: tuple[np.ndarray, ...]  # int64, one per level but the outermost
    ngroups: tuple[int, ...]  # groups per level


def intercept_chain(agg: Aggregates, pooled: bool) -> InterceptChain | None:
    """The fast layout when every level is a scalar random intercept, else None.  With the
    leaf level ``pooled`` (see :class:`LeafClasses`) its per-group layout is not built."""
    if agg.chain is None or not agg.intercepts_only:
        return None
    leaf = agg.factors[agg.chain[0]]
    M = None
    if not pooled:
        assert leaf.ztz is not None and leaf.ztk is not None  # an unpooled leaf keeps its groups' arrays
        M = np.ascontiguousarray(np.concatenate([leaf.ztz[:, 0, :], leaf.ztk[:, 0, :]], axis=1))
    parents = tuple(np.ascontiguousarray(p, dtype=np.int64) for p in agg.parents)
    return InterceptChain(M, parents, tuple(agg.factors[f].nlevels for f in agg.chain))


_BLOCK = 4096  # groups summed into a local Q before it is added to the total (limits rounding)


@numba.njit(cache=True, nogil=True, inline="always")
def _absorb(M: np.ndarray, g: int, t: float, q_acc: np.ndarray, out: np.ndarray, parent: int) -> float:
    """Group g's step (row g of M): d = 1 + t W, Q -= t S S'/d, M/d added to the parent;
    returns d."""
    d = 1.0 + t * M[g, 0]
    inv = 1.0 / d
    w = M.shape[1]
    for i in range(1, w):
        ci = t * M[g, i] * inv
        for j in range(i, w):
            q_acc[i - 1, j - 1] += ci * M[g, j]
    if parent >= 0:
        for i in range(w):
            out[parent, i] += M[g, i] * inv
    return d


@numba.njit(cache=True, nogil=True)
def _subtract(Q: np.ndarray, q_acc: np.ndarray) -> None:
    """Q -= the block's accumulated upper triangle (mirrored); reset the accumulator."""
    k = Q.shape[0]
    for i in range(k):
        for j in range(i, k):
            Q[i, j] -= q_acc[i, j]
            if j != i:
                Q[j, i] -= q_acc[i, j]
            q_acc[i, j] = 0.0


@numba.njit(cache=True, nogil=True)
def _level(M: np.ndarray, t: float, parent: np.ndarray, n_parent: int, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Absorb one level's groups (rows of M) into Q; returns (d per group, the parents' M)."""
    G, w = M.shape
    out = np.zeros((n_parent, w))
    q_acc = np.zeros((w - 1, w - 1))
    d = np.empty(G)
    for start in range(0, G, _BLOCK):
        for g in range(start, min(G, start + _BLOCK)):
            d[g] = _absorb(M, g, t, q_acc, out, parent[g] if n_parent else -1)
        _subtract(Q, q_acc)
    return d, out


@numba.njit(cache=True, nogil=True)
def _pooled_level(
    children: np.ndarray,
    sums: np.ndarray,
    counts: np.ndarray,
    inv_d: np.ndarray,
    t: float,
    parent: np.ndarray,
    n_parent: int,
    Q: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The pooled leaf's parent level: each group's M = [sum_c children c/d_c, sum_c sums/d_c]
    is built on the fly (see :class:`LeafClasses`), then absorbed as in ``_level``."""
    G, m = children.shape
    w = sums.shape[2] + 1
    out = np.zeros((n_parent, w))
    q_acc = np.zeros((w - 1, w - 1))
    row = np.empty((1, w))
    d = np.empty(G)
    for start in range(0, G, _BLOCK):
        for g in range(start, min(G, start + _BLOCK)):
            for j in range(w):
                row[0, j] = 0.0
            for c in range(m):
                row[0, 0] += children[g, c] * counts[c] * inv_d[c]
                for j in range(1, w):
                    row[0, j] += sums[g, c, j - 1] * inv_d[c]
            d[g] = _absorb(row, 0, t, q_acc, out, parent[g] if n_parent else -1)
        _subtract(Q, q_acc)
    return d, out


def intercept_terms(
    agg: Aggregates, chain: InterceptChain, lambdas: list[np.ndarray], pooled: LeafClasses | None
) -> tuple[float, np.ndarray]:
    """log|H| and K'H^{-1}K for nested random intercepts: per level, with t = theta_l^2,
    d = 1 + t W, Q -= t S S'/d, log|H| += sum log d, [W, S] <- [W, S]/d, summed to parents.
    One compiled pass per level."""
    assert agg.chain is not None
    Q = np.array(agg.ktk, dtype=float, order="C")
    m = len(agg.chain)
    ts = [float(lambdas[f][0, 0]) ** 2 for f in agg.chain]
    logdet = 0.0
    empty = np.empty(0, dtype=np.int64)

    def parent_of(level: int) -> tuple[np.ndarray, int]:
        return (chain.parents[level], chain.ngroups[level + 1]) if level + 1 < m else (empty, 0)

    if pooled is not None:
        d = 1.0 + ts[0] * pooled.counts
        logdet += float(pooled.ngroups @ np.log(d))
        Q -= np.einsum("c,cij->ij", ts[0] / d, pooled.sss)
        dg, M = _pooled_level(pooled.children, pooled.sums, pooled.counts, 1.0 / d, ts[1], *parent_of(1), Q)
        logdet += float(np.log(dg).sum())
        start = 2
    else:
        assert chain.leaf is not None  # built for an unpooled leaf
        M, start = chain.leaf, 0
    for level in range(start, m):
        dg, M = _level(M, ts[level], *parent_of(level), Q)
        logdet += float(np.log(dg).sum())
    return logdet, Q


def nested_terms(agg: Aggregates, struct: Structure, lambdas: list[np.ndarray]) -> tuple[float, np.ndarray]:
    """log|H| and Q = K'H^{-1}K for nested factors with any random-effect columns."""
    assert agg.chain is not None
    Q = agg.ktk.copy()
    logdet = 0.0
    leaf = agg.factors[agg.chain[0]]
    assert leaf.ztz is not None and leaf.ztk is not None  # an unpooled leaf keeps its groups' arrays
    Mzz, Mzk = leaf.ztz, leaf.ztk
    assert Mzz is not None and Mzk is not None  # vector terms keep every group's blocks
    for level, f in enumerate(agg.chain):
        J = list(struct.factor_cols[f])
        lam = lambdas[f]
        if len(J) == 1:
            lam0 = lam[0, 0]
            P = lam0 * Mzz[:, J[0], :]  # (G, z)
            R = lam0 * Mzk[:, J[0], :]  # (G, k)
            d = 1.0 + lam0 * P[:, J[0]]
            logdet += np.log(d).sum()
            Pd, Rd = P / d[:, None], R / d[:, None]
            Q -= Rd.T @ R
            Mzz = Mzz - Pd[:, :, None] * P[:, None, :]
            Mzk = Mzk - Pd[:, :, None] * R[:, None, :]
        else:
            ld, Mzz, Mzk = vector_level(Mzz, Mzk, J, lam, Q)
            logdet += ld
        if level + 1 < len(agg.chain):
            G_parent = agg.factors[agg.chain[level + 1]].nlevels
            parent = agg.parents[level]
            Mzz = sum_by(parent, Mzz, G_parent)
            Mzk = sum_by(parent, Mzk, G_parent)
    return logdet, Q
