"""Profile-likelihood confidence intervals (lme4's ``confint(profile(fit))``).

For a parameter psi (an SD, a correlation, the residual SD or a fixed effect) the profile
criterion is D(psi) = min over all other parameters of the fit's criterion (ML deviance, or
the REML criterion for REML fits), and the signed root

    zeta(psi) = sign(psi - psi_hat) sqrt(D(psi) - D_hat)

is approximately standard normal; the interval is {psi : |zeta(psi)| <= z_{(1+level)/2}}.
lme4 tabulates zeta and interpolates splines; here the limits are found by root finding
(Brent) on zeta, each evaluation an inner optimisation (BOBYQA) warm-started from the last.

* Variance parameters: the criterion in the natural parameters eta = (log sd, atanh r,
  log sigma) (see :mod:`hlm.lmm.params`), with one coordinate held fixed.  If zeta stays
  inside the cutoff as an SD goes to 0 (a correlation to -+1), the limit is 0 (-+1), as lme4.
* Fixed effect j held at b: with K' = [X_{-j}, y - b x_j] = K T, K'H^{-1}K' = T'QT, so beta_{-j}
  and sigma are profiled analytically and only theta is optimised.  No rows are needed.
* REML fits are profiled on the ML deviance of their ML refit (from the aggregates), as lme4's
  ``profile`` does (``devfun2`` calls ``refitML``): holding x_j's coefficient fixed changes the
  REML criterion itself (one column fewer in X), so REML profiles of fixed effects are not
  continuous at the estimate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from hlm.lmm.deviance import LOG2PI
from hlm.lmm.deviance import profile as profiled_criterion
from hlm.lmm.params import Criterion, VarParams
from hlm.lmm.result import LmmResult
from hlm.numerics.bobyqa import minimize_bounded

CI_COLUMNS = ["parameter", "kind", "group", "var1", "var2", "estimate", "conf_low", "conf_high", "method"]
PROFILE_COLUMNS = ["parameter", "kind", "group", "var1", "var2", "estimate", "value", "zeta"]
REML_NOTE = (
    "REML fit: profiled on the ML deviance of its ML refit, as lme4's profile() does; the estimate column "
    "is the ML refit's"
)
LOG_SD_FLOOR = -30.0
ATANH_MAX = 10.0


def _atanh_floor(low: float) -> float:
    """Where the atanh scale of a correlation with lower limit ``low`` ends."""
    return -ATANH_MAX if low <= -1.0 else math.atanh(low)


class _VarianceProfiler:
    """D(eta) with beta profiled out, eta = (log sd | atanh r per theta position, log sigma)."""

    def __init__(self, fit: LmmResult) -> None:
        self.fit = fit
        self.vp = VarParams.of(fit.structure)
        self.crit = Criterion(fit.devfun)
        self.is_sd = np.append(self.vp.is_sd(), False)
        est = self.vp.estimates(np.asarray(fit.theta, dtype=float), fit.sigma)
        floor = math.log(max(fit.sigma, 1e-300)) - 7.0  # start zero SDs at sigma * 1e-3
        eta = np.empty(len(est))
        for k, (p, v) in enumerate(zip(self.vp.params, est)):
            if p.kind == "cor":
                eta[k] = math.atanh(max(min(v, 1 - 1e-9), -1 + 1e-9))
            else:
                eta[k] = math.log(v) if v > 0 else floor
        self.eta_hat = eta
        self.lower = np.array(
            [LOG_SD_FLOOR if sd else _atanh_floor(self.vp.cor_lower(k)) for k, sd in enumerate(self.is_sd[:-1])]
            + [LOG_SD_FLOOR]
        )
        self.upper = np.where(self.is_sd, np.inf, ATANH_MAX)
        self.lower[-1], self.upper[-1] = LOG_SD_FLOOR, np.inf
        self.d_hat = fit.profiled.objective

    def deviance(self, eta: np.ndarray) -> float:
        ls = eta[-1]
        u = eta[:-1].copy()
        sd = self.is_sd[:-1]
        u[sd] = u[sd] - ls
        rel = self.vp.from_unconstrained(u)
        rel[sd & (eta[:-1] <= LOG_SD_FLOOR)] = 0.0
        try:
            a, b, _ = self.crit.ab(self.vp.theta_from_relative(rel))
        except np.linalg.LinAlgError:
            return np.inf
        return self.crit.dof * (LOG2PI + 2.0 * ls) + a + b * math.exp(-2.0 * ls)

    def profile_at(self, k: int, value: float, start: np.ndarray) -> tuple[float, np.ndarray]:
        others = np.array([i for i in range(len(self.eta_hat)) if i != k])

        def fun(x: np.ndarray) -> float:
            eta = start.copy()
            eta[others] = x
            eta[k] = value
            return self.deviance(eta)

        x, d = minimize_bounded(fun, start[others], self.lower[others], self.upper[others])
        eta = start.copy()
        eta[others] = x
        eta[k] = value
        return d, eta


class _FixedProfiler:
    """D(b) for fixed effect j held at b: theta optimised, beta_{-j} and sigma profiled."""

    def __init__(self, fit: LmmResult, j: int) -> None:
        self.fit = fit
        k = fit.aggregates.ktk.shape[0]
        self.j = j
        self.keep = [c for c in range(k - 1) if c != j]
        self.lower = np.where(np.isfinite(fit.structure.lower), fit.structure.lower, -np.inf)
        self.seen = [(float(fit.fixef.iloc[j]), np.asarray(fit.theta, dtype=float).copy())]

    def deviance(self, theta: np.ndarray, b: float) -> float:
        devfun = self.fit.devfun
        try:
            logdet, Q = devfun.terms(theta)
        except np.linalg.LinAlgError:
            return np.inf
        k = Q.shape[0]
        T = np.zeros((k, len(self.keep) + 1))
        T[self.keep, np.arange(len(self.keep))] = 1.0
        T[k - 1, -1] = 1.0
        T[self.j, -1] = -b
        return profiled_criterion(logdet, T.T @ Q @ T, devfun.agg.nobs, devfun.reml).objective

    def profile_at(self, b: float) -> float:
        start = min(self.seen, key=lambda item: abs(item[0] - b))[1]  # warm start from the nearest point
        theta, d = minimize_bounded(lambda t: self.deviance(t, b), start, self.lower, np.full(len(start), np.inf))
        self.seen.append((b, theta))
        return d


def _illinois(zeta: Callable[[float], float], target: float, a: float, za: float, b: float, zb: float) -> float:
    """Root of zeta(x) = target in [a, b] by the Illinois (modified regula falsi) method, using
    the bracket's known values (inner optimisations are not re-run at the ends)."""
    fa, fb = za - target, zb - target
    side = 0
    for _ in range(100):
        x = b - fb * (b - a) / (fb - fa)
        if abs(b - a) < 1e-9 * (1.0 + abs(x)):
            return x
        fx = zeta(x) - target
        if abs(fx) < 1e-9:
            return x
        if (fx > 0) == (fb > 0):
            b, fb = x, fx
            if side == -1:
                fa /= 2.0
            side = -1
        else:
            a, fa = x, fx
            if side == 1:
                fb /= 2.0
            side = 1
    return x


