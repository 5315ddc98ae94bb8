"""Optimal allocation under a budget: Raudenbush's (1997) continuous optimum and the integer search.

The MDES of every allocation is recomputed with the papers' formulas of test_power_analytic.
"""

from __future__ import annotations

import itertools
import math

import pytest
from test_power_analytic import paper_mdes

import hlm
from hlm.errors import DataError, HLMError, OptionError


def cost_of(sizes, costs):
    """sum_k c_k N_k with N_k the number of units at level k (outermost first)."""
    return sum(c * math.prod(sizes[: k + 1]) for k, c in enumerate(costs))


@pytest.mark.parametrize("rho,c2,c1,r2", [(0.1, 300, 10, (0, 0)), (0.05, 50, 1, (0, 0)), (0.25, 1000, 40, (0.5, 0.3))])
def test_cra2_continuous_optimum_is_raudenbush(rho, c2, c1, r2):
    """Raudenbush (1997): n* = sqrt((c2 / c1) (1 - rho) / rho), J* = budget / (c2 + c1 n*);
    with covariates the variances are the residual ones, rho (1 - R2_2) and (1 - rho) (1 - R2_1)."""
    budget = 50_000
    best = hlm.power.allocate("cra2", (c2, c1), rho, budget=budget, r2=r2)
    n_star = math.sqrt((c2 / c1) * (1 - rho) * (1 - r2[1]) / (rho * (1 - r2[0])))
    j_star = budget / (c2 + c1 * n_star)
    assert best.continuous[1] == pytest.approx(n_star, rel=1e-12)
    assert best.continuous[0] == pytest.approx(j_star, rel=1e-12)
    want = paper_mdes("cra2", (j_star, n_star), (rho,), r2, 0.5, 0.05, 0.8, 0, True)
    assert best.continuous_mdes == pytest.approx(want, rel=1e-9)
    assert best.cost <= budget
    # the continuous optimum (real-valued sizes) is a lower bound up to the df it is scored with
    assert best.mdes >= best.continuous_mdes * (1 - 1e-3)


def _brute_force_budget(design, costs, icc, budget, omega=None, g=0):
    """Every whole-number allocation within the budget, scored with the papers' formulas."""
    levels = len(costs)
    min_top = g + (3 if design.startswith("cra") else 2)
    best = None
    ranges = [range(1, 200)] * (levels - 1)
    for inner in itertools.product(*ranges):
        per_top = cost_of((1,) + inner, costs)
        top = math.floor(budget / per_top + 1e-9)
        if top < min_top:
            continue
        sizes = (top,) + inner
        value = paper_mdes(design, sizes, icc, (0,) * levels, 0.5, 0.05, 0.8, g, True, omega)
        key = (value, top * per_top)
        if best is None or key < best[0]:
            best = (key, sizes)
    return best


@pytest.mark.parametrize(
    "design,costs,icc,budget,omega",
    [
        ("cra2", (300, 10), (0.1,), 20_000, None),
        ("cra2", (40, 7), (0.02,), 6_000, None),
        ("bira2", (300, 10), (0.2,), 20_000, (0.3,)),
        ("cra3", (900, 120, 15), (0.08, 0.12), 60_000, None),
    ],
)
def test_integer_optimum_matches_brute_force(design, costs, icc, budget, omega):
    (value, _cost), sizes = _brute_force_budget(design, costs, icc, budget, omega)
    best = hlm.power.allocate(design, costs, icc, budget=budget, omega=omega)
    assert best.sizes == sizes
    assert best.mdes == pytest.approx(value, abs=1e-9)
    assert best.cost == pytest.approx(cost_of(sizes, costs))


