"""hlm.power.simulate with a binary outcome (GLMM power, Wald z on the link scale): the rejection
rate is the nominal alpha when the effect is 0 (within Monte Carlo bounds, binomial SE
sqrt(alpha (1 - alpha) / reps)) and grows with the effect; what GLMM power does not offer is refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

import hlm
from hlm.errors import OptionError
from hlm.simulate import Covariate, Design, Level, Observations, Outcome

ALPHA = 0.05


def logit_design(effect: float) -> Design:
    return Design(
        (Level("school", n=25, sd=0.8),),
        observations=Observations(n=12),
        covariates=(Covariate("x", "Normal(0, 1)"),),
        fixed={"intercept": -0.4, "x": effect},
        response="passed",
        outcome=Outcome("binomial", "logit"),
    )


def test_glmm_power_is_alpha_under_the_null_and_grows_with_the_effect() -> None:
    reps = 50
    result = hlm.power.simulate(
        logit_design(0.0),
        "passed ~ x + (1 | school_id)",
        "x",
        reps=reps,
        seed=11,
        vary={"fixed.x": [0.0, 0.3, 0.7]},
        n_jobs=2,
    )
    table = result.table
    assert list(table["method"]) == ["rows"] * 3
    assert (table["failed"] == 0).all()
    power = table["power"].to_numpy()
    assert abs(power[0] - ALPHA) <= 3 * math.sqrt(ALPHA * (1 - ALPHA) / reps)
    # Wald z of x with 300 rows: se ~ 1 / sqrt(sum p(1-p) var(x)) ~ 0.13; power ~ 0.7 at 0.3, ~1 at 0.7
    assert power[0] < power[1] < power[2]
    assert power[2] > 0.9
    np.testing.assert_allclose(table["mean_estimate"].to_numpy()[1:], [0.3, 0.7], atol=0.1)


def test_a_stata_command_must_fit_the_design_family() -> None:
    with pytest.raises(OptionError, match=r"fits binomial \(probit\) but the design.s outcome is binomial \(logit\)"):
        hlm.power.simulate(logit_design(0.5), "meprobit passed x || school_id:", "x", reps=2, seed=1)


@pytest.mark.parametrize("options", [{"test": "lrt"}, {"test": "satterthwaite"}, {"method": "sufficient"}])
def test_glmm_power_offers_the_wald_test_on_rows_only(options: dict) -> None:
    with pytest.raises(OptionError, match="Wald z test on simulated rows"):
        hlm.power.simulate(logit_design(0.5), "passed ~ x + (1 | school_id)", "x", reps=2, seed=1, **options)


def test_unknown_term_of_a_glmm_is_refused() -> None:
    with pytest.raises(OptionError, match="not a fixed effect"):
        hlm.power.simulate(logit_design(0.5), "passed ~ 1 + (1 | school_id)", "x", reps=2, seed=1)
