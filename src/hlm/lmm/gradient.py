"""The analytic gradient of the profiled criterion over theta, for crossed vector effects.

With B = Z'Z, T = Lambda Lambda', H = I + Z T Z' and A = Lambda'B Lambda + I:

    U = Z'H^{-1}K = Z'K - B Lambda A^{-1} Lambda'Z'K,      W Lambda = B Lambda A^{-1}  (W = Z'H^{-1}Z)
    d log|H| = tr(W dT),   dQ = -U' dT U,   dT = dLambda Lambda' + Lambda dLambda'.

The profiled criterion is log|H| + dof log(pwrss) [+ log|Q_XX| for REML]; with u = (-beta, 1),
d pwrss = u' dQ u (beta minimises pwrss) and d log|Q_XX| = tr(Q_XX^{-1} dQ_XX).  As Lambda is
block diagonal with lam_f repeated over the groups of factor f, the derivative with respect to
the entries of lam_f is

    2 [ sum_g (B Lambda A^{-1})_gg - (dof / pwrss) sum_g a_g a_g' lam_f - sum_g U_gX Q_XX^{-1} U_gX' lam_f ]

(a = U u; the last term for REML only), and d/dtheta_k adds it over the entries theta_k feeds.
Dense algebra on the q x q matrix A: meant for the blocked evaluator's sizes (q of a few hundred).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lapack

from hlm.aggregate.stats import Aggregates
from hlm.lmm.crossed import CrossedSystem, lambda_matrix
from hlm.lmm.kernels import fixed_solve
from hlm.lmm.structure import Structure


def crossed_gradient(
    system: CrossedSystem, agg: Aggregates, struct: Structure, reml: bool, theta: np.ndarray
) -> np.ndarray:
    """d criterion / d theta at theta (module docstring); LinAlgError where A or Q_XX is singular."""
    lambdas = struct.lambdas(np.asarray(theta, dtype=float))
    Lam = lambda_matrix(system, agg, lambdas)
    BL = (system.ztz @ Lam).toarray()  # B Lambda
    n = BL.shape[0]
    A = Lam.T @ BL
    A[np.diag_indices(n)] += 1.0
    L, info = lapack.dpotrf(A, lower=1, overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError("I + Lambda'Z'Z Lambda is not positive definite")
    Ainv, info = lapack.dpotri(L, lower=1, overwrite_c=1)  # lower triangle of A^{-1}
    Ainv = np.tril(Ainv) + np.tril(Ainv, -1).T
    U = system.ztk - BL @ (Ainv @ (Lam.T @ system.ztk))
    Q = agg.ktk - system.ztk.T @ (Lam @ (Ainv @ (Lam.T @ system.ztk)))
    p = Q.shape[0] - 1
    beta, _ = fixed_solve(Q) if p else (np.empty(0), 0.0)
    pwrss = float(Q[p, p] - Q[p, :p] @ beta)
    dof = agg.nobs - p if reml else agg.nobs
    a = U @ np.append(-beta, 1.0)
    UX = U[:, :p]
    UXQ = UX @ np.linalg.inv(Q[:p, :p]) if reml and p else None
    grad_lam = [np.zeros_like(lam) for lam in lambdas]
    off = 0
    for f, size in zip(system.order, system.sizes):
        q = lambdas[f].shape[0]
        G = size // q
        rows = slice(off, off + size)
        m_sum = np.einsum("gan,ngb->ab", BL[rows].reshape(G, q, n), Ainv[:, rows].reshape(n, G, q))
        ag = a[rows].reshape(G, q)
        P = (dof / pwrss) * (ag.T @ ag)
        if UXQ is not None:
            P += np.einsum("gap,gbp->ab", UXQ[rows].reshape(G, q, p), UX[rows].reshape(G, q, p))
        grad_lam[f] = 2.0 * (m_sum - P @ lambdas[f])
        off += size
    grad = np.zeros(len(theta))
    for k, f, r, c in struct.entries:
        grad[k] += grad_lam[f][r, c]
    return grad
