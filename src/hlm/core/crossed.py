"""Crossed (non-nested) factors: blocked Cholesky of A = Lambda'Z'Z Lambda + I.

Random effects are ordered by factor, largest factor first.  As in MixedModels.jl the
first factor's block of A is block diagonal (one q1 x q1 block per group), so

    L = [[L1, 0], [C21, L22]],   L1 L1' = A11,   C21 = A21 L1^{-T},
    L22 L22' = A22 - C21 C21'                       (dense, the smaller factors)

and with R = L^{-1} Lambda'Z'K:  log|H| = 2 sum log diag L,  K'H^{-1}K = K'K - R'R.
When the remaining factors have more than ``DENSE_LIMIT`` effects, a sparse LU of the
whole SPD matrix (SuperLU, diagonal pivoting, minimum-degree ordering) is used instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from hlm.aggregate.stats import Aggregates
from hlm.core.structure import Structure

DENSE_LIMIT = 4000


@dataclass(frozen=True)
class CrossedSystem:
    """Z'Z and Z'K laid out for the blocked Cholesky (built once per fit)."""

    order: tuple[int, ...]  # factors, largest first
    sizes: tuple[int, ...]  # G_f * q_f in that order
    ztz: sp.csr_matrix  # (q, q)
    ztk: np.ndarray  # (q, k)
    first_ztz: np.ndarray  # (G1, q1, q1)


def build_crossed(agg: Aggregates, struct: Structure) -> CrossedSystem:
    """Assemble sparse Z'Z and dense Z'K from the per-group and cross-block aggregates."""
    order = tuple(sorted(range(len(agg.factors)), key=lambda f: -agg.factors[f].nlevels))
    q = [len(struct.factor_cols[f]) for f in range(len(agg.factors))]
    sizes = tuple(agg.factors[f].nlevels * q[f] for f in order)
    offset = {f: int(sum(sizes[:i])) for i, f in enumerate(order)}
    rows, cols, vals = [], [], []

    def put(f: int, h: int, gf: np.ndarray, gh: np.ndarray, blocks: np.ndarray) -> None:
        for a in range(q[f]):
            for b in range(q[h]):
                rows.append(offset[f] + gf * q[f] + a)
                cols.append(offset[h] + gh * q[h] + b)
                vals.append(blocks[:, a, b])

    for f, stats in enumerate(agg.factors):
        J = list(struct.factor_cols[f])
        g = np.arange(stats.nlevels)
        put(f, f, g, g, stats.ztz[:, J][:, :, J])
    for blk in agg.cross:
        Ji, Jj = list(struct.factor_cols[blk.i]), list(struct.factor_cols[blk.j])
        zz = blk.zz[:, Ji][:, :, Jj]
        put(blk.i, blk.j, blk.gi, blk.gj, zz)
        put(blk.j, blk.i, blk.gj, blk.gi, np.transpose(zz, (0, 2, 1)))
    n = int(sum(sizes))
    ztz = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    ztk = np.concatenate([agg.factors[f].ztk[:, list(struct.factor_cols[f]), :].reshape(-1, agg.ktk.shape[0])
                          for f in order])
    f1 = order[0]
    J1 = list(struct.factor_cols[f1])
    return CrossedSystem(order, sizes, ztz, ztk, agg.factors[f1].ztz[:, J1][:, :, J1])


def lambda_matrix(system: CrossedSystem, agg: Aggregates, lambdas: list[np.ndarray]) -> sp.csr_matrix:
    """Block-diagonal Lambda in the system's order."""
    blocks = [sp.kron(sp.identity(agg.factors[f].nlevels, format="csr"), sp.csr_matrix(lambdas[f]))
              for f in system.order]
    return sp.block_diag(blocks, format="csr")


def crossed_terms(system: CrossedSystem, agg: Aggregates, lambdas: list[np.ndarray]) -> tuple[float, np.ndarray]:
    """log|H| and Q = K'H^{-1}K for crossed factors."""
    Lam = lambda_matrix(system, agg, lambdas)
    A = (Lam.T @ system.ztz @ Lam).tocsr()
    b = Lam.T @ system.ztk  # (q, k)
    n1 = system.sizes[0]
    m = A.shape[0] - n1
    if m > DENSE_LIMIT:
        A = (A + sp.identity(A.shape[0], format="csr")).tocsc()
        lu = splu(A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
        logdet = float(np.log(np.abs(lu.U.diagonal())).sum())
        return logdet, agg.ktk - b.T @ lu.solve(b)
    lam1 = lambdas[system.order[0]]
    q1 = lam1.shape[0]
    A11 = np.eye(q1) + np.einsum("ji,gjk,kl->gil", lam1, system.first_ztz, lam1)
    L1 = np.linalg.cholesky(A11)  # (G1, q1, q1)
    L1inv = np.linalg.inv(L1)
    logdet = 2.0 * np.log(np.diagonal(L1, axis1=1, axis2=2)).sum()
    r1 = np.einsum("gij,gjk->gik", L1inv, b[:n1].reshape(-1, q1, b.shape[1])).reshape(n1, -1)
    Q = agg.ktk - r1.T @ r1
    if m == 0:
        return logdet, Q
    C21 = A[n1:, :n1] @ sp.block_diag(list(np.transpose(L1inv, (0, 2, 1))), format="csr")
    S22 = A[n1:, n1:].toarray() + np.eye(m) - (C21 @ C21.T).toarray()
    L22 = np.linalg.cholesky(S22)
    logdet += 2.0 * np.log(np.diag(L22)).sum()
    r2 = sla.solve_triangular(L22, b[n1:] - C21 @ r1, lower=True)
    return logdet, Q - r2.T @ r2