def _limit(zeta: Callable[[float], float], x_hat: float, step: float, target: float, bound: float | None) -> float:
    """x beyond x_hat (in the direction of target's sign) with zeta(x) = target; ``bound`` is
    where the parameter space ends (returned when zeta never reaches the target), None if
    it does not end.  The first trial is the Wald guess x_hat + target * step."""
    sign = 1.0 if target > 0 else -1.0
    prev, z_prev = x_hat, 0.0
    dist = abs(target) * step
    for _ in range(60):
        x = x_hat + sign * dist
        if bound is not None and sign * (x - bound) >= 0:
            z_b = zeta(bound)
            if sign * (z_b - target) < 0:
                return bound
            x, z = bound, z_b
        else:
            z = zeta(x)
        if sign * (z - target) >= 0:
            return _illinois(zeta, target, prev, z_prev, x, z)
        # secant extrapolation of the nearly linear zeta, at least 1.2 and at most 4 times farther
        slope = (z - z_prev) / (x - prev) if x != prev else 0.0
        guess = x + (target - z) / slope if sign * slope > 0 else x_hat + sign * 4 * dist
        dist = min(max(abs(guess - x_hat) * 1.05, 1.2 * dist), 4.0 * dist)
        prev, z_prev = x, z
    return float("nan")


