"""Minimise the profiled deviance over theta and record how it went.

BOBYQA (:mod:`hlm.numerics.bobyqa`) with bounds: diagonal elements of Lambda >= 0.
Convergence is data: the :class:`~hlm.numerics.bobyqa.OptSummary` keeps the starting and
final theta, the number of evaluations, the seconds, nlopt's return code, and lme4's post-fit
checks: the finite-difference gradient and Hessian at the optimum, the scaled gradient
``max |H^{-1} g|`` (lme4's ``check.conv.grad``, tolerance 2e-3) and whether the Hessian is
positive definite.  Parameters on the boundary are excluded from those checks.
With more than ``HESSIAN_MAX`` free parameters the n^2 + n evaluations of the Hessian are not
spent: the check is the gradient itself, max |g| over the free parameters, and the forward
slope of every parameter on its bound (a bound parameter whose increase lowers the
criterion is not at an optimum); a failed check restarts BOBYQA from where it stopped.
Where the criterion has an analytic gradient (``gradient``), the checks use it: g itself,
and the Hessian from central differences of g (2n gradients instead of n^2 + n criteria).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import numpy as np

from hlm.numerics.bobyqa import GRAD_TOL, SINGULAR_TOL, OptSummary, bobyqa
from hlm.numerics.derivatives import fd_derivatives, gradient_hessian

Gradient = Callable[[np.ndarray], np.ndarray]
Rerun = Callable[[np.ndarray], tuple[np.ndarray, str, int]]  # theta -> (theta, return code, evaluations)

__all__ = [
    "HESSIAN_MAX",
    "SINGULAR_TOL",
    "OptSummary",
    "fd_derivatives",
    "gradient_verdict",
    "minimize",
    "snap_to_bounds",
    "verify",
]

HESSIAN_MAX = 24
RESTARTS = 2


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


def _bobyqa(
    fun: Callable[[np.ndarray], float], theta0: np.ndarray, lower: np.ndarray, maxeval: int, step: float = 0.25
) -> tuple[np.ndarray, str, int]:
    """One BOBYQA run from theta0 (on round-off or failure the best point seen), put inside
    the bounds; with its return code and number of evaluations."""
    run = bobyqa(
        fun,
        theta0,
        lower,
        step=step,
        ftol_abs=1e-12,
        ftol_rel=1e-14,
        xtol_abs=1e-10,
        maxeval=maxeval,
        catch_failures=True,
    )
    return np.where(np.isfinite(lower), np.maximum(run.x, lower), run.x), run.code, run.feval


def snap_to_bounds(
    fun: Callable[[np.ndarray], float], theta: np.ndarray, fmin: float, lower: np.ndarray
) -> tuple[np.ndarray, float]:
    """Put each parameter within SINGULAR_TOL of its bound on the bound where the criterion
    does not rise beyond round-off: near a zero variance it is flat to round-off, and where BOBYQA
    stops there (2.5e-8 or 0) is chance; the bound is the answer lme4 reports when it gets there."""
    for i in np.flatnonzero(np.isfinite(lower) & (theta > lower) & (theta < lower + SINGULAR_TOL)):
        trial = theta.copy()
        trial[i] = lower[i]
        f = float(fun(trial))
        if f <= fmin + 64 * np.finfo(float).eps * abs(fmin):  # not higher beyond round-off
            theta, fmin = trial, f
    return theta, fmin


def gradient_verdict(
    fun: Callable[[np.ndarray], float],
    theta: np.ndarray,
    fmin: float,
    lower: np.ndarray,
    gradient: Gradient | None = None,
) -> tuple[np.ndarray, float]:
    """Central-difference gradient over the free parameters and, for a parameter on its bound,
    the forward slope (f(theta + h e_i) - f(theta)) / h; the verdict is the larger of max |g|
    (free) and max(-slope, 0) (bound): below GRAD_TOL no feasible direction descends.
    With an analytic ``gradient`` its components are the slopes."""
    free = ~(np.isfinite(lower) & (theta < SINGULAR_TOL))
    if gradient is not None:
        g = gradient(theta)
        worst = float(np.max(np.abs(g[free]), initial=0.0))
        return g, max(worst, float(np.max(-g[~free], initial=0.0)))
    g, _ = fd_derivatives(fun, theta, free, hessian=False)
    worst = float(np.max(np.abs(g[free]))) if free.any() else 0.0
    h = 1e-4
    for i in np.flatnonzero(~free):
        e = np.zeros(len(theta))
        e[i] = h
        g[i] = (float(fun(theta + e)) - fmin) / h
        worst = max(worst, -g[i])
    return g, worst


def _gradient_check(
    fun: Callable[[np.ndarray], float],
    theta: np.ndarray,
    fmin: float,
    code: str,
    lower: np.ndarray,
    rerun: Rerun,
    gradient: Gradient | None,
) -> tuple[np.ndarray, float, str, np.ndarray, float, int]:
    """The many-parameter check (module docstring), with up to RESTARTS reruns of the
    optimizer from a point that fails it; the lowest point is kept, with the reruns' evaluations."""
    g, worst = gradient_verdict(fun, theta, fmin, lower, gradient)
    feval = 0
    for _ in range(RESTARTS):
        if worst < GRAD_TOL:
            break
        again, code_again, n_again = rerun(theta)
        feval += n_again
        f_again = float(fun(again))
        if not f_again < fmin:
            break
        theta, fmin, code = again, f_again, code_again
        g, worst = gradient_verdict(fun, theta, fmin, lower, gradient)
    return theta, fmin, code, g, worst, feval


