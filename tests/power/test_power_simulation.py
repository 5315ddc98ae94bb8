"""hlm.power.simulate: simulated power against the analytic formulas (Dong & Maynard 2013, as
checked in test_power_analytic) for designs that satisfy their assumptions -- balanced, treatment
assigned to exactly P of the units (``Assign``), the Satterthwaite t whose df are the formulas'
(J - 2 for cra, J - 1 for bira) -- and the API's contract."""

from __future__ import annotations

import math

import numpy as np
import pytest

import hlm
from hlm.errors import HLMError, OptionError
from hlm.simulate import Covariate, Design, Level, Observations

REPS = 1000


def cra2(J: int, n: int, rho: float, effect: float) -> Design:
    return Design(
        (Level("school", n=J, sd=math.sqrt(rho)),),
        observations=Observations(n=n),
        residual_sd=math.sqrt(1 - rho),
        covariates=(Covariate("treat", "Assign(0.5)", level="school"),),
        fixed={"treat": effect},
    )


def cra3(J: int, n2: int, n1: int, rho3: float, rho2: float, effect: float) -> Design:
    return Design(
        (Level("district", n=J, sd=math.sqrt(rho3)), Level("school", n=n2, sd=math.sqrt(rho2))),
        observations=Observations(n=n1),
        residual_sd=math.sqrt(1 - rho3 - rho2),
        covariates=(Covariate("treat", "Assign(0.5)", level="district"),),
        fixed={"treat": effect},
    )


def bira2(J: int, n: int, rho: float, omega: float, effect: float) -> Design:
    return Design(
        (Level("site", n=J, sd=math.sqrt(rho), slopes={"treat": math.sqrt(omega * rho)}),),
        observations=Observations(n=n),
        residual_sd=math.sqrt(1 - rho),
        covariates=(Covariate("treat", "Assign(0.5)"),),  # exactly half of each site's individuals
        fixed={"treat": effect},
    )


CASES = [
    ("cra2", cra2(20, 10, 0.15, 0.45), "y ~ treat + (1 | school_id)", ((20, 10), 0.15, None, 0.45)),
    (
        "cra3",
        cra3(16, 3, 8, 0.1, 0.1, 0.45),
        "y ~ treat + (1 | district_id/school_id)",
        ((16, 3, 8), (0.1, 0.1), None, 0.45),
    ),
    ("bira2", bira2(20, 20, 0.2, 0.5, 0.25), "y ~ treat + (1 + treat | site_id)", ((20, 20), 0.2, 0.5, 0.25)),
]


@pytest.mark.parametrize("name,design,model,analytic", CASES, ids=[c[0] for c in CASES])
def test_simulated_power_agrees_with_analytic(name, design, model, analytic):
    sizes, icc, omega, effect = analytic
    expected = hlm.power.power(name, sizes, icc, effect, omega=omega)
    assert 0.3 < expected < 0.9  # a power where the check has teeth
    result = hlm.power.simulate(design, model, "treat", reps=REPS, seed=3, test="satterthwaite", n_jobs=1)
    assert result.table["method"].tolist() == ["sufficient"]
    assert result.failed <= REPS // 100
    assert abs(result.power - expected) < 3 * result.mc_se, (result.power, expected, result.mc_se)


def test_vary_effect_and_result():
    design = cra2(10, 5, 0.1, 0.5)
    res = hlm.power.simulate(
        design,
        "y ~ treat + (1 | school_id)",
        "treat",
        effect=0.0,
        reps=200,
        seed=1,
        n_jobs=1,
        vary={"levels.school.n": [6, 12]},
    )
    t = res.table
    assert list(t.columns[:1]) == ["levels.school.n"] and t["levels.school.n"].tolist() == [6, 12]
    assert t["reps"].tolist() == [200, 200] and res.reps == 200
    # effect=0: the size of the test, near alpha (Wald z is a little liberal with few clusters)
    assert np.all(np.abs(res.power - 0.05) < 4 * np.sqrt(0.05 * 0.95 / 200) + 0.03)
    assert np.allclose(res.mc_se, np.sqrt(res.power * (1 - res.power) / 200))
    same = hlm.power.simulate(
        design,
        "y ~ treat + (1 | school_id)",
        "treat",
        effect=0.0,
        reps=200,
        seed=1,
        n_jobs=2,
        vary={"levels.school.n": [6, 12]},
    )
    assert same.replicates == res.replicates  # seeds per replicate: the same for any n_jobs


def test_rows_route_and_lrt():
    design = cra2(12, 6, 0.1, 0.8)
    model = "y ~ treat + (1 | school_id)"
    rows = hlm.power.simulate(design, model, "treat", reps=60, seed=2, method="rows", test="lrt", n_jobs=1)
    fast = hlm.power.simulate(design, model, "treat", reps=60, seed=2, test="lrt", n_jobs=1)
    assert rows.table["method"].tolist() == ["rows"] and fast.table["method"].tolist() == ["sufficient"]
    assert rows.power > 0.5 and fast.power > 0.5


def test_refusals():
    design = cra2(10, 5, 0.1, 0.5)
    with pytest.raises(OptionError, match="not a fixed effect"):
        hlm.power.simulate(design, "y ~ 1 + (1 | school_id)", "treat", reps=5)
    with pytest.raises(OptionError, match="test must be"):
        hlm.power.simulate(design, "y ~ treat + (1 | school_id)", "treat", reps=5, test="kr")  # type: ignore[arg-type]
    with pytest.raises(OptionError, match="mixed model"):
        hlm.power.simulate(design, "y ~ treat", "treat", reps=5)
    with pytest.raises(OptionError, match="does not apply.*innermost"):
        three = cra3(6, 2, 3, 0.1, 0.1, 0.5)
        hlm.power.simulate(three, "y ~ treat + (1 | district_id)", "treat", reps=5, method="sufficient")
    with pytest.raises(HLMError):
        hlm.power.simulate(design, "y ~ treat + (1 | school_id)", "treat", reps=0)
    with pytest.raises(OptionError, match="GLMM command but the design.s outcome is Gaussian"):
        hlm.power.simulate(design, "melogit y treat || school_id:", "treat", reps=5)