@pytest.mark.parametrize(
    "design,costs,icc,budget,omega",
    [
        ("cra2", (300, 10), 0.1, 20_000, None),
        ("cra2", (2000, 25), 0.15, 400_000, None),
        ("cra3", (1000, 300, 10), (0.1, 0.1), 200_000, None),
        ("cra3", (5000, 200, 20), (0.15, 0.05), 900_000, None),
        ("cra4", (5000, 1000, 300, 10), (0.05, 0.1, 0.1), 500_000, None),
        ("bira2", (300, 10), 0.2, 20_000, 0.3),
        ("bira3", (2000, 300, 10), (0.1, 0.2), 300_000, (0.2, 0.4)),
    ],
)
def test_integer_optimum_never_worse_than_rounding_the_continuous_one(design, costs, icc, budget, omega):
    best = hlm.power.allocate(design, costs, icc, budget=budget, omega=omega)
    iccs = icc if isinstance(icc, tuple) else (icc,)
    omegas = None if omega is None else (omega if isinstance(omega, tuple) else (omega,))
    levels = len(costs)
    tried = 0
    for inner in itertools.product(*[(math.floor(v), math.ceil(v)) for v in best.continuous[1:]]):
        inner = tuple(max(1, int(v)) for v in inner)
        top = math.floor(budget / cost_of((1,) + inner, costs))
        if top < 3:
            continue
        rounded = paper_mdes(design, (top,) + inner, iccs, (0,) * levels, 0.5, 0.05, 0.8, 0, True, omegas)
        assert best.mdes <= rounded + 1e-12
        tried += 1
    assert tried > 0
    assert best.cost <= budget


def test_target_mdes_minimises_the_cost():
    costs, icc, target = (300, 10), (0.1,), 0.4
    best = hlm.power.allocate("cra2", costs, icc, target=target)
    assert paper_mdes("cra2", best.sizes, icc, (0, 0), 0.5, 0.05, 0.8, 0, True) <= target
    cheapest = None
    for n in range(1, 300):
        for j in range(3, 400):
            if paper_mdes("cra2", (j, n), icc, (0, 0), 0.5, 0.05, 0.8, 0, True) <= target:
                cost = cost_of((j, n), costs)
                if cheapest is None or cost < cheapest:
                    cheapest = cost
                break
    assert best.cost == pytest.approx(cheapest)
    # the continuous optimum spends no more than the integer one, and reaches the target exactly
    assert best.continuous_mdes == pytest.approx(target, rel=1e-9)
    assert best.continuous_cost <= best.cost
    assert best.continuous[1] == pytest.approx(math.sqrt(30 * 0.9 / 0.1), rel=1e-12)


def test_fixed_sizes_and_three_levels_for_a_target():
    best = hlm.power.allocate("cra3", (1000, 300, 10), (0.1, 0.1), target=0.3, sizes=(None, None, 20))
    assert best.sizes[2] == 20
    assert paper_mdes("cra3", best.sizes, (0.1, 0.1), (0, 0, 0), 0.5, 0.05, 0.8, 0, True) <= 0.3
    # one school fewer per district, or one district fewer, misses the target or costs more
    k, j, n = best.sizes
    assert paper_mdes("cra3", (k - 1, j, n), (0.1, 0.1), (0, 0, 0), 0.5, 0.05, 0.8, 0, True) > 0.3


def test_zero_variance_term_has_no_continuous_optimum():
    best = hlm.power.allocate("bira2", (300, 10), 0.2, omega=0, budget=20_000)
    assert best.continuous is None and best.continuous_mdes is None
    assert best.cost <= 20_000


@pytest.mark.parametrize(
    "kwargs,error,text",
    [
        ({"budget": 900}, DataError, "buys fewer than"),  # 3 clusters of one cost 930
        ({}, OptionError, "exactly one of budget"),
        ({"budget": 10_000, "target": 0.3}, OptionError, "exactly one of budget"),
        ({"budget": -5}, OptionError, "budget must be"),
        ({"target": 0}, OptionError, "target"),
        ({"budget": 10_000, "sizes": (10, None)}, OptionError, "top level"),
        ({"budget": 10_000, "sizes": (None, 2.5)}, OptionError, "whole numbers"),
        ({"budget": 1e12}, OptionError, "fix some sizes"),
    ],
)
def test_allocation_refusals(kwargs, error, text):
    with pytest.raises(error) as info:
        hlm.power.allocate("cra2", (300, 10), 0.1, **kwargs)
    assert isinstance(info.value, HLMError)
    assert text in str(info.value) and "\n" not in str(info.value)


def test_costs_must_match_the_levels():
    with pytest.raises(OptionError, match="costs must list 3"):
        hlm.power.allocate("cra3", (300, 10), (0.1, 0.1), budget=1e5)
    with pytest.raises(OptionError, match="costs must be finite"):
        hlm.power.allocate("cra2", (300, 0), 0.1, budget=1e5)
