"""Minimise the profiled deviance over theta and record how it went.

BOBYQA (:mod:`hlm.numerics.bobyqa`) with bounds: diagonal elements of Lambda >= 0.
Convergence is data: the :class:`~hlm.numerics.bobyqa.OptSummary` keeps the starting and
final theta, the number of evaluations, the seconds, nlopt's return code, and lme4's post-fit
checks: the finite-difference gradient and Hessian at the optimum, the scaled gradient
``max |H^{-1} g|`` (lme4's ``check.conv.grad``, tolerance 2e-3) and whether the Hessian is
positive definite.  Parameters on the boundary are excluded from those checks.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from hlm.numerics.bobyqa import SINGULAR_TOL, OptSummary, bobyqa
from hlm.numerics.derivatives import fd_derivatives

__all__ = ["SINGULAR_TOL", "OptSummary", "fd_derivatives", "minimize"]


def _newton(g: np.ndarray, H: np.ndarray, free: np.ndarray) -> tuple[bool, float, np.ndarray | None]:
    """Positive definiteness of H on the free coordinates, lme4's scaled gradient
    max|H^{-1} g|, and the Newton step -H^{-1} g."""
    if not free.any():
        return True, 0.0, None
    try:
        Hf = H[np.ix_(free, free)]
        np.linalg.cholesky(Hf)
    except np.linalg.LinAlgError:
        return False, float(np.max(np.abs(g[free]))), None
    delta = np.linalg.solve(Hf, g[free])
    step = np.zeros_like(g)
    step[free] = -delta
    return True, float(np.max(np.abs(delta))), step


def minimize(
    fun: Callable[[np.ndarray], float], theta0: np.ndarray, lower: np.ndarray, *, maxeval: int = 100_000
) -> OptSummary:
    """BOBYQA from theta0 within the bounds, then lme4's convergence checks."""
    start = time.perf_counter()
    n = len(theta0)
    if n == 0:
        f = fun(theta0)
        return OptSummary("none", (), (), (), float(f), 1, time.perf_counter() - start, "success", (), 0.0, True)
    run = bobyqa(
        fun,
        theta0,
        lower,
        step=0.25,
        ftol_abs=1e-12,
        ftol_rel=1e-14,
        xtol_abs=1e-10,
        maxeval=maxeval,
        catch_failures=True,
    )
    theta, code = run.x, run.code
    theta = np.where(np.isfinite(lower), np.maximum(theta, lower), theta)
    fmin = float(fun(theta))
    free = ~(np.isfinite(lower) & (theta < SINGULAR_TOL))
    g, H = fd_derivatives(fun, theta, free)
    pd_ok, scaled, step = _newton(g, H, free)
    if pd_ok and step is not None:  # one Newton polish on the free coordinates
        trial = np.where(np.isfinite(lower), np.maximum(theta + step, lower), theta + step)
        f_trial = float(fun(trial))
        if f_trial < fmin:  # the Hessian barely moves over a Newton step: refresh g only
            theta, fmin = trial, f_trial
            g, _ = fd_derivatives(fun, theta, free, hessian=False)
            pd_ok, scaled, _ = _newton(g, H, free)
    feval = run.feval
    return OptSummary(
        "nlopt BOBYQA",
        tuple(map(float, theta0)),
        tuple(map(float, theta)),
        tuple(map(float, lower)),
        fmin,
        feval,
        time.perf_counter() - start,
        code,
        tuple(map(float, g)),
        scaled,
        pd_ok,
    )
