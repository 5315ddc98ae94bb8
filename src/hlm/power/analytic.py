"""Analytic MDES, power and sample size for the designs of :mod:`hlm.power.designs`.

With SE the standard error of the standardised effect and df the design's degrees of freedom
(Dong & Maynard 2013; Bloom 1995):

    MDES  = M * SE,   M = t(1 - alpha/2, df) + t(power, df)     (t(1 - alpha, df) one-sided)
    power = 1 - F(t_c; df, lambda) + F(-t_c; df, lambda),  lambda = effect / SE   (two-sided)
    power = 1 - F(t_c; df, lambda)                                                 (one-sided)

where F is the noncentral t distribution function and t_c the critical value (Raudenbush 1997,
Spybrook et al. 2011).  The sample size is the smallest whole number of units at one level
for which the power reaches the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import isfinite
from numbers import Real

import numpy as np
from scipy import integrate, stats

from hlm.errors import DataError, OptionError
from hlm.power.designs import Terms, check_sizes, design_terms, number, standard_error

_LARGEST = 10**9  # sample sizes beyond this are refused as unreachable


def probability(name: str, value: float) -> float:
    """``value`` checked to lie strictly between 0 and 1 (alpha, power, a margin)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value < 1:
        raise OptionError(f"{name} must lie strictly between 0 and 1, got {value!r}")
    return float(value)


def _critical(alpha: float, df: float, two_sided: bool) -> float:
    return float(stats.t.ppf(1 - alpha / 2 if two_sided else 1 - alpha, df))


def _nct_tail(x: float, df: float, ncp: float, upper: bool) -> float:
    """P(T > x) (``upper``) or P(T <= x) for T ~ noncentral t(df, ncp).

    scipy's series returns NaN far in a tail; there the same probability is computed from
    P(T <= x) = E[Phi(x sqrt(V / df) - ncp)], V ~ chi^2(df), by quadrature.
    """
    value = float(stats.nct.sf(x, df, ncp) if upper else stats.nct.cdf(x, df, ncp))
    if isfinite(value):
        return value
    phi = stats.norm.sf if upper else stats.norm.cdf
    chi2 = stats.chi2(df)  # V's mass lies within its 1e-14 and 1 - 1e-14 quantiles
    return float(
        integrate.quad(
            lambda v: phi(x * (v / df) ** 0.5 - ncp) * chi2.pdf(v),
            chi2.ppf(1e-14),
            chi2.isf(1e-14),
            points=[max(df - 2, 0.0)],
            epsabs=1e-13,
            limit=200,
        )[0]
    )


def _power_at(terms: Terms, sizes: Sequence[float], effect: float, alpha: float, two_sided: bool) -> float:
    df = terms.df(sizes[0])
    if df < 1:
        raise OptionError(
            f"{terms.design} with {sizes[0]:g} top-level units and {terms.covariates} covariate(s) "
            f"leaves {df:g} degrees of freedom; use at least {terms.min_top()} top-level units"
        )
    se = standard_error(terms, sizes)
    crit = _critical(alpha, df, two_sided)
    if se == 0:  # no variance left (a limit): any non-zero effect is detected
        return 1.0 if effect > 0 or (two_sided and effect < 0) else (alpha if effect == 0 else 0.0)
    ncp = effect / se
    upper = _nct_tail(crit, df, ncp, upper=True)
    return upper + _nct_tail(-crit, df, ncp, upper=False) if two_sided else upper


def multiplier(terms: Terms, top: float, alpha: float, power: float, two_sided: bool) -> float:
    """PowerUp!'s multiplier M = t(1 - alpha/2, df) + t(power, df)."""
    df = terms.df(top)
    if df < 1:
        raise OptionError(
            f"{terms.design} with {top:g} top-level units and {terms.covariates} covariate(s) "
            f"leaves {df:g} degrees of freedom; use at least {terms.min_top()} top-level units"
        )
    return float(t_multiplier(df, alpha, power, two_sided))


def t_multiplier(df: float | np.ndarray, alpha: float, power: float, two_sided: bool) -> float | np.ndarray:
    """t(1 - alpha/2, df) + t(power, df) (t(1 - alpha, df) one-sided), elementwise over ``df``."""
    return stats.t.ppf(1 - alpha / 2 if two_sided else 1 - alpha, df) + stats.t.ppf(power, df)


