"""Conditional modes and conditional covariances of the random effects, from aggregates.

With b = Lambda u and A = Lambda'Z'Z Lambda + I (lme4's L L'), the conditional mode of u
given the data at the estimates (theta, beta, sigma) solves

    A u = Lambda'Z'(y - X beta) = Lambda'Z'K w,        w = [-beta; 1],   K = [X y],

b = Lambda u, and the conditional covariance of b (lme4's ``condVar``, which conditions on
beta) is sigma^2 Lambda A^{-1} Lambda'.  Only the diagonal blocks of A^{-1} (one q_f x q_f
block per group) are needed.

* Nested factors (a chain, innermost first): A has the pattern of a tree -- a group is
  coupled only with its ancestors, and its ancestors form a clique -- so a block Cholesky
  eliminating innermost levels first has no fill-in.  The bottom-up pass eliminates each
  level (Schur complements are summed into the ancestors, as in ``core.nested``); the
  top-down pass back-substitutes for u and computes the selected inverse (Takahashi):
  with S_g = F_g F_g', W_g = F_g^{-1} O_g (O_g: g's coupling with its ancestors) and
  Phi_a the inverse restricted to g's ancestors,

      (A^{-1})_gg = F_g^{-T} (I + W_g Phi_a W_g') F_g^{-1},
      (A^{-1})_{g,anc} = -F_g^{-T} W_g Phi_a.

  Outer levels' Z'Z and Z'K are sums of their children's; the block coupling a group with
  an ancestor is the group's own Z'Z restricted to the two factors' columns.  Cost is
  linear in the number of groups.
* Nested random intercepts (the pool is the intercept): with t_l = lambda_l^2, a group's
  coupling with all its ancestors stays proportional to (lambda_j) through the elimination,
  so each group carries two numbers: omega (its count, less what its descendants absorbed)
  and rho (its residual sum, likewise).  Bottom-up, S = 1 + t omega and omega/S, rho/S are
  summed into the parents; top-down, with c the sum of the ancestors' modes b and V its
  conditional variance / sigma^2 (both 0 at the top),

      u = lambda (rho - omega c) / S,   (A^{-1})_gg = (1 + t omega^2 V / S) / S,

  and the children get c + lambda u and V' = t / S + V / S^2.  The same elimination and
  selected inverse as above, with scalars in place of the blocks.
* Crossed factors: the blocked Cholesky of ``core.crossed`` (block-diagonal first factor,
  dense Schur complement for the rest); the first factor's diagonal blocks of A^{-1} are
  L1^{-T}(I + V_g'V_g)L1^{-1} with V = L22^{-1} C21, accumulated in column chunks.  When
  the later factors are too many for a dense block, a sparse LU is used and the diagonal
  blocks come from solves against unit vectors (slower; O(q) solves).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from hlm.aggregate.stats import ARROW_TEXT, text_dtype
from hlm.lmm.crossed import DENSE_LIMIT, group_arrays, lambda_matrix
from hlm.lmm.nested import sum_by

if TYPE_CHECKING:
    from hlm.lmm.result import LmmResult

RANEF_COLUMNS = ["group", "level", "term", "estimate", "std_error"]
_CHUNK = 2048


@dataclass(frozen=True)
class ConditionalModes:
    """Per grouping factor (index as in ``Aggregates.factors``): modes b (G, q) and
    conditional covariances sigma^2 Lambda A^{-1} Lambda' (G, q, q), columns in the factor's
    local order (``Structure.factor_cols``)."""

    modes: tuple[np.ndarray | None, ...]  # None for a pooled factor (no groups in memory)
    condvar: tuple[np.ndarray | None, ...]
    # for a pooled innermost factor, per group of its parent: c, the sum of the ancestors'
    # modes b, and V, their conditional variance / sigma^2 (the scalar recursion's c and V),
    # from which a pooled group's own mode and variance follow (``write_ranef``)
    pooled_parent: tuple[np.ndarray, np.ndarray] | None = None


def _batched_inv_lower(S: np.ndarray) -> np.ndarray:
    """F^{-1} for the Cholesky factors F of a stack of SPD matrices."""
    if S.shape[1] == 1:
        return 1.0 / np.sqrt(S)
    F = np.linalg.cholesky(S)
    return np.linalg.inv(F)


def _residual_weights(fit: LmmResult) -> np.ndarray:
    """w = [-beta; 1], so that Z'K w = Z'(y - X beta)."""
    return np.append(-np.asarray(fit.profiled.beta, dtype=float), 1.0)


def intercept_chain_modes(fit: LmmResult) -> ConditionalModes:
    """Nested random intercepts: the scalar recursion of the module docstring.  A pooled
    innermost factor (:class:`~hlm.aggregate.stats.LeafClasses`) enters its parents by size
    class and gets no modes (None): its groups are not in memory."""
    agg = fit.aggregates
    chain = agg.chain
    assert chain is not None and agg.intercepts_only
    m = len(chain)
    lambdas = fit.structure.lambdas(fit.theta)
    lam = [float(lambdas[f][0, 0]) for f in chain]
    w = _residual_weights(fit)
    leaf = agg.factors[chain[0]]
    omega: dict[int, np.ndarray] = {}  # by level, from the first level not absorbed
    rho: dict[int, np.ndarray] = {}
    S: dict[int, np.ndarray] = {}
    if (pool := leaf.pooled) is not None:  # absorb the leaf by class: sum_c children (or sums) / S_c
        start, inv = 1, 1.0 / (1.0 + lam[0] ** 2 * pool.counts)
        omega[1], rho[1] = pool.children @ (pool.counts * inv), (pool.sums @ w) @ inv
    else:
        start = 0
        ztz, ztk = group_arrays(leaf)
        omega[0], rho[0] = ztz[:, 0, 0], ztk[:, 0, :] @ w
    for l in range(start, m):
        S[l] = 1.0 + lam[l] ** 2 * omega[l]
        if l < m - 1:
            G = agg.factors[chain[l + 1]].nlevels
            parent = np.asarray(agg.parents[l])
            omega[l + 1] = sum_by(parent, omega[l] / S[l], G)
            rho[l + 1] = sum_by(parent, rho[l] / S[l], G)
    per_factor: dict[int, tuple[np.ndarray, np.ndarray] | None] = {chain[0]: None}
    c = V = np.zeros(len(S[m - 1]))
    for l in range(m - 1, start - 1, -1):
        t = lam[l] ** 2
        u = lam[l] * (rho[l] - omega[l] * c) / S[l]
        sig = (1.0 + t * omega[l] ** 2 * V / S[l]) / S[l]
        per_factor[chain[l]] = (u[:, None], sig[:, None, None])
        if l > start:
            parent = np.asarray(agg.parents[l - 1])
            c, V = (c + lam[l] * u)[parent], (t / S[l] + V / S[l] ** 2)[parent]
        elif start:  # the pooled leaf's parents: what its groups would receive
            below = (c + lam[l] * u, t / S[l] + V / S[l] ** 2)
    modes = _assemble(fit, per_factor, lambdas)
    return replace(modes, pooled_parent=below) if start else modes


def _ancestor_layout(
    parents: Sequence[np.ndarray], q: list[int]
) -> tuple[list[dict[int, np.ndarray]], list[dict[int, int]], list[int]]:
    """Ancestor maps and offsets of a nesting chain of ``len(q)`` levels, innermost first.

    ``anc[l][j]`` (j > l) maps each level-l group to its level-j ancestor (composing the parent maps),
    ``off[l][j]`` is where level j's ``q[j]`` columns start in level l's stacked ancestor vector and
    ``D[l]`` is that vector's length, the sum of ``q[j]`` over j > l.
    """
    m = len(q)
    anc: list[dict[int, np.ndarray]] = [{} for _ in range(m)]
    for l in range(m - 1):
        anc[l][l + 1] = np.asarray(parents[l])
        for j in range(l + 2, m):
            anc[l][j] = np.asarray(parents[j - 1])[anc[l][j - 1]]
    off = [{j: int(sum(q[l + 1 : j])) for j in range(l + 1, m)} for l in range(m)]
    D = [int(sum(q[l + 1 :])) for l in range(m)]
    return anc, off, D


def nested_modes(fit: LmmResult) -> ConditionalModes:
    """Bottom-up elimination, top-down back-substitution and selected inverse (see module)."""
    agg, struct = fit.aggregates, fit.structure
    chain = agg.chain
    assert chain is not None
    m = len(chain)
    lambdas = struct.lambdas(fit.theta)
    w = _residual_weights(fit)
    J = [list(struct.factor_cols[f]) for f in chain]
    q = [len(j) for j in J]
    lam = [lambdas[f] for f in chain]
    G = [agg.factors[f].nlevels for f in chain]
    anc, off, D = _ancestor_layout(agg.parents, q)

    ztz, ztk = group_arrays(agg.factors[chain[0]])
    ztk = ztk @ w  # (G0, z, z), (G0, z)
    S, O, r = [], [], []
    for l in range(m):
        if l:
            ztz = sum_by(np.asarray(agg.parents[l - 1]), ztz, G[l])
            ztk = sum_by(np.asarray(agg.parents[l - 1]), ztk, G[l])
        S.append(np.eye(q[l]) + np.einsum("ji,gjk,kl->gil", lam[l], ztz[:, J[l]][:, :, J[l]], lam[l]))
        r.append(np.einsum("ji,gj->gi", lam[l], ztk[:, J[l]]))
        Ol = np.zeros((G[l], q[l], D[l]))
        for j in range(l + 1, m):
            blk = ztz[:, J[l]][:, :, J[j]]  # group's own Z'Z couples it with its ancestor
            Ol[:, :, off[l][j] : off[l][j] + q[j]] = np.einsum("ji,gjk,kl->gil", lam[l], blk, lam[j])
        O.append(Ol)

    Finv, W, c = [], [], []
    for l in range(m):
        Fi = _batched_inv_lower(S[l])
        cl = np.einsum("gij,gj->gi", Fi, r[l])
        Wl = np.einsum("gij,gjk->gik", Fi, O[l])
        Finv.append(Fi)
        c.append(cl)
        W.append(Wl)
        if l == m - 1:
            break
        U = np.einsum("gia,gib->gab", Wl, Wl)
        v = np.einsum("gia,gi->ga", Wl, cl)
        for j in range(l + 1, m):
            a, b = off[l][j], off[l][j] + q[j]
            S[j] -= sum_by(anc[l][j], U[:, a:b, a:b], G[j])
            if b < D[l]:
                O[j] -= sum_by(anc[l][j], U[:, a:b, b:], G[j])
            r[j] -= sum_by(anc[l][j], v[:, a:b], G[j])

    u: list[np.ndarray] = [np.empty(0)] * m
    sigma_gg: list[np.ndarray] = [np.empty(0)] * m
    phi_above: np.ndarray | None = None  # Phi of level l+1: inverse over {group} + ancestors
    for l in range(m - 1, -1, -1):
        FiT = np.transpose(Finv[l], (0, 2, 1))
        if l == m - 1:
            u[l] = np.einsum("gij,gj->gi", FiT, c[l])
            sig = np.einsum("gij,gjk->gik", FiT, Finv[l])
            phi = sig
        else:
            ua = np.concatenate([u[j][anc[l][j]] for j in range(l + 1, m)], axis=1)
            u[l] = np.einsum("gij,gj->gi", FiT, c[l] - np.einsum("gij,gj->gi", W[l], ua))
            assert phi_above is not None
            phia = phi_above[np.asarray(agg.parents[l])]  # (G, D, D)
            WP = np.einsum("gij,gjk->gik", W[l], phia)
            inner = np.eye(q[l]) + np.einsum("gij,gkj->gik", WP, W[l])
            sig = np.einsum("gij,gjk,gkl->gil", FiT, inner, Finv[l])
            if l > 0:
                X = -np.einsum("gij,gjk->gik", FiT, WP)
                phi = np.empty((G[l], q[l] + D[l], q[l] + D[l]))
                phi[:, : q[l], : q[l]] = sig
                phi[:, : q[l], q[l] :] = X
                phi[:, q[l] :, : q[l]] = np.transpose(X, (0, 2, 1))
                phi[:, q[l] :, q[l] :] = phia
        sigma_gg[l] = sig
        phi_above = phi if l > 0 else None

    return _assemble(fit, {f: (u[l], sigma_gg[l]) for l, f in enumerate(chain)}, lambdas)


def _assemble(
    fit: LmmResult, per_factor: Mapping[int, tuple[np.ndarray, np.ndarray] | None], lambdas: list[np.ndarray]
) -> ConditionalModes:
    s2 = fit.sigma**2
    modes: list[np.ndarray | None] = []
    condvar: list[np.ndarray | None] = []
    for f in range(len(fit.aggregates.factors)):
        entry = per_factor[f]
        if entry is None:  # a pooled factor
            modes.append(None)
            condvar.append(None)
            continue
        uf, sig = entry
        lam = lambdas[f]
        modes.append(uf @ lam.T)
        condvar.append(s2 * np.einsum("ij,gjk,lk->gil", lam, sig, lam))
    return ConditionalModes(tuple(modes), tuple(condvar))


def crossed_modes(fit: LmmResult) -> ConditionalModes:
    """Blocked Cholesky (dense Schur complement) or sparse LU, as in ``core.crossed``."""
    agg, struct = fit.aggregates, fit.structure
    system = fit.devfun.crossed
    assert system is not None
    lambdas = struct.lambdas(fit.theta)
    w = _residual_weights(fit)
    Lam = lambda_matrix(system, agg, lambdas)
    A = (Lam.T @ system.ztz @ Lam).tocsr()
    b = Lam.T @ (system.ztk @ w)  # (n,)
    ntot = A.shape[0]
    n1 = system.sizes[0]
    m = ntot - n1
    qs = [len(struct.factor_cols[f]) for f in system.order]
    starts = np.concatenate([[0], np.cumsum(system.sizes)]).astype(int)

    if m > DENSE_LIMIT:
        Afull = (A + sp.identity(ntot, format="csr")).tocsc()
        lu = splu(Afull, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
        u = lu.solve(b)
        diag_blocks = []
        for i, f in enumerate(system.order):
            qf, G = qs[i], agg.factors[f].nlevels
            blocks = np.empty((G, qf, qf))
            for a in range(qf):
                for g0 in range(0, G, _CHUNK):
                    g1 = min(G, g0 + _CHUNK)
                    cols = starts[i] + np.arange(g0, g1) * qf + a
                    E = np.zeros((ntot, len(cols)))
                    E[cols, np.arange(len(cols))] = 1.0
                    X = lu.solve(E)
                    rows = starts[i] + np.arange(g0, g1)[:, None] * qf + np.arange(qf)[None, :]
                    blocks[g0:g1, :, a] = X[rows, np.arange(len(cols))[:, None]]
            diag_blocks.append(blocks)
    else:
        f1 = system.order[0]
        lam1, q1 = lambdas[f1], qs[0]
        A11 = np.eye(q1) + np.einsum("ji,gjk,kl->gil", lam1, system.first_ztz, lam1)
        L1inv = _batched_inv_lower(A11)
        L1invT = np.transpose(L1inv, (0, 2, 1))
        G1 = n1 // q1
        c1 = np.einsum("gij,gj->gi", L1inv, b[:n1].reshape(G1, q1)).reshape(-1)
        if m == 0:
            u = np.einsum("gij,gj->gi", L1invT, c1.reshape(G1, q1)).reshape(-1)
            diag_blocks = [np.einsum("gij,gjk->gik", L1invT, L1inv)]
        else:
            C21 = (A[n1:, :n1] @ sp.block_diag(list(L1invT), format="csr")).tocsc()
            S22 = A[n1:, n1:].toarray() + np.eye(m) - (C21 @ C21.T).toarray()
            L22 = np.linalg.cholesky(S22)
            c2 = sla.solve_triangular(L22, b[n1:] - C21 @ c1, lower=True)
            u2 = sla.solve_triangular(L22.T, c2, lower=False)
            u1 = np.einsum("gij,gj->gi", L1invT, (c1 - C21.T @ u2).reshape(G1, q1)).reshape(-1)
            u = np.concatenate([u1, u2])
            # first factor: L1^{-T} (I + V_g'V_g) L1^{-1}, V = L22^{-1} C21, by chunks of groups
            inner = np.empty((G1, q1, q1))
            step = max(1, _CHUNK // q1)
            for g0 in range(0, G1, step):
                g1 = min(G1, g0 + step)
                V = sla.solve_triangular(L22, C21[:, g0 * q1 : g1 * q1].toarray(), lower=True)
                V = V.reshape(m, g1 - g0, q1)
                inner[g0:g1] = np.eye(q1) + np.einsum("mga,mgb->gab", V, V)
            diag_blocks = [np.einsum("gij,gjk,gkl->gil", L1invT, inner, L1inv)]
            L22inv = sla.solve_triangular(L22, np.eye(m), lower=True)
            S22inv = L22inv.T @ L22inv
            pos = 0
            for i in range(1, len(system.order)):
                qf = qs[i]
                G = system.sizes[i] // qf
                idx = pos + np.arange(G)[:, None] * qf + np.arange(qf)[None, :]
                diag_blocks.append(S22inv[idx[:, :, None], idx[:, None, :]])
                pos += system.sizes[i]
    per_factor = {}
    for i, f in enumerate(system.order):
        G = system.sizes[i] // qs[i]
        per_factor[f] = (u[starts[i] : starts[i + 1]].reshape(G, qs[i]), diag_blocks[i])
    return _assemble(fit, per_factor, lambdas)


def conditional_modes(fit: LmmResult) -> ConditionalModes:
    """Conditional modes and covariances for every grouping factor of ``fit``."""
    if fit.devfun.crossed_factors:
        return crossed_modes(fit)
    return intercept_chain_modes(fit) if fit.devfun.evaluator == "intercepts" else nested_modes(fit)


def factor_order(fit: LmmResult) -> list[int]:
    """Factors in lme4's order (by first appearance among the sorted terms)."""
    return list(dict.fromkeys(t.factor for t in fit.structure.terms))


