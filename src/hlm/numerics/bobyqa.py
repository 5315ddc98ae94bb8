"""BOBYQA (nlopt's, as lme4 uses by default): the one wrapper every optimisation in hlm runs
through, and :class:`OptSummary`, the record of how a fit's optimisation went.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nlopt
import numpy as np

GRAD_TOL = 2e-3
SINGULAR_TOL = 1e-4

_CODES = {
    1: "success",
    2: "stopval reached",
    3: "ftol reached",
    4: "xtol reached",
    5: "maxeval reached",
    6: "maxtime reached",
    -1: "failure",
    -2: "invalid args",
    -3: "out of memory",
    -4: "roundoff limited",
    -5: "forced stop",
}


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
    hessian_pd: bool | None  # None: not computed (more than lmm.optimize.HESSIAN_MAX free parameters)

    @property
    def converged(self) -> bool:
        ok = self.return_code in ("success", "ftol reached", "xtol reached", "stopval reached", "roundoff limited")
        return ok and self.scaled_gradient < GRAD_TOL

    def to_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer,
            "theta0": list(self.theta0),
            "theta": list(self.theta),
            "fmin": self.fmin,
            "feval": self.feval,
            "seconds": self.seconds,
            "return_code": self.return_code,
            "gradient": list(self.gradient),
            "scaled_gradient": self.scaled_gradient,
            "hessian_pd": self.hessian_pd,
            "converged": self.converged,
        }


@dataclass(frozen=True)
class BobyqaRun:
    """Where BOBYQA stopped (the best point seen when nlopt gave up), why, and how many
    evaluations it took."""

    x: np.ndarray
    code: str
    feval: int


def bobyqa(
    fun: Callable[[np.ndarray], float],
    x0: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray | None = None,
    *,
    step: float,
    ftol_abs: float,
    ftol_rel: float,
    xtol_abs: float,
    maxeval: int,
    catch_failures: bool = False,
) -> BobyqaRun:
    """Minimise ``fun`` from x0 within [lower, upper] (infinite bounds are no bound).  nlopt's
    round-off stop returns the best point seen; other failures do the same with
    ``catch_failures=True`` (code ``"failure: ..."``) and raise otherwise."""
    n = len(x0)
    count = [0]
    best: list[Any] = [np.inf, np.asarray(x0, dtype=float)]

    def objective(x: np.ndarray, grad: np.ndarray) -> float:
        count[0] += 1
        f = float(fun(x))
        if f < best[0]:
            best[0], best[1] = f, np.array(x, dtype=float)
        return f

    opt = nlopt.opt(nlopt.LN_BOBYQA, n)
    opt.set_min_objective(objective)
    opt.set_lower_bounds(np.where(np.isfinite(lower), lower, -np.inf))
    if upper is not None:
        opt.set_upper_bounds(upper)
    opt.set_ftol_abs(ftol_abs)
    opt.set_ftol_rel(ftol_rel)
    opt.set_xtol_abs(xtol_abs)
    opt.set_maxeval(maxeval)
    opt.set_initial_step(np.full(n, step))
    try:
        x = opt.optimize(np.asarray(x0, dtype=float))
        code = _CODES.get(opt.last_optimize_result(), str(opt.last_optimize_result()))
    except nlopt.RoundoffLimited:
        x, code = best[1], "roundoff limited"
    except (RuntimeError, ValueError) as exc:
        if not catch_failures:
            raise
        x, code = best[1], f"failure: {exc}"
    return BobyqaRun(np.asarray(x, dtype=float), code, count[0])


def minimize_bounded(
    fun: Callable[[np.ndarray], float],
    x0: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    step: float = 0.1,
    *,
    ftol: float = 1e-10,
    xtol: float = 1e-9,
) -> tuple[np.ndarray, float]:
    """The minimum of ``fun`` in the box and its value, from x0 moved just inside the box (the
    profiles' and the bootstrap's refits); a round-off stop keeps that start."""
    n = len(x0)
    if n == 0:
        return x0, float(fun(x0))
    x0 = np.clip(x0, lower + 1e-12, upper - 1e-12)
    run = bobyqa(fun, x0, lower, upper, step=step, ftol_abs=ftol, ftol_rel=1e-15, xtol_abs=xtol, maxeval=20_000)
    x = x0 if run.code == "roundoff limited" else run.x
    return x, float(fun(x))
