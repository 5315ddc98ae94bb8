"""The full-Hessian sandwich of a pseudo-ML fit (Rabe-Hesketh & Skrondal 2006): over all of
phi = (beta, theta, sigma^2) jointly, V = H^-1 [K/(K-1) sum_k g_k g_k'] H^-1 with H the
Hessian of the pseudo-log-likelihood and g_k top-level group k's score, both by central
differences of :func:`hlm.survey.pseudo.cluster_loglik`.  It is NOT what WeMix reports for the
fixed effects (that is the beta-block sandwich of :func:`hlm.survey.pseudo.robust_vcov`); it
differs from it by a few per cent.  Variances follow by the delta method."""

from __future__ import annotations

import numpy as np

from hlm.lmm.structure import Structure
from hlm.survey.pseudo import WeightedRows, cluster_loglik


def _steps(phi: np.ndarray) -> np.ndarray:
    return 1e-3 * np.maximum(np.abs(phi), 1e-2)  # smaller steps lose the small theta to round-off


def full_sandwich(rows: WeightedRows, struct: Structure, phi: np.ndarray, block: list[int] | None = None) -> np.ndarray:
    """vcov of phi = (beta, theta, sigma^2) by the full-Hessian sandwich; with ``block`` (indices
    into phi) the sandwich of those parameters alone, the others held at their estimates."""
    idx = list(range(len(phi))) if block is None else block
    n = len(idx)
    h = _steps(phi[idx])
    E = np.zeros((n, len(phi)))
    E[np.arange(n), idx] = h

    def ll(x: np.ndarray) -> np.ndarray:
        return cluster_loglik(rows, struct, x)

    G = np.stack([(ll(phi + E[i]) - ll(phi - E[i])) / (2 * h[i]) for i in range(n)], axis=1)  # (K, n)
    f0 = float(ll(phi).sum())
    H = np.empty((n, n))
    for i in range(n):
        for j in range(i, n):
            if i == j:
                H[i, i] = (ll(phi + E[i]).sum() - 2 * f0 + ll(phi - E[i]).sum()) / h[i] ** 2
            else:
                pp, pm = ll(phi + E[i] + E[j]).sum(), ll(phi + E[i] - E[j]).sum()
                mp, mm = ll(phi - E[i] + E[j]).sum(), ll(phi - E[i] - E[j]).sum()
                H[i, j] = H[j, i] = (pp - pm - mp + mm) / (4 * h[i] * h[j])
    K = G.shape[0]
    Hinv = np.linalg.inv(H)
    return Hinv @ (K / (K - 1) * G.T @ G) @ Hinv
