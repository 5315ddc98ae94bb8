"""hlm.study with GLMMs: a Bernoulli-logit two-level design fitted by the same model in lme4 and
Stata syntax recovers the fixed effects (coverage of the 95% Wald interval within 3 Monte Carlo
SEs of 0.95, bias within 3 SEs of 0) and the school SD; the true values of a threshold outcome
are the probit model's (the design's divided by residual_sd); models that have no true values on
the design's link scale are refused."""

from __future__ import annotations

import math

import pytest

import hlm
from hlm.errors import OptionError
from hlm.simulate import Covariate, Design, Level, Observations, Outcome
from hlm.study import Truth

REPS = 100


def logit_design() -> Design:
    return Design(
        (Level("school", n=30, sd=1.0),),
        observations=Observations(n=10),
        covariates=(Covariate("x", "Normal(0, 1)"),),
        fixed={"intercept": -0.5, "x": 0.7},
        response="passed",
        outcome=Outcome("binomial", "logit"),
    )


@pytest.fixture(scope="module")
def summary() -> object:
    result = hlm.study(logit_design(), ["passed ~ x + (1 | school_id)"], reps=REPS, seed=20261206, n_jobs=2)
    return result.summary().set_index("parameter")


def test_fixed_effects_cover_at_their_nominal_rate(summary: object) -> None:
    for name, truth in (("intercept", -0.5), ("x", 0.7)):
        row = summary.loc[name]  # type: ignore[attr-defined]
        assert row["truth"] == truth and row["n"] == REPS and row["failed"] == 0
        assert abs(row["coverage"] - 0.95) <= 3 * math.sqrt(0.95 * 0.05 / REPS)
        assert abs(row["bias"]) <= 3 * row["sd"] / math.sqrt(REPS) + 0.02  # + Laplace's small-sample bias


def test_school_sd_and_latent_icc(summary: object) -> None:
    sd = summary.loc["sd[school]"]  # type: ignore[attr-defined]
    assert sd["truth"] == 1.0
    assert abs(sd["bias"]) < 0.15  # ML shrinks SDs a little at 30 groups
    assert sd["n_ci"] > 0.9 * REPS and 0.8 <= sd["coverage"] <= 1.0
    icc = summary.loc["icc[school]"]  # type: ignore[attr-defined]
    assert icc["truth"] == pytest.approx(1.0 / (1.0 + math.pi**2 / 3))


def test_threshold_truth_is_the_probit_scale() -> None:
    design = Design(
        (Level("school", n=10, sd=3.0),),
        residual_sd=6.0,
        covariates=(Covariate("x", "Normal(0, 1)"),),
        fixed={"intercept": 1.0, "x": 2.0},
        outcome=Outcome(threshold=0.0),
    )
    truth = Truth.from_design(design)
    assert truth.fixed_truth("(Intercept)") == pytest.approx(1.0 / 6.0)
    assert truth.fixed_truth("x") == pytest.approx(2.0 / 6.0)
    assert truth.sd([0], 0) == pytest.approx(0.5)
    assert truth.icc([0], 0) == pytest.approx(0.25 / 1.25)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("meprobit passed x || school_id:", r"fits binomial \(probit\)"),
        ("xtreg re school_id", "a study fits GLMMs"),
        ("passed ~ x", "a study fits GLMMs"),
    ],
)
def test_models_without_true_values_are_refused(model: str, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        hlm.study(logit_design(), [model], reps=1, n_jobs=1)


def test_study_family_must_be_the_outcome() -> None:
    with pytest.raises(OptionError, match="must be the same"):
        hlm.study(logit_design(), ["passed ~ x + (1 | school_id)"], reps=1, n_jobs=1, link="probit")


def test_omitted_inner_levels_attenuate_a_probit_and_undefine_a_logit() -> None:
    levels = (Level("school", n=5, sd=3.0), Level("class", n=4, sd=4.0))
    cut = Design(levels, residual_sd=6.0, fixed={"intercept": 1.0}, outcome=Outcome(threshold=0.0))
    truth = Truth.from_design(cut)
    # a school-only probit model: the class effect joins the latent residual, N(0, 6^2 + 4^2)
    assert truth.glmm_scale([0]) == pytest.approx(6.0 / math.sqrt(36.0 + 16.0))
    assert truth.fixed_truth("(Intercept)") * truth.glmm_scale([0]) == pytest.approx(1.0 / math.sqrt(52.0))
    assert truth.sd([0], 0) * truth.glmm_scale([0]) == pytest.approx(3.0 / math.sqrt(52.0))
    assert truth.glmm_scale([0, 1]) == 1.0
    logit = Truth.from_design(Design(levels, fixed={"intercept": 1.0}, outcome=Outcome("binomial", "logit")))
    assert math.isnan(logit.glmm_scale([0])) and logit.glmm_scale([0, 1]) == 1.0