def factor_columns(fit: LmmResult, f: int) -> list[str]:
    """Random-effect column names of factor f in its local order."""
    names = [""] * len(fit.structure.factor_cols[f])
    for term in fit.structure.terms:
        if term.factor == f:
            for loc, col in zip(term.local, term.columns):
                names[loc] = col
    return names


def ranef_frame(fit: LmmResult, modes: ConditionalModes) -> pd.DataFrame:
    """Tidy conditional modes: one row per (group, term, level), lme4's order.  The text
    columns are Arrow-backed strings (:func:`~hlm.aggregate.stats.text_dtype`), assembled
    as Arrow chunks (the labels, each name repeated), never as Python objects."""
    group: list[pa.Array] = []
    level: list[pa.Array] = []
    term: list[pa.Array] = []
    est, se = [], []
    for f in factor_order(fit):
        fac = fit.aggregates.factors[f]
        b, cv = modes.modes[f], modes.condvar[f]
        if b is None:
            continue
        assert cv is not None  # a factor has both its modes and their covariances, or neither
        labels = pa.array(fac.labels).cast(ARROW_TEXT)
        for a, col in enumerate(factor_columns(fit, f)):
            group.append(pa.repeat(pa.scalar(fac.name, ARROW_TEXT), fac.nlevels))
            level.append(labels)
            term.append(pa.repeat(pa.scalar(col, ARROW_TEXT), fac.nlevels))
            est.append(b[:, a])
            se.append(np.sqrt(np.maximum(cv[:, a, a], 0.0)))

    def text(chunks: list[pa.Array]) -> pd.api.extensions.ExtensionArray:
        return pd.array(pa.chunked_array(chunks, type=ARROW_TEXT), dtype=text_dtype())

    return pd.DataFrame(
        {
            "group": text(group),
            "level": text(level),
            "term": text(term),
            "estimate": np.concatenate(est),
            "std_error": np.concatenate(se),
        },
        columns=RANEF_COLUMNS,
    )


