"""Stage 2 of the GLMM fit and its Hessian where the Laplace deviance f has its exact gradient
(:mod:`hlm.glmm.gradient`: scalar random terms, canonical links).

Stage 2 is L-BFGS-B from the fast stage's point x0 = (theta0, beta0) in coordinates v where f
has about the curvature 2 I, from H0 (:func:`_start_hessian`, k + 1 evaluations):
    theta = theta0 + s v_t,   beta = beta0 + K s v_t + T v_b,
K = -Hbb^-1 Hbt (beta's shift with theta), T T' = 2 Hbb^-1 and s the SDs of theta given
beta (s_t = (S_tt / 2)^-1/2, S = Htt - Htb Hbb^-1 Hbt).  theta stays a scaled copy of v_t, so
its bounds remain bounds on v; |grad_v| < 1e-4 leaves every parameter within about 1e-4 of
its SE from the optimum.

The Hessian for the standard errors is the forward difference of the exact gradient with the
step h = 1e-6: n + 1 evaluations (lme4's deriv12 on f takes n^2 + n + 1), error O(h) from the
third derivatives (about 1e-6 relative) plus round-off of order 1e-16 N / h; deriv12's second
differences of f at its step 1e-4 are noisier (seed model, 80,000 rows: its SEs move by 3e-5
relative between steps 1e-3 and 1e-4, these by under 1e-7 between 1e-3 and 3e-5, central or forward).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.linalg as sla
from scipy.optimize import minimize

if TYPE_CHECKING:
    from hlm.glmm.optimize import Objective

START_STEP = 1e-4  # forward-difference step of H0 (only shapes the coordinates)
HESSIAN_STEP = 1e-6  # forward-difference step of the Hessian for the SEs


def _start_hessian(obj: Objective, x0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The gradient at x0 and H0: its theta columns by forward differences of the gradient (k + 1
    evaluations), its beta block 2 RX'RX from the fast stage's joint system at x0 (the Hessian
    of D in beta with u profiled; the log-determinant adds little to it)."""
    k = obj.ntheta
    rx = obj.fast_modes(x0[:k]).rx  # x0 is the fast stage's point: these are its joint modes
    assert rx is not None
    _, g0 = obj.value_and_gradient(x0)
    H = np.empty((len(x0), len(x0)))
    for t in range(k):
        e = np.zeros(len(x0))
        e[t] = START_STEP
        H[:, t] = (obj.value_and_gradient(x0 + e)[1] - g0) / START_STEP
    H[:k, k:] = H[k:, :k].T
    H[k:, k:] = 2.0 * (rx @ rx.T)
    H[:k, :k] = (H[:k, :k] + H[:k, :k].T) / 2.0
    return g0, H


def _coordinates(H: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(s, K, T) of the module docstring, or None where H0's beta block is not positive definite."""
    Htt, Htb, Hbb = H[:k, :k], H[:k, k:], H[k:, k:]
    if not np.all(np.isfinite(H)):
        return None
    try:
        R = sla.cholesky(Hbb / 2.0)  # Hbb / 2 = R'R
    except np.linalg.LinAlgError:
        return None
    K = -sla.cho_solve((R, False), Htb.T / 2.0)
    S = np.diag(Htt + Htb @ K)
    s = np.where(S > 0, 1.0 / np.sqrt(np.maximum(S, 1e-300) / 2.0), 1.0)
    return np.clip(s, 1e-3, 1.0), K, sla.solve_triangular(R, np.eye(len(Hbb)))


def gradient_stage(obj: Objective, x0: np.ndarray, lower: np.ndarray) -> tuple[np.ndarray, int, str]:
    """(theta, beta) at the Laplace optimum, evaluations, return code (module docstring)."""
    k = obj.ntheta
    g0, H0 = _start_hessian(obj, x0)
    shape = _coordinates(H0, k)
    s, K, T = shape if shape is not None else (np.ones(k), np.zeros((len(x0) - k, k)), np.eye(len(x0) - k))
    # L-BFGS-B's first step has unit length: stretch v so that it is the Newton step -grad_v / 2
    c = float(np.clip(np.linalg.norm(np.concatenate([s * (g0[:k] + K.T @ g0[k:]), T.T @ g0[k:]])) / 2.0, 1e-3, 1e3))
    s, T = s * c, T * c

    def to_x(v: np.ndarray) -> np.ndarray:
        return np.concatenate([x0[:k] + s * v[:k], x0[k:] + K @ (s * v[:k]) + T @ v[k:]])

    v_lower = np.concatenate([(lower[:k] - x0[:k]) / s, np.full(len(x0) - k, -np.inf)])
    gtol = 1e-4 * c
    count = [0]

    def fun(v: np.ndarray) -> tuple[float, np.ndarray]:
        count[0] += 1
        f, g = obj.value_and_gradient(to_x(v))
        if not np.isfinite(f):
            return 1e300, np.zeros(len(v))
        gv = np.concatenate([s * (g[:k] + K.T @ g[k:]), T.T @ g[k:]])
        if np.max(np.abs(np.where((v <= v_lower) & (gv > 0), 0.0, gv))) < gtol:
            raise _Converged(v)  # any evaluated point will do: near the optimum f's round-off misleads the line search
        return f, gv

    bounds = [(lo, None) if np.isfinite(lo) else (None, None) for lo in v_lower]
    try:
        run = minimize(fun, np.zeros(len(x0)), jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"ftol": 1e-15, "gtol": gtol, "maxiter": 1000, "maxls": 40})  # fmt: skip
        v, code = np.asarray(run.x, dtype=float), "success" if run.success else f"failure: {run.message}"
    except _Converged as done:
        v, code = done.v, "success"
    return to_x(v), count[0] + k + 2, code


class _Converged(Exception):  # noqa: N818 - a signal, not an error
    """The projected gradient at ``v`` is below the tolerance: stop L-BFGS-B there."""

    def __init__(self, v: np.ndarray) -> None:
        super().__init__()
        self.v = np.array(v, dtype=float)


def gradient_hessian(obj: Objective, x: np.ndarray, h: float = HESSIAN_STEP) -> tuple[float, np.ndarray, np.ndarray]:
    """-2 logLik, its gradient and Hessian at x by forward differences of the exact gradient."""
    f0, g0 = obj.value_and_gradient(x)
    n = len(x)
    H = np.empty((n, n))
    for j in range(n):
        e = np.zeros(n)
        e[j] = h
        H[:, j] = (obj.value_and_gradient(x + e)[1] - g0) / h
    return f0, g0, (H + H.T) / 2.0
