"""Confidence intervals of a GLMM: Wald for the fixed effects, and the likelihood profile (lme4's
``confint(fit, method="profile")``) for the fixed effects and the SDs of scalar random terms.

Wald: b +- z se(b), se from 2 H^-1 (as ``tidy()``).

Profile: for a parameter p with estimate p_hat, D(v) is -2 logLik maximised over every other
parameter with p = v (a BOBYQA refit warm-started at the estimates), and
zeta(v) = sign(v - p_hat) sqrt(D(v) - D(p_hat)); the limits solve zeta = -+z_{(1+level)/2}.
The roots are found by secant steps from p_hat -+ z se, then bisection inside the bracket, to
|zeta - target| < 1e-4.  An SD whose profile stays above -z down to 0 gets the lower limit 0.
The SD of a scalar term (1 | g) is its theta; random slopes' SDs are not profiled here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from scipy import stats

from hlm.errors import OptionError
from hlm.glmm.theta import start_and_lower
from hlm.numerics.bobyqa import bobyqa

if TYPE_CHECKING:
    from collections.abc import Callable

    from hlm.glmm.optimize import Objective
    from hlm.glmm.result import GlmmResult

CONFINT_COLUMNS = ["term", "estimate", "conf_low", "conf_high"]
ZETA_TOL = 1e-4


def wald(fit: GlmmResult, level: float) -> pd.DataFrame:
    tidy = fit.tidy(level=level)
    return pd.DataFrame(
        {
            "term": tidy["term"],
            "estimate": tidy["estimate"],
            "conf_low": tidy["conf_low"],
            "conf_high": tidy["conf_high"],
        }
    )


def _profile_deviance(obj: Objective, x_hat: np.ndarray, lower: np.ndarray, j: int) -> Callable[[float], float]:
    """v -> min -2 logLik with parameter j fixed at v, warm-started at the last solution."""
    others = np.array([i for i in range(len(x_hat)) if i != j])
    last = [x_hat[others].copy()]

    def full(rest: np.ndarray, v: float) -> np.ndarray:
        x = x_hat.copy()
        x[others], x[j] = rest, v
        return x

    def deviance(v: float) -> float:
        if len(others) == 0:
            return float(obj(full(last[0], v)))
        run = bobyqa(
            lambda r: obj(full(r, v)),
            last[0],
            lower[others],
            step=0.05,
            ftol_abs=1e-9,
            ftol_rel=1e-14,
            xtol_abs=1e-8,
            maxeval=20_000,
            catch_failures=True,
        )
        last[0] = np.maximum(run.x, lower[others])
        return float(obj(full(last[0], v)))

    return deviance


def _limit(zeta: Callable[[float], float], p_hat: float, step: float, target: float, floor: float) -> float:
    """The root of zeta(v) = target on one side of p_hat (see the module docstring)."""
    a, za = p_hat, 0.0
    b = max(p_hat + target * step, floor) if target < 0 else p_hat + target * step
    zb = zeta(b)
    for _ in range(30):  # secant steps until bracketed
        if (zb - target) * (za - target) <= 0:
            break
        if b == floor and zb > target:  # an SD whose profile never reaches -z above 0
            return floor
        slope = (zb - za) / (b - a) if b != a else 1.0 / step
        nxt = b + (target - zb) / slope if slope > 0 else b + target * step  # zeta increases in v
        a, za = b, zb
        b = max(nxt, floor) if target < 0 else nxt
        zb = zeta(b)
    else:
        return math.nan
    for _ in range(60):  # regula falsi with bisection safeguard inside [a, b]
        if abs(zb - target) < ZETA_TOL:
            return b
        m = a + (target - za) * (b - a) / (zb - za) if zb != za else 0.5 * (a + b)
        if not min(a, b) < m < max(a, b):
            m = 0.5 * (a + b)
        zm = zeta(m)
        if (zm - target) * (za - target) <= 0:
            b, zb = m, zm
        else:
            a, za = m, zm
            if abs(zm - target) < ZETA_TOL:
                return m
    return b


def profile(fit: GlmmResult, level: float) -> pd.DataFrame:
    """Profile limits for scalar terms' SDs (``sd_(Intercept)|g``) then the fixed effects."""
    from hlm.glmm.optimize import Objective

    obj = Objective(fit.family_info, fit.frame, fit.nagq)
    x_hat = np.asarray(fit.estimates, dtype=float)
    dev_hat = float(obj(x_hat))
    k = fit.ntheta
    lower = np.concatenate([start_and_lower(fit.frame.dims)[1], np.full(len(x_hat) - k, -np.inf)])
    diag, at = [], 0
    for (group, names), dim in zip(fit.frame.term_labels, fit.frame.dims):
        if dim == 1:  # a scalar term's theta is its SD
            diag.append((at, f"sd_{names[0]}|{group}"))
        at += dim * (dim + 1) // 2
    params = diag + [(k + i, name) for i, name in enumerate(fit.frame.xnames)]
    se_all = np.sqrt(np.abs(np.diag(fit.vcov_all)))
    z = float(stats.norm.ppf(0.5 + level / 2))
    rows = []
    for j, name in params:
        deviance = _profile_deviance(obj, x_hat, lower, j)

        def zeta(v: float, j: int = j, deviance: Callable[[float], float] = deviance) -> float:
            return math.copysign(math.sqrt(max(deviance(v) - dev_hat, 0.0)), v - x_hat[j])

        step = se_all[j] if np.isfinite(se_all[j]) and se_all[j] > 0 else max(abs(x_hat[j]), 1.0) * 0.1
        floor = 0.0 if np.isfinite(lower[j]) else -np.inf
        lo = _limit(zeta, float(x_hat[j]), float(step), -z, floor)
        hi = _limit(zeta, float(x_hat[j]), float(step), z, -np.inf)
        rows.append((name, float(x_hat[j]), lo, hi))
    obj(x_hat)
    return pd.DataFrame(rows, columns=CONFINT_COLUMNS)


def confint(fit: GlmmResult, method: Literal["wald", "profile"], level: float) -> pd.DataFrame:
    if not 0 < level < 1:
        raise OptionError(f"level must be between 0 and 1, not {level!r}")
    if method == "wald":
        return wald(fit, level)
    if method == "profile":
        return profile(fit, level)
    raise OptionError(f"method must be 'wald' or 'profile' for GLMMs, not {method!r}")
