"""Nested random intercepts pooled by *type* at every level: the criterion in O(types), not O(groups).

This extends the leaf's pooling by count (:class:`~hlm.aggregate.stats.LeafClasses`) up the
chain of :mod:`hlm.lmm.nested`.  A leaf group's type is its count class; a higher group's type is
the multiset of its children's types.  Groups of one type share W_g(theta), hence d_g = 1 + t W_g,
at every theta.  With A_{g,pi} the sum of the leaf statistics S_h = 1'K_h below group g whose path
of types up to g is pi, group g's absorbed sums are S_g = sum_pi c_pi A_{g,pi}, c_pi the product
of 1/d along the path, and the recursion (t_l = theta_l^2) becomes

    Q = K'K - sum_l sum_tau t_l/d_tau sum_{pi,pi'} c_pi c_pi' B_tau[pi, pi'],   B_tau = sum_{g in tau} A_g A_g',
    log|H| = sum_l sum_tau N_tau log d_tau,     W_u = sum_tau C[u, tau] W_tau / d_tau  (u one level up),

C[u, tau] the children of type tau of a type-u group, N_tau the groups of type tau.  A balanced
design has one type and one path per level: an evaluation is a few k x k updates however many
groups there are.  Only the B's depend on the response; they are built once per data set in
O(groups).  Exact (the same sums in another order); used where types and paths are few.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from scipy import sparse

from hlm.aggregate.stats import Aggregates
from hlm.lmm.deviance import LOG2PI, Profiled, profile
from hlm.lmm.kernels import cholesky_fixed
from hlm.lmm.nested import leaf_classes
from hlm.lmm.structure import Structure

MAX_ENTRIES = 4096  # entries of all B's together beyond which the per-group recursion is used


@dataclass(frozen=True)
class TypedLayout:
    """The types of a chain's groups (fixed by its layout: counts and nesting, not the response)
    and the maps that sum the leaf statistics up to every level by (parent, child type)."""

    counts: np.ndarray  # (T_0,) the leaf types' counts
    ntypes: np.ndarray  # (L,) types per level
    npaths: np.ndarray  # (L,) paths per level: 1, T_0, T_1 T_0, ...
    groups: np.ndarray  # (L, T_max) groups of each type
    children: np.ndarray  # (L, T_max, T_max) children of type tau (level l - 1) of a type-u group (level l)
    members: tuple[tuple[np.ndarray, ...], ...]  # per level >= 1, per type: its groups
    lift: tuple[sparse.csr_matrix, ...]  # per level >= 2: (G_l T_{l-1}, G_{l-1}) sums by (parent, type)
    offsets: np.ndarray  # (L,) where each level's B starts in the flat array
    theta_index: np.ndarray  # (L,) the theta of each level's intercept
    nobs: int
    reml: bool

    @classmethod
    def of(cls, agg: Aggregates, struct: Structure, reml: bool) -> TypedLayout | None:
        """The layout of ``agg``'s chain where its leaf is pooled by count and the B's hold at
        most MAX_ENTRIES numbers; else None."""
        classes = leaf_classes(agg)
        if classes is None or agg.chain is None or agg.weights is not None:
            return None
        theta_of = {f: t for t, f, _, _ in struct.entries}
        if any(len(struct.factor_cols[f]) != 1 or f not in theta_of for f in agg.chain):
            return None
        k, L = classes.sss.shape[1], len(agg.chain)
        mult, ntypes, npaths = [np.eye(len(classes.counts))], [len(classes.counts)], [1, len(classes.counts)]
        members: list[tuple[np.ndarray, ...]] = []
        lift: list[sparse.csr_matrix] = []
        per_group = classes.children  # (G_l, T_{l-1}): children of each type per group of level l
        for level in range(1, L):
            rows, kind = np.unique(per_group, axis=0, return_inverse=True)
            kind = kind.reshape(-1)
            mult.append(rows)
            ntypes.append(len(rows))
            members.append(tuple(np.flatnonzero(kind == u) for u in range(len(rows))))
            if level + 1 < L:
                parent, n_up, T = agg.parents[level], agg.factors[agg.chain[level + 1]].nlevels, len(rows)
                cell = parent * T + kind
                ones = np.ones(len(kind))
                lift.append(sparse.csr_matrix((ones, (cell, np.arange(len(kind)))), shape=(n_up * T, len(kind))))
                per_group = np.bincount(cell, minlength=n_up * T).reshape(n_up, T).astype(float)
                npaths.append(T * npaths[-1])
        sizes = [ntypes[lv] * (npaths[lv] * k) ** 2 for lv in range(L)]
        if sum(sizes) > MAX_ENTRIES:
            return None
        T_max = max(ntypes)
        groups = np.zeros((L, T_max))
        children = np.zeros((L, T_max, T_max))
        groups[0, : ntypes[0]] = classes.ngroups
        for level in range(1, L):
            groups[level, : ntypes[level]] = [len(m) for m in members[level - 1]]
            children[level, : ntypes[level], : ntypes[level - 1]] = mult[level]
        return cls(
            np.asarray(classes.counts, dtype=float),
            np.array(ntypes, dtype=np.int64),
            np.array(npaths, dtype=np.int64),
            groups,
            children,
            tuple(members),
            tuple(lift),
            np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64),
            np.array([theta_of[f] for f in agg.chain], dtype=np.int64),
            agg.nobs,
            reml,
        )

    def bind(self, agg: Aggregates) -> TypedCriterion | None:
        """The criterion of the data set ``agg`` (this layout's; its leaf pooled), or None where
        its leaf is not pooled."""
        classes = leaf_classes(agg)
        if classes is None:
            return None
        k = classes.sss.shape[1]
        blocks = [classes.sss.reshape(-1)]
        A = classes.sums.reshape(classes.sums.shape[0], -1)  # (G_1, paths x k)
        for level in range(1, len(self.ntypes)):
            for rows in self.members[level - 1]:
                blocks.append((A[rows].T @ A[rows]).reshape(-1))
            if level + 1 < len(self.ntypes):
                A = (self.lift[level - 1] @ A).reshape(self.lift[level - 1].shape[0] // self.ntypes[level], -1)
        B = np.concatenate(blocks)
        assert len(B) == self.offsets[-1] + self.ntypes[-1] * (self.npaths[-1] * k) ** 2
        return TypedCriterion(self, B, np.ascontiguousarray(agg.ktk, dtype=float))


@dataclass(frozen=True)
class TypedCriterion:
    """theta -> the REML criterion or ML deviance of one data set (:class:`hlm.lmm.objective.
    DevianceFunction`'s, evaluated by type): one compiled call per evaluation."""

    layout: TypedLayout
    B: np.ndarray
    ktk: np.ndarray

    def _arrays(self, theta: np.ndarray) -> tuple[Any, ...]:
        """The compiled kernels' arguments at theta (layout arrays, B, K'K)."""
        lay = self.layout
        return (
            np.asarray(theta, dtype=float),
            lay.theta_index,
            lay.counts,
            lay.ntypes,
            lay.npaths,
            lay.groups,
            lay.children,
            self.B,
            lay.offsets,
            self.ktk,
        )

    def terms(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """log|H| and K'H^{-1}K at theta."""
        logdet, Q = _terms(*self._arrays(theta))
        return float(logdet), Q

    def profiled(self, theta: np.ndarray) -> Profiled:
        return profile(*self.terms(theta), self.layout.nobs, self.layout.reml)

    def __call__(self, theta: np.ndarray) -> float:
        args = (*self._arrays(theta), self.layout.nobs, self.layout.reml)
        return float(_criterion(*args))


@numba.njit(cache=True, nogil=True)
def _terms(
    theta: np.ndarray,
    theta_index: np.ndarray,
    counts: np.ndarray,
    ntypes: np.ndarray,
    npaths: np.ndarray,
    groups: np.ndarray,
    children: np.ndarray,
    B: np.ndarray,
    offsets: np.ndarray,
    ktk: np.ndarray,
) -> tuple[float, np.ndarray]:
    """log|H| and Q by type, bottom up (module docstring)."""
    L, T_max = groups.shape
    k = ktk.shape[0]
    Q = ktk.copy()
    W, W_up, d = np.zeros(T_max), np.zeros(T_max), np.ones(T_max)
    c, c_up = np.zeros(npaths.max()), np.zeros(npaths.max())
    W[: len(counts)] = counts
    c[0] = 1.0
    logdet = 0.0
    for lv in range(L):
        t = theta[theta_index[lv]] ** 2
        P = npaths[lv]
        Pk = P * k
        for tau in range(ntypes[lv]):
            d[tau] = 1.0 + t * W[tau]
            logdet += groups[lv, tau] * math.log(d[tau])
            f = t / d[tau]
            base = offsets[lv] + tau * Pk * Pk
            for a in range(P):
                for b in range(P):
                    cab = f * c[a] * c[b]
                    for i in range(k):
                        row = base + (a * k + i) * Pk + b * k
                        for j in range(k):
                            Q[i, j] -= cab * B[row + j]
        if lv + 1 < L:
            for u in range(ntypes[lv + 1]):
                s = 0.0
                for tau in range(ntypes[lv]):
                    s += children[lv + 1, u, tau] * W[tau] / d[tau]
                W_up[u] = s
            for tau in range(ntypes[lv]):
                for a in range(P):
                    c_up[tau * P + a] = c[a] / d[tau]
            W[:] = W_up
            c[:] = c_up
    return logdet, Q


@numba.njit(cache=True, nogil=True)
def _criterion(
    theta: np.ndarray,
    theta_index: np.ndarray,
    counts: np.ndarray,
    ntypes: np.ndarray,
    npaths: np.ndarray,
    groups: np.ndarray,
    children: np.ndarray,
    B: np.ndarray,
    offsets: np.ndarray,
    ktk: np.ndarray,
    nobs: int,
    reml: bool,
) -> float:
    """:func:`hlm.lmm.deviance.profile`'s objective of :func:`_terms`, compiled (inf where
    X'H^{-1}X is not positive definite)."""
    logdet, Q = _terms(theta, theta_index, counts, ntypes, npaths, groups, children, B, offsets, ktk)
    p = Q.shape[0] - 1
    beta, logdet_x = cholesky_fixed(Q, p)
    if not np.isfinite(logdet_x):
        return np.inf
    pwrss = Q[p, p]
    for i in range(p):
        pwrss -= Q[p, i] * beta[i]
    pwrss = max(pwrss, 2.2250738585072014e-308)
    dof = nobs - p if reml else nobs
    objective = logdet + dof * (1.0 + LOG2PI + math.log(pwrss / dof))
    return objective + logdet_x if reml else objective
