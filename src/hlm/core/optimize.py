"""Minimise the profiled deviance over theta and record how it went.

BOBYQA (nlopt's, as lme4 uses by default) with bounds: diagonal elements of Lambda >= 0.
Convergence is data: the :class:`OptSummary` keeps the starting and final theta, the
number of evaluations, the seconds, nlopt's return code, and lme4's post-fit checks: the
finite-difference gradient and Hessian at the optimum, the scaled gradient
``max |H^{-1} g|`` (lme4's ``check.conv.grad``, tolerance 2e-3) and whether the Hessian is
positive definite.  Parameters on the boundary are excluded from those checks.
With more than ``HESSIAN_MAX`` free parameters the 2n^2 evaluations of the Hessian are not
spent: the check is the gradient itself, max |g| over the free parameters, and the forward
slope of every parameter on its bound (a bound parameter whose increase lowers the
criterion is not at an optimum); a failed check restarts BOBYQA from where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import nlopt
import numpy as np

GRAD_TOL = 2e-3
SINGULAR_TOL = 1e-4
HESSIAN_MAX = 24
RESTARTS = 2

_CODES = {1: "success", 2: "stopval reached", 3: "ftol reached", 4: "xtol reached",
          5: "maxeval reached", 6: "maxtime reached", -1: "failure", -2: "invalid args",
          -3: "out of memory", -4: "roundoff limited", -5: "forced stop"}


@dataclass(frozen=True)
class OptSummary:
    """What the optimizer did (MixedModels.jl's OptSummary)."""

    optimizer: str
    theta0: tuple[float, ...]
    theta: tuple[float, ...]
    lower: tuple[float, ...]
    fmin: float
    feval: int
    seconds: float
    return_code: str
    gradient: tuple[float, ...]
    scaled_gradient: float
    hessian_pd: bool | None  # None: not computed (more than HESSIAN_MAX free parameters)

    @property
    def converged(self) -> bool:
        ok = self.return_code in ("success", "ftol reached", "xtol reached", "stopval reached", "roundoff limited")
        return ok and self.scaled_gradient < GRAD_TOL

    def to_dict(self) -> dict:
        return {"optimizer": self.optimizer, "theta0": list(self.theta0), "theta": list(self.theta),
                "fmin": self.fmin, "feval": self.feval, "seconds": self.seconds,
                "return_code": self.return_code, "gradient": list(self.gradient),
                "scaled_gradient": self.scaled_gradient, "hessian_pd": self.hessian_pd,
                "converged": self.converged}


def fd_derivatives(fun: Callable[[np.ndarray], float], x: np.ndarray, free: np.ndarray, *,
                   hessian: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Central-difference gradient and (unless ``hessian=False``) Hessian over the free
    coordinates; without the Hessian the identity is returned in its place."""
    n = len(x)
    h = 1e-4 * np.maximum(np.abs(x), 1e-2)
    g = np.zeros(n)
    H = np.eye(n)
    idx = np.flatnonzero(free)
    f0 = fun(x) if len(idx) else 0.0
    for i in idx:
        e = np.zeros(n)
        e[i] = h[i]
        fp, fm = fun(x + e), fun(x - e)
        g[i] = (fp - fm) / (2 * h[i])
        H[i, i] = (fp - 2 * f0 + fm) / h[i] ** 2
    if not hessian:
        return g, np.eye(n)
    for a, i in enumerate(idx):
        for j in idx[a + 1:]:
            ei, ej = np.zeros(n), np.zeros(n)
            ei[i], ej[j] = h[i], h[j]
            H[i, j] = H[j, i] = (fun(x + ei + ej) - fun(x + ei - ej) - fun(x - ei + ej) + fun(x - ei - ej)) / (4 * h[i] * h[j])
    return g, H


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


def _bobyqa(objective: Callable, theta0: np.ndarray, lower: np.ndarray, maxeval: int, best: list,
            step: float = 0.25) -> tuple[np.ndarray, str]:
    """One BOBYQA run (nlopt) from theta0; on round-off or failure the best point seen."""
    n = len(theta0)
    opt = nlopt.opt(nlopt.LN_BOBYQA, n)
    opt.set_min_objective(objective)
    opt.set_lower_bounds(np.where(np.isfinite(lower), lower, -np.inf))
    opt.set_ftol_rel(1e-14)
    opt.set_ftol_abs(1e-12)
    opt.set_xtol_abs(1e-10)
    opt.set_maxeval(maxeval)
    opt.set_initial_step(np.full(n, step))
    try:
        theta = opt.optimize(theta0)
        code = _CODES.get(opt.last_optimize_result(), str(opt.last_optimize_result()))
    except nlopt.RoundoffLimited:
        theta, code = best[1], "roundoff limited"
    except (RuntimeError, ValueError) as exc:
        theta, code = best[1], f"failure: {exc}"
    return np.where(np.isfinite(lower), np.maximum(theta, lower), theta), code


def snap_to_bounds(fun: Callable[[np.ndarray], float], theta: np.ndarray, fmin: float, lower: np.ndarray
                   ) -> tuple[np.ndarray, float]:
    """Put each parameter within SINGULAR_TOL of its bound on the bound where the criterion
    does not rise beyond round-off: near a zero variance it is flat to round-off, and where BOBYQA stops
    there (2.5e-8 or 0) is chance; the bound is the answer lme4 reports when it gets there."""
    for i in np.flatnonzero(np.isfinite(lower) & (theta > lower) & (theta < lower + SINGULAR_TOL)):
        trial = theta.copy()
        trial[i] = lower[i]
        f = float(fun(trial))
        if f <= fmin + 64 * np.finfo(float).eps * abs(fmin):  # not higher beyond round-off
            theta, fmin = trial, f
    return theta, fmin


def gradient_verdict(fun: Callable[[np.ndarray], float], theta: np.ndarray, fmin: float, lower: np.ndarray
                     ) -> tuple[np.ndarray, float]:
    """Central-difference gradient over the free parameters and, for a parameter on its bound,
    the forward slope (f(theta + h e_i) - f(theta)) / h; the verdict is the larger of max |g|
    (free) and max(-slope, 0) (bound): below GRAD_TOL no feasible direction descends."""
    free = ~(np.isfinite(lower) & (theta < SINGULAR_TOL))
    g, _ = fd_derivatives(fun, theta, free, hessian=False)
    worst = float(np.max(np.abs(g[free]))) if free.any() else 0.0
    h = 1e-4
    for i in np.flatnonzero(~free):
        e = np.zeros(len(theta))
        e[i] = h
        g[i] = (float(fun(theta + e)) - fmin) / h
        worst = max(worst, -g[i])
    return g, worst


def _gradient_check(fun: Callable, objective: Callable, theta: np.ndarray, fmin: float, code: str,
                    lower: np.ndarray, maxeval: int, best: list) -> tuple[np.ndarray, float, str, np.ndarray, float]:
    """The many-parameter check (module docstring), with up to RESTARTS restarts of BOBYQA
    from a point that fails it; the lowest point is kept."""
    g, worst = gradient_verdict(fun, theta, fmin, lower)
    for _ in range(RESTARTS):
        if worst < GRAD_TOL:
            break
        again, code_again = _bobyqa(objective, theta, lower, maxeval, best, step=0.05)
        f_again = float(fun(again))
        if not f_again < fmin:
            break
        theta, fmin, code = again, f_again, code_again
        g, worst = gradient_verdict(fun, theta, fmin, lower)
    return theta, fmin, code, g, worst


def minimize(fun: Callable[[np.ndarray], float], theta0: np.ndarray, lower: np.ndarray, *,
             maxeval: int = 100_000) -> OptSummary:
    """BOBYQA from theta0 within the bounds, then lme4's convergence checks."""
    start = time.perf_counter()
    count = [0]
    best: list = [np.inf, np.asarray(theta0, dtype=float)]  # kept if nlopt stops on round-off

    def objective(x: np.ndarray, grad: np.ndarray) -> float:
        count[0] += 1
        f = float(fun(x))
        if f < best[0]:
            best[0], best[1] = f, np.array(x, dtype=float)
        return f

    n = len(theta0)
    if n == 0:
        f = fun(theta0)
        return OptSummary("none", (), (), (), float(f), 1, time.perf_counter() - start, "success", (), 0.0, True)
    theta, code = _bobyqa(objective, np.asarray(theta0, dtype=float), lower, maxeval, best)
    theta, fmin = snap_to_bounds(fun, theta, float(fun(theta)), lower)
    free = ~(np.isfinite(lower) & (theta < SINGULAR_TOL))
    if free.sum() > HESSIAN_MAX:
        theta, fmin, code, g, scaled = _gradient_check(fun, objective, theta, fmin, code, lower, maxeval, best)
        return OptSummary("nlopt BOBYQA", tuple(map(float, theta0)), tuple(map(float, theta)),
                          tuple(map(float, lower)), fmin, count[0], time.perf_counter() - start, code,
                          tuple(map(float, g)), scaled, None)
    g, H = fd_derivatives(fun, theta, free)
    pd_ok, scaled, step = _newton(g, H, free)
    if pd_ok and step is not None:  # one Newton polish on the free coordinates
        trial = np.where(np.isfinite(lower), np.maximum(theta + step, lower), theta + step)
        f_trial = float(fun(trial))
        if f_trial < fmin:  # the Hessian barely moves over a Newton step: refresh g only
            theta, fmin = trial, f_trial
            g, _ = fd_derivatives(fun, theta, free, hessian=False)
            pd_ok, scaled, _ = _newton(g, H, free)
    feval = count[0]
    return OptSummary("nlopt BOBYQA", tuple(map(float, theta0)), tuple(map(float, theta)), tuple(map(float, lower)),
                      fmin, feval, time.perf_counter() - start, code, tuple(map(float, g)), scaled, pd_ok)
