"""The standard multilevel randomised designs as variance terms: SE^2 = sum_k a_k / N_k.

Every design here has a standardised treatment effect whose squared standard error is a sum
over levels of a coefficient ``a_k`` divided by the number ``N_k`` of units at that level
(N_top = sizes[0], N_k = sizes[0] * ... * sizes[k]); the outcome's total variance is 1.

Cluster random assignment, treatment at the top of L levels (``cra2``, ``cra3``, ``cra4``;
Raudenbush 1997 for two levels, Spybrook et al. 2011 *Optimal Design* manual, Dong &
Maynard 2013 *PowerUp!* models 3.1, 3.2, 3.3):

    a_k = rho_k (1 - R2_k) / (P (1 - P))         (rho_1 = 1 - sum of the higher ICCs)
    df  = N_top - g - 2

Blocked individual random assignment, random block effects (``bira2``, ``bira3``; Dong &
Maynard 2013 models 2.3 and 2.4; Raudenbush & Liu 2000 for two levels), with the treatment
effect varying across blocks with variance omega_k * tau_k^2 (omega_k = tau_Tk^2 / tau_k^2):

    a_k = rho_k omega_k (1 - R2T_k)   for the block levels k >= 2
    a_1 = (1 - sum rho) (1 - R2_1) / (P (1 - P))
    df  = N_top - g - 1

``g`` is the number of top-level covariates; R2 lists the share of each level's variance
explained by covariates (for ``bira`` the block levels' R2 is that of the treatment-effect
variance, Dong & Maynard's R2_T).  Sizes, ICCs, omegas and R2 are listed outermost first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import isfinite
from numbers import Integral, Real
from typing import Any

from hlm.errors import OptionError

DESIGNS = {"cra2": 2, "cra3": 3, "cra4": 4, "bira2": 2, "bira3": 3}

_SIZE_NAMES = {
    2: "(clusters, individuals per cluster)",
    3: "(top units, middle units per top unit, individuals per middle unit)",
    4: "(level-4 units, level-3 per level-4, level-2 per level-3, individuals per level-2)",
}


@dataclass(frozen=True)
class Terms:
    """A design reduced to its variance coefficients ``a`` (outermost first) and df rule."""

    design: str
    a: tuple[float, ...]
    covariates: int

    @property
    def levels(self) -> int:
        return len(self.a)

    def df(self, top: Any) -> Any:
        """Degrees of freedom of the t test for ``top`` top-level units (a number or an array)."""
        return top - self.covariates - (2 if self.design.startswith("cra") else 1)

    def min_top(self) -> int:
        """The fewest top-level units that leave one degree of freedom."""
        return self.covariates + (3 if self.design.startswith("cra") else 2)


def number(name: str, value: object) -> float:
    """``value`` as a float; anything but a finite real number (bools included) is an OptionError."""
    if isinstance(value, bool) or not isinstance(value, Real) or not isfinite(float(value)):
        raise OptionError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def listed(name: str, value: object, count: int, what: str) -> tuple[float, ...]:
    """``value`` as ``count`` numbers (a single number is accepted when ``count`` is 1)."""
    items = [value] if isinstance(value, Real) else value
    if not isinstance(items, (list, tuple)) or len(items) != count:
        raise OptionError(f"{name} must list {count} value(s), {what}, got {value!r}")
    return tuple(number(name, v) for v in items)


def check_design(design: object) -> int:
    """The number of levels of ``design``; an unknown name is an OptionError."""
    if design not in DESIGNS:
        raise OptionError(f"unknown design {design!r}; use one of {', '.join(DESIGNS)}")
    return DESIGNS[design]


def check_sizes(design: str, sizes: Sequence[float | None], allow_missing: bool = False) -> tuple[float | None, ...]:
    """Validate ``sizes`` (outermost first): numbers >= 1, ``None`` where ``allow_missing``."""
    levels = check_design(design)
    what = _SIZE_NAMES[levels]
    if not isinstance(sizes, (list, tuple)) or len(sizes) != levels:
        raise OptionError(f"sizes for {design} must list {levels} numbers {what}, got {sizes!r}")
    out: list[float | None] = []
    for i, size in enumerate(sizes):
        if size is None and allow_missing:
            out.append(None)
            continue
        value = number("sizes", size)
        if value < 1:
            raise OptionError(f"sizes[{i}] must be >= 1, got {size!r}")
        out.append(value)
    return tuple(out)


def design_terms(
    design: str,
    icc: Sequence[float] | float,
    r2: Sequence[float] | None = None,
    omega: Sequence[float] | float | None = None,
    p: float = 0.5,
    covariates: int = 0,
) -> Terms:
    """Reduce a design and its parameters to :class:`Terms`, refusing impossible values."""
    levels = check_design(design)
    upper = levels - 1
    above = "level 2" if levels == 2 else f"levels {levels}..2 (outermost first)"
    rho = listed("icc", icc, upper, f"the ICCs of {above}")
    if any(not 0 <= v < 1 for v in rho) or sum(rho) >= 1:
        raise OptionError(f"icc must lie in [0, 1) and sum to less than 1, got {icc!r}")
    r2s = (0.0,) * levels if r2 is None else listed("r2", r2, levels, f"levels {levels}..1 (outermost first)")
    if any(not 0 <= v < 1 for v in r2s):
        raise OptionError(f"each r2 must lie in [0, 1), got {r2!r}")
    p = number("p", p)
    if not 0 < p < 1:
        raise OptionError(f"p (the treated proportion) must lie strictly between 0 and 1, got {p!r}")
    if isinstance(covariates, bool) or not isinstance(covariates, Integral) or covariates < 0:
        raise OptionError(f"covariates must be a whole number >= 0, got {covariates!r}")
    level1 = (1 - sum(rho)) * (1 - r2s[-1]) / (p * (1 - p))
    if design.startswith("cra"):
        if omega is not None:
            raise OptionError(f"omega (treatment-effect heterogeneity) applies to bira designs, not {design}")
        a = tuple(v * (1 - r) / (p * (1 - p)) for v, r in zip(rho, r2s[:-1])) + (level1,)
    else:
        if omega is None:
            raise OptionError(
                f"{design} needs omega, the treatment-effect variance over the block variance at "
                f"{above}; give omega=0 for a constant effect"
            )
        om = listed("omega", omega, upper, above)
        if any(v < 0 for v in om):
            raise OptionError(f"omega must be >= 0, got {omega!r}")
        a = tuple(v * w * (1 - r) for v, w, r in zip(rho, om, r2s[:-1])) + (level1,)
    return Terms(design, a, int(covariates))


def units(sizes: Sequence[float]) -> list[float]:
    """N_k: the number of units at each level (outermost first) for nested ``sizes``."""
    out, total = [], 1.0
    for size in sizes:
        total *= size
        out.append(total)
    return out


def standard_error(terms: Terms, sizes: Sequence[float]) -> float:
    """Standard error of the standardised treatment effect: sqrt(sum_k a_k / N_k)."""
    return sum(a / n for a, n in zip(terms.a, units(sizes))) ** 0.5
