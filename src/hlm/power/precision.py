"""How precisely a balanced nested design estimates the SD of its top level.

In a balanced nested design with N top-level units, m_1 units of the next level in each and
c observations below each top-level unit (c = product of the lower sizes), the ANOVA
estimator of the top-level variance (which REML equals when it is positive) is

    tau^2_hat = (MS_top - MS_next) / c,

with MS_top and MS_next independent, each its expectation times chi^2(df) / df, so

    Var(tau^2_hat) = (2 / c^2) [ E(MS_top)^2 / (N - 1) + E(MS_next)^2 / (N (m_1 - 1)) ]

(Searle, Casella & McCulloch 1992, *Variance Components*, ch. 3-4, balanced data; for two
levels this is their one-way result (2/n^2)[(sigma^2 + n tau^2)^2/(a-1) + sigma^4/(a(n-1))]).
The expected mean squares add each level's variance times the observations per unit of
that level: E(MS_next) = sum over the levels below the top, E(MS_top) = E(MS_next) + c tau^2.
The SD's standard error follows by the delta method, SE(tau_hat) = SE(tau^2_hat) / (2 tau),
and the margin is z(1 - (1 - confidence)/2) SE(tau_hat) / tau: the half-width of the
(symmetric, large-sample) confidence interval as a share of the SD.  With few top-level
units the sampling distribution of tau_hat is skewed and the symmetric interval is optimistic.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

from scipy import stats

from hlm.errors import DataError, OptionError
from hlm.power.analytic import probability
from hlm.power.designs import listed, number

_LARGEST = 10**9
MAX_LEVELS = 5  # e.g. the seed's districts, schools, teachers, students and semesters


def _check(sizes: Sequence[float | None], icc: Sequence[float] | float) -> tuple[list[float | None], tuple[float, ...]]:
    if not isinstance(sizes, (list, tuple)) or not 2 <= len(sizes) <= MAX_LEVELS:
        raise OptionError(f"sizes must list 2 to {MAX_LEVELS} numbers (outermost level first), got {sizes!r}")
    levels = len(sizes)
    rho = listed("icc", icc, levels - 1, f"the ICCs of levels {levels}..2 (outermost first)")
    if any(not 0 <= v < 1 for v in rho) or sum(rho) >= 1:
        raise OptionError(f"icc must lie in [0, 1) and sum to less than 1, got {icc!r}")
    if rho[0] == 0:
        raise OptionError("the top level's ICC is 0: its SD has no relative precision; give a positive ICC")
    out: list[float | None] = []
    for i, size in enumerate(sizes):
        if size is None:
            out.append(None)
            continue
        if number("sizes", size) < 2 or size != int(size):
            raise OptionError(f"sizes[{i}] must be a whole number >= 2 (a variance needs replication), got {size!r}")
        out.append(float(size))
    return out, rho


def _margin(sizes: Sequence[float], rho: tuple[float, ...], confidence: float) -> float:
    variances = list(rho) + [1 - sum(rho)]  # top ... level 1, total variance 1
    below = [prod(sizes[k + 1 :]) for k in range(len(sizes))]  # observations under one unit of each level
    next_ms = sum(v * b for v, b in zip(variances[1:], below[1:]))
    top_ms = next_ms + below[0] * variances[0]
    n_top, m1 = sizes[0], sizes[1]
    var_tau2 = 2 / below[0] ** 2 * (top_ms**2 / (n_top - 1) + next_ms**2 / (n_top * (m1 - 1)))
    se_rel = var_tau2**0.5 / (2 * variances[0])  # SE(tau_hat) / tau
    return float(stats.norm.ppf(1 - (1 - confidence) / 2)) * se_rel


def sd_margin(sizes: Sequence[float], icc: Sequence[float] | float, confidence: float = 0.95) -> float:
    """Half-width of the confidence interval for the top level's SD, as a share of the SD.

    ``sizes`` and ``icc`` are listed outermost first (a balanced nested design, 2 to 5 levels);
    0.25 means the SD is estimated within +-25%.
    """
    checked, rho = _check(sizes, icc)
    if None in checked:
        raise OptionError("sd_margin needs every size; use sd_sample_size to solve for one")
    return _margin(checked, rho, probability("confidence", confidence))  # type: ignore[arg-type]


def sd_sample_size(
    sizes: Sequence[float | None], icc: Sequence[float] | float, margin: float, confidence: float = 0.95
) -> int:
    """The fewest top-level units (``sizes[0]`` is ``None``) estimating the top SD within +-``margin``."""
    checked, rho = _check(sizes, icc)
    if checked[0] is not None or None in checked[1:]:
        raise OptionError(f"sizes must be None at the top level (the size to solve for) and given below, got {sizes!r}")
    margin = probability("margin", margin)
    confidence = probability("confidence", confidence)

    def reaches(n: int) -> bool:
        return _margin([float(n)] + checked[1:], rho, confidence) <= margin  # type: ignore[operator]

    low = high = 2
    while not reaches(high):
        if high > _LARGEST:
            raise DataError(f"more than {_LARGEST:,} top-level units would be needed for a margin of {margin:g}")
        low, high = high, high * 2
    if low == high:
        return low
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if reaches(mid) else (mid, high)
    return high
