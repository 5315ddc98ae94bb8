"""Binary and count outcomes of a design (hlm.simulate.Outcome): the draws have the law the
family and link say -- checked against the linear predictor the simulator reports
(``effects=True``) with scipy's distribution functions -- and bad specifications are one-line
errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

from hlm.errors import OptionError
from hlm.simulate import Covariate, Design, Level, Observations, Outcome, simulate


def two_level(outcome: Outcome, **kw: float) -> Design:
    return Design(
        (Level("school", n=200, sd=0.8),),
        observations=Observations(n=25),
        covariates=(Covariate("x", "Normal(0, 1)"),),
        fixed={"intercept": kw.get("intercept", -0.3), "x": 0.5},
        response="y",
        outcome=outcome,
        residual_sd=kw.get("residual_sd", 1.0),
    )


def test_eta_is_the_fixed_part_plus_the_random_intercepts() -> None:
    frame = simulate(two_level(Outcome("binomial", "logit")), seed=4, effects=True)
    assert "residual" not in frame
    np.testing.assert_allclose(frame["eta"], -0.3 + 0.5 * frame["x"] + frame["u_school"], atol=1e-12)


@pytest.mark.parametrize(
    ("link", "h"),
    [("logit", special.expit), ("probit", stats.norm.cdf), ("cloglog", lambda e: 1 - np.exp(-np.exp(e)))],
)
def test_bernoulli_draws_follow_the_inverse_link(link: str, h: object) -> None:
    frame = simulate(two_level(Outcome("binomial", link)), seed=5, effects=True)
    y, p = frame["y"].to_numpy(), h(frame["eta"].to_numpy())  # type: ignore[operator]
    assert set(np.unique(y)) <= {0, 1}
    # sum of independent Bernoulli(p_i): mean sum p_i, variance sum p_i (1 - p_i)
    z = (y.sum() - p.sum()) / math.sqrt((p * (1 - p)).sum())
    assert abs(z) < 4
    # and within bins of eta (the shape of the link, not only the overall rate)
    for lo, hi in [(-9, -1), (-1, 0), (0, 1), (1, 9)]:
        m = (frame["eta"] > lo) & (frame["eta"] <= hi)
        pm = p[m]
        assert abs(y[m].sum() - pm.sum()) < 4 * math.sqrt((pm * (1 - pm)).sum())


def test_poisson_draws_have_mean_exp_eta() -> None:
    frame = simulate(two_level(Outcome("poisson"), intercept=0.2), seed=6, effects=True)
    mu = np.exp(frame["eta"].to_numpy())
    y = frame["y"].to_numpy()
    assert y.dtype.kind == "i" and y.min() >= 0
    assert abs(y.sum() - mu.sum()) < 4 * math.sqrt(mu.sum())


def test_threshold_cuts_the_latent_gaussian_response() -> None:
    design = two_level(Outcome(threshold=0.5, latent="score"), residual_sd=2.0)
    assert (design.outcome.family, design.outcome.link) == ("binomial", "probit")
    frame = simulate(design, seed=7, effects=True)
    np.testing.assert_array_equal(frame["y"], (frame["score"] > 0.5).astype(int))
    mean = -0.3 + 0.5 * frame["x"] + frame["u_school"]
    np.testing.assert_allclose(frame["score"], mean + frame["residual"], atol=1e-12)
    p = stats.norm.cdf((mean.to_numpy() - 0.5) / 2.0)  # P(y = 1 | eta) of the probit model
    assert abs(frame["y"].sum() - p.sum()) < 4 * math.sqrt((p * (1 - p)).sum())


def test_toml_round_trip_and_set() -> None:
    seed = Design.from_toml("examples/seed.toml")
    logit = seed.set("outcome.family", "binomial").set("response", "pass")
    assert "residual_sd" not in logit.to_dict()  # a Bernoulli outcome has no residual
    assert logit.outcome == Outcome("binomial", "logit")
    assert Design.from_dict(logit.to_dict()) == logit
    cut = seed.set("response", "pass").set("outcome", {"threshold": 0.0, "latent": "perform"})
    assert cut.to_dict()["outcome"] == {"family": "binomial", "link": "probit", "threshold": 0.0, "latent": "perform"}
    assert Design.from_dict(cut.to_dict()) == cut
    assert Design.from_dict(seed.to_dict()) == seed and "outcome" not in seed.to_dict()


@pytest.mark.parametrize(
    ("outcome", "message"),
    [
        ({"family": "gamma"}, "outcome.family must be one of"),
        ({"family": "binomial", "link": "log"}, "outcome.link 'log' is not available for the binomial"),
        ({"family": "poisson", "link": "logit"}, "use log"),
        ({"family": "binomial", "link": "logit", "threshold": 0.0}, "threshold cuts a normal latent"),
        ({"latent": "z"}, "give outcome.threshold"),
        ({"famly": "binomial"}, "did you mean 'family'"),
    ],
)
def test_bad_outcomes_are_one_line_errors(outcome: dict, message: str) -> None:
    data = Design.from_toml("examples/seed.toml").to_dict() | {"outcome": outcome}
    data.pop("residual_sd")
    with pytest.raises(OptionError, match=message) as info:
        Design.from_dict(data)
    assert "\n" not in str(info.value)


def test_residual_sd_of_a_family_without_residual_is_refused() -> None:
    data = Design.from_toml("examples/seed.toml").to_dict() | {"outcome": {"family": "poisson"}}
    with pytest.raises(OptionError, match="has no residual"):
        Design.from_dict(data)


def test_poisson_mean_too_large_is_refused() -> None:
    with pytest.raises(OptionError, match="too large to draw"):
        simulate(two_level(Outcome("poisson"), intercept=60.0), seed=1)


def test_seed_pass_example_is_the_seed_cut_at_zero() -> None:
    cut = Design.from_toml("examples/seed_pass.toml")
    seed = Design.from_toml("examples/seed.toml")
    assert cut.outcome == Outcome(threshold=0.0, latent="perform") and cut.response == "pass"
    assert (cut.levels, cut.fixed, cut.residual_sd) == (seed.levels, seed.fixed, seed.residual_sd)
    small = cut.set("levels.district.n", 2)
    frame = simulate(small, seed=3)
    # the same draws as the seed's perform: the cut adds no randomness
    np.testing.assert_array_equal(frame["perform"], simulate(seed.set("levels.district.n", 2), seed=3)["perform"])
    np.testing.assert_array_equal(frame["pass"], (frame["perform"] > 0).astype(int))