@dataclass
class _Curve:
    """One parameter's profile.  ``x`` is the scale of the search (log sd / log sigma, atanh r,
    or the fixed effect itself); every evaluation of zeta is kept in ``points``."""

    name: str
    kind: str
    group: str | None
    var1: str | None
    var2: str | None
    estimate: float
    x_hat: float
    step: float  # the Wald SE on the search scale: the first trial distance
    bounds: tuple[float | None, float | None]  # where the search scale ends (None: it does not)
    fn: Callable[[float], float]
    points: list[tuple[float, float]] = field(default_factory=list)

    def zeta(self, x: float) -> float:
        z = self.fn(x)
        self.points.append((x, z))
        return z

    def limits(self, cut: float) -> tuple[float, float]:
        """x with zeta(x) = -cut and +cut (or the end of the parameter space)."""
        lo = _limit(self.zeta, self.x_hat, self.step, -cut, self.bounds[0])
        hi = _limit(self.zeta, self.x_hat, self.step, cut, self.bounds[1])
        return lo, hi

    def to_natural(self, x: float) -> float:
        """Search scale -> the parameter (SD, correlation, sigma, coefficient)."""
        if self.kind == "cor":
            return -1.0 if x <= -ATANH_MAX else 1.0 if x >= ATANH_MAX else math.tanh(x)
        if self.kind in ("sd", "sigma"):
            return 0.0 if x <= LOG_SD_FLOOR else math.exp(x)
        return x

    def from_natural(self, v: float) -> float:
        if self.kind == "cor":
            return math.atanh(v)
        if self.kind in ("sd", "sigma"):
            return math.log(v)
        return v


def _curves(fit: LmmResult, parm: list[str] | None = None) -> Iterator[_Curve]:
    """A :class:`_Curve` per SD, correlation, sigma (lme4's order) and fixed effect; REML fits
    are profiled on their ML refit (see the module docstring)."""
    if fit.reml:
        from hlm.inference.likelihood_ratio import refit_ml

        fit = refit_ml(fit)
    vprof = _VarianceProfiler(fit)
    info = fit.varcomp_info
    se_nat = np.full(len(info.free), 0.5)
    se_nat[info.free] = np.sqrt(np.maximum(np.diag(info.vcov), 1e-12))
    for k, p in enumerate(vprof.vp.params):
        if parm is not None and p.name not in parm:
            continue
        x_hat = vprof.eta_hat[k]
        seen: list[tuple[float, np.ndarray]] = [(x_hat, vprof.eta_hat.copy())]

        def zeta(x: float, k: int = k, seen: list[tuple[float, np.ndarray]] = seen, x_hat: float = x_hat) -> float:
            start = min(seen, key=lambda item: abs(item[0] - x))[1]  # warm start from the nearest point
            d, eta = vprof.profile_at(k, x, start)
            seen.append((x, eta))
            return math.copysign(math.sqrt(max(d - vprof.d_hat, 0.0)), x - x_hat)

        step = float(se_nat[k]) if np.isfinite(se_nat[k]) and se_nat[k] > 0 else 0.5
        bounds = (vprof.lower[k], ATANH_MAX) if p.kind == "cor" else (LOG_SD_FLOOR, None)
        yield _Curve(p.name, p.kind, p.group, p.var1, p.var2, float(info.estimates[k]), x_hat, step, bounds, zeta)
    beta, se = fit.fixef.to_numpy(), fit.se.to_numpy()
    for j, name in enumerate(fit.aggregates.xnames):
        if parm is not None and name not in parm:
            continue
        fprof = _FixedProfiler(fit, j)

        def zeta_f(b: float, j: int = j, fprof: _FixedProfiler = fprof) -> float:
            d = fprof.profile_at(b)
            return math.copysign(math.sqrt(max(d - fit.profiled.objective, 0.0)), b - beta[j])

        yield _Curve(
            name, "fixed", None, name, None, float(beta[j]), float(beta[j]), float(se[j]), (None, None), zeta_f
        )


