"""The allocation of a budget over levels that minimises the MDES (or the cost of a target MDES).

With c_k the cost of one unit at level k (outermost first: the cost of recruiting a cluster,
..., the cost per individual), a design of sizes m costs C = sum_k c_k N_k and has
SE^2 = sum_k a_k / N_k (:mod:`hlm.power.designs`).

Continuous optimum (Raudenbush 1997 for two levels; Moerbeek, van Breukelen & Berger
2000 for more): by Cauchy-Schwarz, (sum a_k / N_k)(sum c_k N_k) >= (sum sqrt(a_k c_k))^2 with
equality at N_k proportional to sqrt(a_k / c_k), so the units per parent are

    m_k = N_k / N_{k-1} = sqrt((c_{k-1} / c_k) (a_k / a_{k-1})),
    SE^2 = (sum_k sqrt(a_k c_k))^2 / C;

for cra2 this is Raudenbush's n* = sqrt((c2 / c1) (1 - rho) / rho) (with R^2,
n* = sqrt((c2 / c1) (1 - rho)(1 - R2_1) / (rho (1 - R2_2)))).

The integer optimum is found exhaustively: every whole-number choice of the lower levels'
sizes whose cost leaves room for the minimum number of top-level units, each with the most
(budget) or fewest (target MDES) top-level units, scored with the exact df of each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hlm.errors import DataError, OptionError
from hlm.power.analytic import probability, t_multiplier
from hlm.power.designs import Terms, check_sizes, design_terms, number

_MAX_CANDIDATES = 5_000_000  # lower-level allocations searched at most


@dataclass(frozen=True)
class Allocation:
    """An allocation: sizes (outermost first), its cost and MDES, and the continuous optimum.

    ``continuous`` / ``continuous_mdes`` / ``continuous_cost`` are Raudenbush's real-valued
    optimum for the same budget (or target); ``None`` when a variance term is zero (the
    optimum then puts no units, or infinitely many, at some level).
    """

    design: str
    sizes: tuple[int, ...]
    cost: float
    mdes: float
    continuous: tuple[float, ...] | None
    continuous_mdes: float | None
    continuous_cost: float | None


def _candidates(costs: Sequence[float], fixed: Sequence[float | None], limit: float) -> np.ndarray:
    """Every whole-number choice of the lower levels' sizes whose per-top-unit cost is <= ``limit``.

    Rows hold the sizes of levels 1..L-1 (outermost first).  A level's size is capped so that
    the deeper levels, at one unit each, still fit.
    """
    rows = np.zeros((1, 0), dtype=np.int64)
    ratio = np.ones(1)  # N_k / N_top so far
    spent = np.full(1, float(costs[0]))
    for k in range(1, len(costs)):
        deeper = float(sum(costs[k:]))
        cap = np.floor((limit - spent) / (ratio * deeper) + 1e-9).astype(np.int64)
        size = fixed[k]
        if size is not None:
            counts = np.where(cap >= size, 1, 0)
            values = np.full(int(counts.sum()), int(size), dtype=np.int64)
        else:
            counts = np.maximum(cap, 0)
            if counts.sum() > _MAX_CANDIDATES:
                raise OptionError(
                    f"the budget allows over {_MAX_CANDIDATES:,} allocations of the lower levels; "
                    "fix some sizes (e.g. the individuals per cluster) to search the rest"
                )
            values = np.concatenate([np.arange(1, c + 1) for c in counts]) if counts.sum() else np.zeros(0, np.int64)
        keep = np.repeat(np.arange(len(rows)), counts)
        rows = np.column_stack([rows[keep], values])
        ratio = ratio[keep] * values
        spent = spent[keep] + costs[k] * ratio
    return rows


def _ratios(rows: np.ndarray) -> np.ndarray:
    """N_k / N_top for every level (outermost first), one row per candidate."""
    return np.column_stack([np.ones(len(rows)), np.cumprod(rows, axis=1)]) if rows.shape[1] else np.ones((len(rows), 1))


def _continuous(terms: Terms, costs: Sequence[float], budget: float) -> tuple[tuple[float, ...], float] | None:
    """Raudenbush's continuous optimum for ``budget``: the sizes and SE^2, or None."""
    a = np.asarray(terms.a)
    c = np.asarray(costs, dtype=float)
    if np.any(a <= 0):
        return None
    total = float(np.sum(np.sqrt(a * c)))
    n_units = budget / total * np.sqrt(a / c)
    sizes = (float(n_units[0]),) + tuple(float(v) for v in n_units[1:] / n_units[:-1])
    return sizes, total**2 / budget