def coef_frames(fixef: pd.Series, ranef: pd.DataFrame, intercept: str) -> dict[str, pd.DataFrame]:
    """lme4's ``coef()``: per grouping factor a frame with one row per level and one column per
    fixed effect (fixef's order), beta_j + b_gj, where b_gj is the level's conditional mode for
    that column (0 where the factor has no random effect for it).  A random effect without a
    fixed counterpart gets a column of its own before the fixed effects, 0 + b_gj, as in lme4.
    ``ranef`` is the tidy frame of :func:`ranef_frame`; its ``(Intercept)`` is the fixed ``intercept``."""
    terms = ranef["term"].astype(object).replace("(Intercept)", intercept)
    extra = [t for t in pd.unique(terms) if t not in fixef.index]
    base = pd.concat([pd.Series(0.0, index=extra), fixef.astype(float)])
    out: dict[str, pd.DataFrame] = {}
    for group in pd.unique(ranef["group"]):
        rows = (ranef["group"] == group).to_numpy()
        levels = pd.Index(pd.unique(ranef["level"][rows]), name=str(group))
        modes = pd.DataFrame(
            {"level": ranef["level"][rows], "term": terms[rows], "estimate": ranef["estimate"][rows]}
        ).pivot(index="level", columns="term", values="estimate")
        table = pd.DataFrame(np.tile(base.to_numpy(), (len(levels), 1)), index=levels, columns=base.index)
        table[list(modes.columns)] += modes.reindex(index=levels).to_numpy()
        out[str(group)] = table
    return out