def profile_confint(fit: LmmResult, *, level: float = 0.95, parm: list[str] | None = None) -> pd.DataFrame:
    """Profile-likelihood intervals for every SD, correlation, sigma and fixed effect.

    Rows in lme4's order (``.sig01``..., ``.sigma``, then the fixed effects); ``parm``
    restricts to some of those names.  Columns as :data:`CI_COLUMNS`, ``method="profile"``; for a
    REML fit ``method="profile (ML refit)"`` and ``attrs["note"]`` says what was profiled.
    """
    cut = math.sqrt(stats.chi2.ppf(level, 1))
    method = "profile (ML refit)" if fit.reml else "profile"
    rows = []
    for c in _curves(fit, parm):
        lo, hi = c.limits(cut)
        rows.append((c.name, c.kind, c.group, c.var1, c.var2, c.estimate, c.to_natural(lo), c.to_natural(hi), method))
    return _noted(pd.DataFrame(rows, columns=CI_COLUMNS), fit)


def _noted(table: pd.DataFrame, fit: LmmResult) -> pd.DataFrame:
    """The table, with :data:`REML_NOTE` in ``attrs["note"]`` for a REML fit."""
    if fit.reml:
        table.attrs["note"] = REML_NOTE
    return table


def profile(fit: LmmResult, *, alphamax: float = 0.01, parm: list[str] | None = None, npoints: int = 6) -> pd.DataFrame:
    """The profile zeta of every parameter (lme4's ``profile(fit)``), for plotting.

    Each parameter is traced from its estimate out to |zeta| = sqrt(chi2_1(1 - alphamax))
    (or the end of its range: an SD at 0, a correlation at -+1), with ``npoints`` evenly
    spaced points on each side besides those of the search.  Columns: parameter, kind,
    group, var1, var2, estimate, value (the SD, correlation, sigma or coefficient), zeta;
    rows sorted by parameter (lme4's order) and value.  For a REML fit, that of its ML refit
    (``attrs["note"]``).
    """
    cut = math.sqrt(stats.chi2.ppf(1.0 - alphamax, 1))
    rows = []
    for c in _curves(fit, parm):
        lo, hi = c.limits(cut)
        ends = [end for end in (lo, hi) if np.isfinite(end)]  # NaN: the search failed on that side
        lo, hi = (lo if np.isfinite(lo) else c.x_hat), (hi if np.isfinite(hi) else c.x_hat)
        for end in ends:
            if all(x != end for x, _ in c.points):
                c.zeta(end)
        for end in ends:
            v_end, v_hat = c.to_natural(end), c.to_natural(c.x_hat)
            for t in np.arange(1, npoints + 1) / (npoints + 1):
                c.zeta(c.from_natural(v_hat + t * (v_end - v_hat)))
        pts = sorted({x: z for x, z in c.points if lo <= x <= hi}.items())
        pts.insert(next((i for i, (x, _) in enumerate(pts) if x > c.x_hat), len(pts)), (c.x_hat, 0.0))
        for x, z in pts:
            rows.append((c.name, c.kind, c.group, c.var1, c.var2, c.estimate, c.to_natural(x), z))
    return _noted(pd.DataFrame(rows, columns=PROFILE_COLUMNS), fit)