def _continuous_mdes(
    terms: Terms, c: Sequence[float], budget: float, alpha: float, power: float, two_sided: bool
) -> float:
    """MDES of the continuous optimum for ``budget`` (df from its real-valued top-level size)."""
    sizes, var = _continuous(terms, c, budget)  # type: ignore[misc]
    if terms.df(sizes[0]) <= 0:
        return float("inf")
    return float(t_multiplier(terms.df(sizes[0]), alpha, power, two_sided)) * var**0.5


def allocate(
    design: str,
    costs: Sequence[float],
    icc: Sequence[float] | float,
    *,
    budget: float | None = None,
    target: float | None = None,
    sizes: Sequence[float | None] | None = None,
    r2: Sequence[float] | None = None,
    omega: Sequence[float] | float | None = None,
    p: float = 0.5,
    alpha: float = 0.05,
    power: float = 0.8,
    covariates: int = 0,
    two_sided: bool = True,
) -> Allocation:
    """The whole-number sizes that minimise the MDES within ``budget`` (or the cost of MDES <= ``target``).

    ``costs`` lists the cost of one unit at each level, outermost first; the total cost is
    sum_k c_k N_k.  ``sizes`` may fix lower levels (``None`` marks a size to choose; the
    top level is always chosen).  Ties in MDES go to the cheaper allocation.
    """
    terms = design_terms(design, icc, r2, omega, p, covariates)
    alpha, power = probability("alpha", alpha), probability("power", power)
    levels = terms.levels
    if not isinstance(costs, (list, tuple)) or len(costs) != levels:
        raise OptionError(f"costs must list {levels} costs per unit (outermost level first), got {costs!r}")
    c = [number("costs", v) for v in costs]
    if any(v <= 0 for v in c):
        raise OptionError(f"costs must be finite numbers > 0, got {costs!r}")
    fixed = check_sizes(design, (None,) * levels if sizes is None else sizes, allow_missing=True)
    if fixed[0] is not None:
        raise OptionError("the top level's size is what the allocation chooses; give it as None")
    if any(v is not None and v != int(v) for v in fixed):
        raise OptionError(f"fixed sizes must be whole numbers, got {sizes!r}")
    if (budget is None) == (target is None):
        raise OptionError("give exactly one of budget (minimise the MDES) or target (minimise the cost of that MDES)")
    lowest = [1.0 if v is None else float(v) for v in fixed]
    cheapest = sum(ck * r for ck, r in zip(c, np.cumprod([1.0] + lowest[1:])))  # per top unit, inner sizes at minimum
    if budget is not None:
        if number("budget", budget) <= 0:
            raise OptionError(f"budget must be a finite number > 0, got {budget!r}")
        if budget < terms.min_top() * cheapest:
            raise DataError(
                f"a budget of {budget:g} buys fewer than the {terms.min_top()} top-level units {design} "
                f"needs (each costs at least {cheapest:g})"
            )
        return _within_budget(terms, c, fixed, float(budget), alpha, power, two_sided)
    if number("target", target) <= 0:
        raise OptionError(f"target (the MDES to reach) must be a finite number > 0, got {target!r}")
    return _for_target(terms, c, fixed, number("target", target), cheapest, alpha, power, two_sided)


