"""The analytic gradient of the profiled criterion over theta, for crossed vector effects.

With B = Z'Z, T = Lambda Lambda', H = I + Z T Z', A = Lambda'B Lambda + I = L L' and
E = L^{-1} Lambda'B, R = L^{-1} Lambda'Z'K:

    W = Z'H^{-1}Z = B - E'E,   U = Z'H^{-1}K = Z'K - E'R,
    d log|H| = tr(W dT),   dQ = -U' dT U   (Q = K'H^{-1}K).

The profiled criterion is log|H| + dof log(pwrss) [+ log|Q_XX| for REML]; with u = (-beta, 1),
d pwrss = u' dQ u (beta minimises pwrss) and d log|Q_XX| = tr(Q_XX^{-1} dQ_XX).  As T is
block diagonal with T_f = lam_f lam_f' repeated over the groups of factor f, the derivative
with respect to T_f is the symmetric q_f x q_f matrix

    G_f = sum_g W_gg - (dof / pwrss) sum_g a_g a_g' - sum_g U_gX Q_XX^{-1} U_gX'

(a = U u; the last term for REML only), d/d lam_f = 2 G_f lam_f, and d/dtheta_k adds that
over the entries theta_k feeds.  G_f also judges a boundary point: at a minimum over
positive semi-definite T_f, G_f T_f = 0 and G_f is positive semi-definite.  E comes from
the blocked factor (:meth:`hlm.lmm.blocked.BlockedSystem.derivative_terms`) or, without it,
from a dense Cholesky of A (q of a few hundred).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from hlm.aggregate.stats import Aggregates
from hlm.lmm.blocked import BlockedSystem
from hlm.lmm.crossed import CrossedSystem, lambda_matrix
from hlm.lmm.deviance import profile
from hlm.lmm.structure import Structure


@dataclass(frozen=True)
class Derivatives:
    """The criterion at theta, its gradient over theta and G_f = d criterion / d T_f per factor."""

    objective: float
    gradient: np.ndarray
    cov_gradients: tuple[np.ndarray, ...]


def dense_derivative_terms(
    system: CrossedSystem, agg: Aggregates, lambdas: list[np.ndarray]
) -> tuple[float, np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """log|H|, K'H^{-1}K, sum_g W_gg per factor and Z_g'H^{-1}K per group (G_f, q_f, k), from
    the dense Cholesky of A (module docstring); LinAlgError where A is singular."""
    Lam = lambda_matrix(system, agg, lambdas)
    LB = (Lam.T @ system.ztz).toarray()  # Lambda'B
    A = (Lam.T @ system.ztz @ Lam).toarray()
    A[np.diag_indices_from(A)] += 1.0
    L = sla.cholesky(A, lower=True, overwrite_a=True, check_finite=False)
    k = system.ztk.shape[1]
    ER = sla.solve_triangular(L, np.hstack([Lam.T @ system.ztk, LB]), lower=True, check_finite=False)
    R, E = ER[:, :k], ER[:, k:]
    U = system.ztk - E.T @ R
    wsum: list[np.ndarray] = [np.empty(0)] * len(lambdas)
    ugroups: list[np.ndarray] = [np.empty(0)] * len(lambdas)
    off = 0
    for f, size in zip(system.order, system.sizes):
        q = lambdas[f].shape[0]
        G = size // q
        rows = slice(off, off + size)
        Bd = system.ztz[rows, rows].toarray().reshape(G, q, G, q)[np.arange(G), :, np.arange(G), :]
        Eg = E[:, rows].reshape(-1, G, q)
        wsum[f] = Bd.sum(axis=0) - np.einsum("nga,ngb->ab", Eg, Eg)
        ugroups[f] = U[rows].reshape(G, q, k)
        off += size
    return 2.0 * float(np.log(np.diag(L)).sum()), agg.ktk - R.T @ R, wsum, ugroups


def derivatives(
    system: CrossedSystem,
    blocked: BlockedSystem | None,
    agg: Aggregates,
    struct: Structure,
    reml: bool,
    theta: np.ndarray,
) -> Derivatives:
    """The criterion, d criterion / d theta and G_f at theta (module docstring); LinAlgError
    where A or Q_XX is singular."""
    lambdas = struct.lambdas(np.asarray(theta, dtype=float))
    if blocked is not None:
        logdet, Q, wsum, ugroups = blocked.derivative_terms(lambdas)
    else:
        logdet, Q, wsum, ugroups = dense_derivative_terms(system, agg, lambdas)
    if agg.weights is not None:
        logdet -= agg.log_weights
    prof = profile(logdet, Q, agg.nobs, reml)
    p = Q.shape[0] - 1
    dof = agg.nobs - p if reml else agg.nobs
    u = np.append(-prof.beta, 1.0)
    qxx_inv = prof.qxx_inv if reml and p else None
    cov: list[np.ndarray] = []
    grad_lam = []
    for f, lam in enumerate(lambdas):
        Ug = ugroups[f]
        a = Ug @ u  # (G, q)
        P = (dof / prof.pwrss) * (a.T @ a)
        if qxx_inv is not None:  # sum_g U_gX Q_XX^{-1} U_gX' as one product over the groups
            UX = np.transpose(Ug[:, :, :p], (1, 0, 2)).reshape(len(lam), -1)  # (q, G p)
            P += (np.transpose(Ug[:, :, :p] @ qxx_inv, (1, 0, 2)).reshape(len(lam), -1)) @ UX.T
        Gf = wsum[f] - P
        Gf = 0.5 * (Gf + Gf.T)
        cov.append(Gf)
        grad_lam.append(2.0 * Gf @ lam)
    grad = np.zeros(len(theta))
    for k, f, r, c in struct.entries:
        grad[k] += grad_lam[f][r, c]
    return Derivatives(prof.objective, grad, tuple(cov))