def mdes(
    design: str,
    sizes: Sequence[float],
    icc: Sequence[float] | float,
    r2: Sequence[float] | None = None,
    p: float = 0.5,
    alpha: float = 0.05,
    power: float = 0.8,
    covariates: int = 0,
    two_sided: bool = True,
    omega: Sequence[float] | float | None = None,
) -> float:
    """Minimum detectable effect size (in SDs of the outcome): M * SE (Dong & Maynard 2013).

    ``sizes``, ``icc``, ``omega`` and ``r2`` are listed outermost level first (``r2`` ends with
    level 1); see :mod:`hlm.power.designs` for each design's SE and df.
    """
    terms = design_terms(design, icc, r2, omega, p, covariates)
    full: tuple[float, ...] = check_sizes(design, sizes)  # type: ignore[assignment]  # no None allowed here
    m = multiplier(terms, full[0], probability("alpha", alpha), probability("power", power), two_sided)
    return m * standard_error(terms, full)


def power(
    design: str,
    sizes: Sequence[float],
    icc: Sequence[float] | float,
    effect: float,
    r2: Sequence[float] | None = None,
    p: float = 0.5,
    alpha: float = 0.05,
    covariates: int = 0,
    two_sided: bool = True,
    omega: Sequence[float] | float | None = None,
) -> float:
    """Power of the t test of the treatment effect from the noncentral t (lambda = effect / SE)."""
    terms = design_terms(design, icc, r2, omega, p, covariates)
    full: tuple[float, ...] = check_sizes(design, sizes)  # type: ignore[assignment]  # no None allowed here
    return _power_at(terms, full, number("effect", effect), probability("alpha", alpha), two_sided)


def sample_size(
    design: str,
    sizes: Sequence[float | None],
    icc: Sequence[float] | float,
    effect: float,
    r2: Sequence[float] | None = None,
    p: float = 0.5,
    alpha: float = 0.05,
    power: float = 0.8,
    covariates: int = 0,
    two_sided: bool = True,
    omega: Sequence[float] | float | None = None,
) -> int:
    """The smallest whole number of units at the level whose size is ``None`` that reaches ``power``.

    Power rises with every size, so a doubling search then bisection finds it.  A lower level
    cannot push the power past its limit (its variance terms vanish but the top's remain): a
    target above that limit is a DataError naming the limit.
    """
    terms = design_terms(design, icc, r2, omega, p, covariates)
    given = check_sizes(design, sizes, allow_missing=True)
    missing = [i for i, s in enumerate(given) if s is None]
    if len(missing) != 1:
        raise OptionError(f"sizes must contain exactly one None (the size to solve for), got {sizes!r}")
    at = missing[0]
    alpha = probability("alpha", alpha)
    target = probability("power", power)
    if number("effect", effect) == 0:
        raise OptionError("effect must be non-zero: no sample size detects an effect of 0")
    if not two_sided and effect < 0:
        raise OptionError("a one-sided test detects a positive effect; give effect > 0")
    effect = abs(float(effect))

    def reaches(value: float) -> bool:
        trial = list(given)
        trial[at] = value
        return _power_at(terms, trial, effect, alpha, two_sided) >= target  # type: ignore[arg-type]

    low = terms.min_top() if at == 0 else 1
    if at > 0:
        limit = _power_at(
            terms,
            [float("inf") if i == at else s for i, s in enumerate(given)],  # type: ignore[misc]
            effect,
            alpha,
            two_sided,
        )
        if limit < target:
            raise DataError(
                f"no number of units at sizes[{at}] reaches power {target:g}: with the other sizes "
                f"fixed the power tends to {limit:.4f}; increase a higher level instead"
            )
    if reaches(low):
        return low
    high = low
    while not reaches(high):
        if high > _LARGEST:
            raise DataError(f"more than {_LARGEST:,} units at sizes[{at}] would be needed to reach power {target:g}")
        low, high = high, high * 2
    while high - low > 1:  # reaches(high) and not reaches(low)
        mid = (low + high) // 2
        low, high = (low, mid) if reaches(mid) else (mid, high)
    return high