def _within_budget(
    terms: Terms, c: list[float], fixed: tuple, budget: float, alpha: float, power: float, two_sided: bool
) -> Allocation:
    rows = _candidates(c, fixed, budget / terms.min_top())
    ratios = _ratios(rows)
    per_top = ratios @ np.asarray(c)
    top = np.floor(budget / per_top + 1e-9)
    se = np.sqrt((np.asarray(terms.a) / ratios).sum(axis=1) / top)
    mdes = t_multiplier(terms.df(top), alpha, power, two_sided) * se
    cost = top * per_top
    best = int(np.lexsort((cost, mdes))[0])
    cont = _continuous(terms, c, budget)
    cont_mdes = None if cont is None else _continuous_mdes(terms, c, budget, alpha, power, two_sided)
    return Allocation(
        terms.design,
        (int(top[best]),) + tuple(int(v) for v in rows[best]),
        float(cost[best]),
        float(mdes[best]),
        None if cont is None else cont[0],
        cont_mdes,
        None if cont is None else budget,
    )


def _fewest_top(
    terms: Terms, scale: np.ndarray, target: float, alpha: float, power: float, two_sided: bool
) -> np.ndarray:
    """The fewest top-level units with M(df) sqrt(scale / top) <= target, per candidate."""

    def ok(top: np.ndarray) -> np.ndarray:
        return t_multiplier(terms.df(top), alpha, power, two_sided) * np.sqrt(scale / top) <= target

    low = np.full(len(scale), float(terms.min_top()))
    done = ok(low)
    high = low.copy()
    while not np.all(ok(high) | done):
        high = np.where(ok(high) | done, high, high * 2)
        if np.any(high > 1e12):
            raise DataError("the target MDES needs more than 10^12 top-level units")
    while True:
        gap = (high - low > 1) & ~done
        if not gap.any():
            break
        mid = np.floor((low + high) / 2)
        good = ok(mid)
        high = np.where(gap & good, mid, high)
        low = np.where(gap & ~good, mid, low)
    return np.where(done, low, high)


def _for_target(
    terms: Terms,
    c: list[float],
    fixed: tuple,
    target: float,
    cheapest: float,
    alpha: float,
    power: float,
    two_sided: bool,
) -> Allocation:
    a = np.asarray(terms.a)
    start = _ratios(np.asarray([[1 if v is None else int(v) for v in fixed[1:]]], dtype=np.int64))
    top0 = _fewest_top(terms, (a / start).sum(axis=1), target, alpha, power, two_sided)
    limit = float(top0[0]) * cheapest / terms.min_top()  # no per-top cost above this can be cheaper
    rows = _candidates(c, fixed, limit)
    ratios = _ratios(rows)
    scale = (a / ratios).sum(axis=1)
    top = _fewest_top(terms, scale, target, alpha, power, two_sided)
    cost = top * (ratios @ np.asarray(c))
    mdes = t_multiplier(terms.df(top), alpha, power, two_sided) * np.sqrt(scale / top)
    best = int(np.lexsort((mdes, cost))[0])
    cont_sizes = cont_mdes = cont_cost = None
    if np.all(a > 0):
        low, high = 0.0, float(cost[best])
        while _continuous_mdes(terms, c, high, alpha, power, two_sided) > target:
            low, high = high, high * 2
        for _ in range(100):  # bisection on the budget whose continuous optimum has MDES = target
            mid = (low + high) / 2
            low, high = (mid, high) if _continuous_mdes(terms, c, mid, alpha, power, two_sided) > target else (low, mid)
        cont_sizes = _continuous(terms, c, high)[0]  # type: ignore[index]
        cont_mdes, cont_cost = _continuous_mdes(terms, c, high, alpha, power, two_sided), high
    return Allocation(
        terms.design,
        (int(top[best]),) + tuple(int(v) for v in rows[best]),
        float(cost[best]),
        float(mdes[best]),
        cont_sizes,
        cont_mdes,
        cont_cost,
    )