def _summary(
    theta0: np.ndarray,
    theta: np.ndarray,
    lower: np.ndarray,
    fmin: float,
    feval: int,
    start: float,
    code: str,
    g: np.ndarray,
    scaled: float,
    pd_ok: bool | None,
    optimizer: str = "nlopt BOBYQA",
) -> OptSummary:
    return OptSummary(
        optimizer,
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


def _derivatives(
    fun: Callable[[np.ndarray], float], gradient: Gradient | None, theta: np.ndarray, free: np.ndarray, hessian: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and (with ``hessian``) Hessian at theta: analytic g where given, else central differences."""
    if gradient is None:
        return fd_derivatives(fun, theta, free, hessian=hessian)
    g = gradient(theta)
    g[~free] = 0.0  # as the finite differences: the checks are over the free parameters
    return g, gradient_hessian(gradient, theta, free) if hessian else np.eye(len(theta))


def _remembered(fun: Callable[[np.ndarray], float]) -> Callable[[np.ndarray], float]:
    """``fun`` with its values kept by point, so a point seen before is not evaluated again."""
    seen: dict[bytes, float] = {}

    def remembered(theta: np.ndarray) -> float:
        key = np.asarray(theta, dtype=float).tobytes()
        if key not in seen:
            seen[key] = float(fun(theta))
        return seen[key]

    return remembered


def minimize(
    fun: Callable[[np.ndarray], float],
    theta0: np.ndarray,
    lower: np.ndarray,
    *,
    maxeval: int = 100_000,
    gradient: Gradient | None = None,
    worse_than: float = np.inf,
    radius: float = 0.25,
) -> OptSummary:
    """BOBYQA from theta0 within the bounds (initial trust radius ``radius``), then lme4's
    convergence checks (the gradient check alone above HESSIAN_MAX free parameters), on
    ``gradient`` where it is given; a point is evaluated once (the checks revisit BOBYQA's).
    A run that ends at or above ``worse_than`` (a restart that found nothing lower than the
    caller's optimum) is returned unchecked, not converged (scaled gradient inf)."""
    start = time.perf_counter()
    n = len(theta0)
    if n == 0:
        f = fun(theta0)
        return OptSummary("none", (), (), (), float(f), 1, time.perf_counter() - start, "success", (), 0.0, True)
    fun = _remembered(fun)
    theta, code, feval = _bobyqa(fun, np.asarray(theta0, dtype=float), lower, maxeval, radius)
    theta, fmin = snap_to_bounds(fun, theta, float(fun(theta)), lower)
    if not fmin < worse_than:
        return _summary(theta0, theta, lower, fmin, feval, start, code, np.zeros(n), np.inf, None)
    rerun = partial(_bobyqa, fun, lower=lower, maxeval=maxeval, step=0.05)
    return verify(fun, theta0, theta, fmin, code, feval, lower, gradient, rerun, start=start)


def verify(
    fun: Callable[[np.ndarray], float],
    theta0: np.ndarray,
    theta: np.ndarray,
    fmin: float,
    code: str,
    feval: int,
    lower: np.ndarray,
    gradient: Gradient | None,
    rerun: Rerun,
    optimizer: str = "nlopt BOBYQA",
    start: float | None = None,
) -> OptSummary:
    """lme4's convergence checks at the optimizer's point theta (criterion fmin), on ``gradient``
    where it is given: the gradient check alone above HESSIAN_MAX free parameters (``rerun``
    restarts the optimizer from a point that fails it), else the Hessian, the scaled gradient
    and one Newton polish.  The summary counts ``feval`` and the time since ``start``."""
    start = time.perf_counter() if start is None else start
    free = ~(np.isfinite(lower) & (theta < SINGULAR_TOL))
    if free.sum() > HESSIAN_MAX:
        theta, fmin, code, g, scaled, more = _gradient_check(fun, theta, fmin, code, lower, rerun, gradient)
        return _summary(theta0, theta, lower, fmin, feval + more, start, code, g, scaled, None, optimizer)
    g, H = _derivatives(fun, gradient, theta, free, True)
    pd_ok, scaled, step = _newton(g, H, free)
    if pd_ok and step is not None:  # one Newton polish on the free coordinates
        trial = np.where(np.isfinite(lower), np.maximum(theta + step, lower), theta + step)
        f_trial = float(fun(trial))
        if f_trial < fmin:  # the Hessian barely moves over a Newton step: refresh g only
            theta, fmin = trial, f_trial
            g, _ = _derivatives(fun, gradient, theta, free, False)
            pd_ok, scaled, _ = _newton(g, H, free)
    return _summary(theta0, theta, lower, fmin, feval, start, code, g, scaled, pd_ok, optimizer)
