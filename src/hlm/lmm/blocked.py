"""Crossed factors with vector random effects: a blocked Cholesky whose blocks keep their type.

Random effects are ordered by factor, largest first (as in :mod:`hlm.lmm.crossed`); the
first factor's block of A = Lambda'Z'Z Lambda + I is block diagonal, the rest is dense:

    L1_g L1_g' = I + lam1' B11_g lam1                 (G1 blocks of q1 x q1, batched)
    M_g = lam1 L1_g^{-T}          so  Lam1 A11^{-1} Lam1' = blockdiag(M_g M_g')
    P = B21 blockdiag(M_g)        (m x n1, dense)
    L22 L22' = I + LamR' (B22 - P P') LamR           (m x m, dense: the smaller factors)

with B = Z'Z and LamR the block-diagonal Lambda of the remaining factors.  The right-hand
sides follow the same blocks: r1_g = L1_g^{-1} lam1' (Z'K)_g, and
r2 = L22^{-1} LamR' ((Z'K)_2 - B21 v) with v_g = M_g r1_g; then log|H| = 2 sum log diag L
and K'H^{-1}K = K'K - r1'r1 - r2'r2.  The structure (B21, B22 as dense arrays, the blocks of
each factor) is laid out once per fit; an evaluation is a few batched matrix products, one
``syrk`` and one dense Cholesky of the m x m block -- no loop over groups and no Cholesky
of the whole matrix.  Used where B21 is dense enough for dense algebra to be the cheap
choice (the kb07-like designs: every subject sees every item).

For the analytic gradient (:mod:`hlm.lmm.gradient`) :meth:`BlockedSystem.derivative_terms`
also forms E = L^{-1} Lambda'B by the same blocks (E11_g = L1_g^{-1} lam1' B11_g,
F = L1^{-1} lam1' B12, and the rest's rows L22^{-1} (LamR'[B21 B22] - C21 [E11 F]),
one triangular solve with m + n1 right-hand sides), so that W = Z'H^{-1}Z = B - E'E and
Z'H^{-1}K = Z'K - E'R (R = L^{-1} Lambda'Z'K) come group by group without A^{-1}.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
from scipy.linalg.blas import dsyrk

from hlm.aggregate.stats import Aggregates
from hlm.lmm.crossed import CrossedSystem

DENSE_ENTRIES = 4_000_000  # largest m x n1 block kept dense
MIN_DENSITY = 0.2  # below this share of nonzeros in B21 the sparse path is cheaper


@dataclass(frozen=True)
class BlockedSystem:
    """The dense blocks of Z'Z and Z'K for :func:`blocked_terms` (built once per fit)."""

    first: int  # factor of the block-diagonal part
    q1: int
    b11: np.ndarray  # (G1, q1, q1)
    b21t: np.ndarray  # (G1, q1, m): B21' split by the first factor's groups
    b22: np.ndarray  # (m, m)
    k1: np.ndarray  # (G1, q1, k)
    k2: np.ndarray  # (m, k)
    ktk: np.ndarray
    rest: tuple[tuple[int, int, int, int], ...]  # per remaining factor: (factor, row offset, G, q)
    block_sums: tuple[np.ndarray, ...]  # per factor (by factor index): sum over its groups of B_gg

    def _lam_rest_t(self, lambdas: list[np.ndarray], X: np.ndarray) -> np.ndarray:
        """LamR' X for X with m rows (LamR block diagonal, one lam_f per group)."""
        out = np.empty_like(X)
        for f, off, G, q in self.rest:
            rows = X[off : off + G * q].reshape(G, q, -1)
            out[off : off + G * q] = np.matmul(lambdas[f].T, rows).reshape(G * q, -1)
        return out

    def _times_lam_rest(self, lambdas: list[np.ndarray], X: np.ndarray) -> np.ndarray:
        """X LamR for X with m columns."""
        out = np.empty_like(X)
        for f, off, G, q in self.rest:  # one product per factor: the rows of X by groups of q columns
            out[:, off : off + G * q] = (X[:, off : off + G * q].reshape(-1, q) @ lambdas[f]).reshape(X.shape[0], G * q)
        return out

    def terms(self, lambdas: list[np.ndarray]) -> tuple[float, np.ndarray]:
        """log|H| and K'H^{-1}K (see the module docstring)."""
        lam1 = lambdas[self.first]
        G1, q1, m = self.b21t.shape
        A11 = np.matmul(np.matmul(lam1.T, self.b11), lam1)
        A11[:, np.arange(q1), np.arange(q1)] += 1.0
        L1 = np.linalg.cholesky(A11)
        L1inv = np.linalg.inv(L1)
        logdet = 2.0 * float(np.log(np.diagonal(L1, axis1=1, axis2=2)).sum())
        r1 = np.matmul(L1inv, np.matmul(lam1.T, self.k1)).reshape(G1 * q1, -1)  # (n1, k)
        Q = self.ktk - r1.T @ r1
        Mt = np.matmul(L1inv, lam1.T)  # M_g' = L1_g^{-1} lam1'
        Pt = self._times_lam_rest(lambdas, np.matmul(Mt, self.b21t).reshape(G1 * q1, m))  # (LamR' P)'
        S = self._times_lam_rest(lambdas, self._lam_rest_t(lambdas, self.b22))
        S = dsyrk(-1.0, Pt, beta=1.0, c=S, trans=1, lower=1, overwrite_c=1)  # lower triangle
        S[np.diag_indices(m)] += 1.0
        L22 = sla.cholesky(S, lower=True, overwrite_a=True, check_finite=False)
        logdet += 2.0 * float(np.log(np.diag(L22)).sum())
        v = np.matmul(np.transpose(Mt, (0, 2, 1)), r1.reshape(G1, q1, -1)).reshape(G1 * q1, -1)  # M_g r1_g
        rhs = self._lam_rest_t(lambdas, self.k2 - self.b21t.reshape(G1 * q1, m).T @ v)
        r2 = sla.solve_triangular(L22, rhs, lower=True, check_finite=False)
        return logdet, Q - r2.T @ r2

    def derivative_terms(
        self, lambdas: list[np.ndarray]
    ) -> tuple[float, np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """log|H|, K'H^{-1}K and, per factor (by factor index), sum_g W_gg (q_f x q_f) and
        Z_g'H^{-1}K for every group (G_f, q_f, k); see the module docstring."""
        lam1 = lambdas[self.first]
        G1, q1, m = self.b21t.shape
        n1 = G1 * q1
        A11 = np.matmul(np.matmul(lam1.T, self.b11), lam1)
        A11[:, np.arange(q1), np.arange(q1)] += 1.0
        L1 = np.linalg.cholesky(A11)
        Mt = np.matmul(np.linalg.inv(L1), lam1.T)  # L1_g^{-1} lam1'
        logdet = 2.0 * float(np.log(np.diagonal(L1, axis1=1, axis2=2)).sum())
        r1 = np.matmul(Mt, self.k1)  # (G1, q1, k)
        E11 = np.matmul(Mt, self.b11)
        F = np.matmul(Mt, self.b21t).reshape(n1, m)
        Pt = self._times_lam_rest(lambdas, F)  # C21'
        lam_b22 = self._lam_rest_t(lambdas, self.b22)  # LamR' B22
        S = self._times_lam_rest(lambdas, lam_b22) - Pt.T @ Pt
        S[np.diag_indices(m)] += 1.0
        L22 = sla.cholesky(S, lower=True, overwrite_a=True, check_finite=False)
        logdet += 2.0 * float(np.log(np.diag(L22)).sum())
        b21 = self.b21t.reshape(n1, m)
        v = np.matmul(np.transpose(Mt, (0, 2, 1)), r1).reshape(n1, -1)
        rhs = self._lam_rest_t(lambdas, self.k2 - b21.T @ v)
        x1t = self._times_lam_rest(lambdas, b21) - np.matmul(
            np.transpose(E11, (0, 2, 1)), Pt.reshape(G1, q1, m)
        ).reshape(n1, m)
        ER = sla.solve_triangular(
            L22, np.hstack([rhs, x1t.T, lam_b22 - Pt.T @ F]), lower=True, check_finite=False
        )  # [r2 | rest's rows of E]
        k = rhs.shape[1]
        r2, E1, E2 = ER[:, :k], ER[:, k : k + n1], ER[:, k + n1 :]
        r1 = r1.reshape(n1, k)
        Q = self.ktk - r1.T @ r1 - r2.T @ r2
        wsum = list(self.block_sums)
        ugroups: list[np.ndarray] = [np.empty(0)] * len(wsum)
        wsum[self.first] = wsum[self.first] - _gram(E11, q1) - _gram(E1, q1)
        ugroups[self.first] = (
            self.k1 - np.matmul(np.transpose(E11, (0, 2, 1)), r1.reshape(G1, q1, k)) - (E1.T @ r2).reshape(G1, q1, k)
        )
        UR = self.k2 - F.T @ r1 - E2.T @ r2
        for f, off, G, q in self.rest:
            wsum[f] = wsum[f] - _gram(F[:, off : off + G * q], q) - _gram(E2[:, off : off + G * q], q)
            ugroups[f] = UR[off : off + G * q].reshape(G, q, k)
        return logdet, Q, wsum, ugroups


def _gram(X: np.ndarray, q: int) -> np.ndarray:
    """sum_g X_g'X_g over the blocks X_g of q consecutive columns (in every row) of X."""
    flat = X.reshape(-1, q)
    return flat.T @ flat


def build_blocked(system: CrossedSystem, agg: Aggregates, q: list[int]) -> BlockedSystem | None:
    """The dense layout of ``system`` when it pays (vector effects and a dense enough B21);
    None where the scalar or the sparse path of :mod:`hlm.lmm.crossed` is the better one."""
    if system.scalar is not None or len(system.order) < 2:
        return None
    n1 = system.sizes[0]
    n = system.ztz.shape[0]
    m = n - n1
    b21s = system.ztz[n1:, :n1]
    if m * n1 > DENSE_ENTRIES or b21s.nnz < MIN_DENSITY * m * n1:
        return None
    f1 = system.order[0]
    q1 = q[f1]
    G1 = n1 // q1
    b21t = np.ascontiguousarray(b21s.toarray().T).reshape(G1, q1, m)
    rest, off = [], 0
    for f, size in zip(system.order[1:], system.sizes[1:]):
        rest.append((f, off, size // q[f], q[f]))
        off += size
    k = system.ztk.shape[1]
    b22 = system.ztz[n1:, n1:].toarray()
    sums = [np.zeros((q[f], q[f])) for f in range(len(q))]
    sums[f1] = system.first_ztz.sum(axis=0)
    for f, off, G, qf in rest:
        block = b22[off : off + G * qf, off : off + G * qf].reshape(G, qf, G, qf)
        sums[f] = block[np.arange(G), :, np.arange(G), :].sum(axis=0)
    return BlockedSystem(
        f1,
        q1,
        system.first_ztz,
        b21t,
        b22,
        system.ztk[:n1].reshape(G1, q1, k),
        system.ztk[n1:],
        agg.ktk,
        tuple(rest),
        tuple(sums),
    )
