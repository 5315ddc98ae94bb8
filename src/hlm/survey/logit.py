"""The multilevel pseudo-likelihood of a random-intercept logit (WeMix's binomial ``mix``,
Stata's ``melogit`` with pweights), integrated by adaptive Gauss-Hermite quadrature.

For level-2 groups j with weight W_j and rows i with conditional weights a_i (w_i|j),
eta_i = x_i' beta + tau u_j and u_j ~ N(0, 1):

    l(beta, tau) = sum_j W_j log Int exp(h_j(u)) du / sqrt(2 pi),
    h_j(u) = sum_i a_i [y_i eta_i - log(1 + e^eta_i)] - u^2 / 2.

With the mode m_j of h_j and s_j = (1 + tau^2 sum_i a_i mu_i (1 - mu_i))^(-1/2) at it,
    log Int ... ~ log s_j + logsumexp_k [log w_k + z_k^2 / 2 + h_j(m_j + s_j z_k)] - log(2 pi) / 2
with the probabilists' Gauss-Hermite nodes z_k and weights w_k (WeMix's rule: 13 points by
default).  All weights 1 is glmer's nAGQ likelihood.

Three levels (classes j in schools k, eta_i = x_i' beta + tau_2 u_j + tau_3 v_k) integrate level
by level: with c_j the class's conditional weight and L_j(v) class j's log integral above at
the school's shift tau_3 v,

    l = sum_k W_k log Int exp(g_k(v)) dv / sqrt(2 pi),   g_k(v) = sum_{j in k} c_j L_j(v) - v^2 / 2,

the outer integral by the same adaptive rule around g_k's mode (Newton steps on central
differences of g_k, which is concave) with s_k = (-g_k'')^(-1/2) there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import expit, logsumexp


@dataclass(frozen=True)
class BinaryRows:
    """A 0/1 response, X, the rows' conditional weights a and groups, and the groups' weights W."""

    y: np.ndarray
    X: np.ndarray
    a: np.ndarray
    group: np.ndarray
    W: np.ndarray  # the groups' weights (conditional on the top level's with three levels)
    parent: np.ndarray | None = None  # three levels: each group's top-level group
    Wtop: np.ndarray | None = None  # three levels: the top-level groups' weights

    @property
    def ngroups(self) -> int:
        return len(self.W)


def _h(rows: BinaryRows, eta0: np.ndarray, tau: float, u: np.ndarray) -> np.ndarray:
    """h_j(u_j) for every group (u: one value per group)."""
    eta = eta0 + tau * u[rows.group]
    ll = rows.a * (rows.y * eta - np.logaddexp(0.0, eta))
    return np.bincount(rows.group, ll, minlength=rows.ngroups) - u * u / 2


def modes(rows: BinaryRows, eta0: np.ndarray, tau: float, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The modes m_j of h_j by Newton steps with step halving (h_j is concave), and s_j."""
    G = rows.ngroups
    h = _h(rows, eta0, tau, u)
    for _ in range(100):
        mu = expit(eta0 + tau * u[rows.group])
        grad = tau * np.bincount(rows.group, rows.a * (rows.y - mu), minlength=G) - u
        curv = 1.0 + tau * tau * np.bincount(rows.group, rows.a * mu * (1 - mu), minlength=G)
        step = grad / curv
        for _ in range(40):
            new = _h(rows, eta0, tau, u + step)
            worse = new < h - 1e-12 * np.abs(h)
            if not worse.any():
                break
            step = np.where(worse, step / 2, step)
        u, h = u + step, new
        if np.max(np.abs(step), initial=0.0) < 1e-11:
            break
    mu = expit(eta0 + tau * u[rows.group])
    s = 1.0 / np.sqrt(1.0 + tau * tau * np.bincount(rows.group, rows.a * mu * (1 - mu), minlength=G))
    return u, s


def _log_integrals(rows: BinaryRows, eta0: np.ndarray, tau: float, nagq: int) -> np.ndarray:
    """Each group's log Int exp(h_j(u)) du / sqrt(2 pi) by adaptive Gauss-Hermite."""
    m, s = modes(rows, eta0, tau, np.zeros(rows.ngroups))
    z, wk = hermegauss(nagq)
    u = m[:, None] + s[:, None] * z[None, :]  # (groups, nodes)
    eta = eta0[:, None] + tau * u[rows.group]
    ll = rows.a[:, None] * (rows.y[:, None] * eta - np.logaddexp(0.0, eta))
    per = np.stack([np.bincount(rows.group, ll[:, k], minlength=rows.ngroups) for k in range(nagq)], axis=1)
    terms = np.log(wk) + z**2 / 2 + per - u**2 / 2
    return np.log(s) + logsumexp(terms, axis=1) - 0.5 * np.log(2 * np.pi)


def group_loglik(rows: BinaryRows, beta: np.ndarray, taus: np.ndarray, nagq: int) -> np.ndarray:
    """The top-level groups' weighted log integrals (see the module docstring); ``taus``: the
    SDs innermost level first."""
    eta0 = rows.X @ beta
    if rows.parent is None:
        return rows.W * _log_integrals(rows, eta0, float(taus[0]), nagq)
    assert rows.Wtop is not None
    parent, ntop, tau3 = rows.parent, len(rows.Wtop), float(taus[1])
    top_of_row = parent[rows.group]

    def g(v: np.ndarray) -> np.ndarray:
        inner = _log_integrals(rows, eta0 + tau3 * v[top_of_row], float(taus[0]), nagq)
        return np.bincount(parent, rows.W * inner, minlength=ntop) - v * v / 2

    v, h = np.zeros(ntop), 1e-4
    for _ in range(50):
        lo, mid, hi = g(v - h), g(v), g(v + h)
        curv = np.minimum((hi - 2 * mid + lo) / h**2, -1.0)  # g'' <= -1: concave, with the N(0, 1) term
        step = -((hi - lo) / (2 * h)) / curv
        v = v + step
        if np.max(np.abs(step), initial=0.0) < 1e-9:
            break
    lo, mid, hi = g(v - h), g(v), g(v + h)
    s = 1.0 / np.sqrt(-np.minimum((hi - 2 * mid + lo) / h**2, -1.0))
    z, wk = hermegauss(nagq)
    per = np.stack([g(v + s * zk) for zk in z], axis=1)  # (top groups, nodes)
    terms = np.log(wk) + z**2 / 2 + per
    return rows.Wtop * (np.log(s) + logsumexp(terms, axis=1) - 0.5 * np.log(2 * np.pi))


def weighted_glm(rows: BinaryRows, wrow: np.ndarray) -> np.ndarray:
    """beta of the logit without random effects, rows weighted by ``wrow`` (Fisher scoring)."""
    beta = np.zeros(rows.X.shape[1])
    for _ in range(100):
        mu = expit(rows.X @ beta)
        info = rows.X.T @ ((wrow * mu * (1 - mu))[:, None] * rows.X)
        step = np.linalg.solve(info, rows.X.T @ (wrow * (rows.y - mu)))
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta
