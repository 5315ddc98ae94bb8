"""The lean per-replicate fit of hlm.power gives the full fit's estimate and SE, and the same
rejection decisions; the pooled leaf drawn with the statistics is the evaluator's own pooling.

The reference is hlm's full REML fit (``fit_aggregates``, checked against lme4 elsewhere) on the
same aggregates, and ``scipy.stats.norm`` for the p-values."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

import hlm
import hlm.power.simulation as simulation
from hlm.lmm.nested import leaf_classes
from hlm.lmm.pipeline import aggregate, fit_aggregates
from hlm.power.lean import LeanPlan
from hlm.power.sufficient import build_skeleton
from hlm.simulate import Covariate, Design, Level, Observations, rng_for
from hlm.spec import parse_model

NESTED = Design(
    (Level("district", n=12, sd=1.0), Level("school", n=4, sd=1.5), Level("student", n=10, sd=2.0)),
    observations=Observations(n=2),
    residual_sd=3.0,
    covariates=(Covariate("tutoring", "Bernoulli(0.2)"),),
    fixed={"tutoring": 0.8},
)
SLOPES = Design(
    (Level("school", n=25, sd=1.0), Level("class", n=4, sd=0.7, slopes={"x": 0.5})),
    observations=Observations(n="UniformInt(3, 8)"),
    residual_sd=1.2,
    covariates=(Covariate("x", "Normal(0, 1)"), Covariate("treat", "Assign(0.5)", level="school")),
    fixed={"intercept": 1.0, "x": 0.5, "treat": 0.4},
)
CASES = [
    (NESTED, "y ~ tutoring + (1 | district_id/school_id/student_id)", "tutoring"),
    (SLOPES, "y ~ x + treat + (1 | school_id) + (1 + x | class_id)", "treat"),
]


def _skeleton(design: Design, model: str):
    spec = parse_model(model)
    frame = hlm.simulate.simulate(design, seed=5)
    agg, _ = aggregate(spec, frame, backend="memory")
    return spec, agg, build_skeleton(design, agg, frame)


@pytest.mark.parametrize("design,model,term", CASES, ids=["nested-intercepts", "random-slope"])
def test_lean_estimate_and_se_are_the_full_fits(design, model, term):
    spec, _, skeleton = _skeleton(design, model)
    plan = LeanPlan.pilot(spec, skeleton.draw(rng_for(999)), term, reml=True)
    assert plan is not None
    lean_used = 0
    for r in range(30):
        agg = skeleton.draw(rng_for(r))
        lean = plan.estimate(agg)
        if lean is None:  # near a boundary: the full fit decides
            continue
        lean_used += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fit_aggregates(spec, agg)
        j = fit.aggregates.xnames.index(term)
        beta, se = fit.profiled.beta[j], math.sqrt(fit.profiled.sigma2 * fit.profiled.qxx_inv[j, j])
        assert abs(lean[1] - se) <= 1e-6 * se
        assert abs(lean[0] - beta) <= 1e-6 * max(abs(beta), se)  # z = beta / SE to 1e-6
    assert lean_used >= 25


def test_boundary_replicates_reach_the_full_fits_answer():
    """A zero variance: many replicates' optima lie on the bound.  Nested random intercepts (the
    criterion by type) snap there as the full fit does, and agree with it; the per-group
    evaluator's lean path leaves them to the full fit (None)."""
    design = NESTED.set("levels.school.sd", 0.0)
    spec, _, skeleton = _skeleton(design, CASES[0][1])
    plan = LeanPlan.pilot(spec, skeleton.draw(rng_for(999)), "tutoring", reml=True)
    assert plan is not None and plan.typed is not None  # this pilot's estimate is off the bound
    on_bound = 0
    for r in range(40):
        agg = skeleton.draw(rng_for(r))
        lean = plan.estimate(agg)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fit_aggregates(spec, agg)
        on_bound += fit.singular
        assert lean is not None
        j = fit.aggregates.xnames.index("tutoring")
        beta, se = fit.profiled.beta[j], math.sqrt(fit.profiled.sigma2 * fit.profiled.qxx_inv[j, j])
        assert abs(lean[1] - se) <= 1e-6 * se
        assert abs(lean[0] - beta) <= 1e-6 * max(abs(beta), se)  # z = beta / SE to 1e-6, as above
    assert on_bound >= 10
    per_group = replace(plan, typed=None)
    assert any(per_group.estimate(skeleton.draw(rng_for(r))) is None for r in range(20))
    res = hlm.power.simulate(design, CASES[0][1], "tutoring", reps=20, seed=4, n_jobs=1, progress=False)
    assert res.failed == 0


def test_a_pilot_on_the_bound_still_plans_nested_intercepts():
    """A pilot whose school variance is estimated at zero: with the criterion by type its
    replicates start off the bound (and snap back where their optimum is there)."""
    design = NESTED.set("levels.school.sd", 0.0)
    spec, _, skeleton = _skeleton(design, CASES[0][1])
    for seed in range(1000, 1100):
        pilot = skeleton.draw(rng_for(seed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fit_aggregates(spec, pilot).singular:
                break
    else:
        pytest.fail("no pilot on the bound")
    plan = LeanPlan.pilot(spec, pilot, "tutoring", reml=True)
    assert plan is not None and plan.typed is not None and np.all(plan.theta0 > 0)
    for r in range(20):
        agg = skeleton.draw(rng_for(r))
        lean = plan.estimate(agg)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fit_aggregates(spec, agg)
        j = fit.aggregates.xnames.index("tutoring")
        beta, se = fit.profiled.beta[j], math.sqrt(fit.profiled.sigma2 * fit.profiled.qxx_inv[j, j])
        assert lean is not None and abs(lean[1] - se) <= 1e-6 * se
        assert abs(lean[0] - beta) <= 1e-6 * max(abs(beta), se)


@pytest.mark.parametrize("design,model,term", CASES, ids=["nested-intercepts", "random-slope"])
def test_lean_and_full_power_reject_the_same_replicates(design, model, term, monkeypatch):
    kwargs = dict(effect=0.3, reps=120, seed=8, n_jobs=1, progress=False)
    lean = hlm.power.simulate(design, model, term, **kwargs)
    monkeypatch.setattr(simulation, "_plan", lambda *args: None)
    full = hlm.power.simulate(design, model, term, **kwargs)
    p_lean = np.array([row[3] for row in lean.replicates])
    p_full = np.array([row[3] for row in full.replicates])
    z_lean, z_full = stats.norm.isf(p_lean / 2), stats.norm.isf(p_full / 2)  # |beta| / SE behind each p
    assert np.allclose(z_lean, z_full, rtol=5e-6, atol=1e-7)  # beta and SE each within about 1e-6
    differ = (p_lean < 0.05) != (p_full < 0.05)
    assert np.all(np.abs(p_full[differ] - 0.05) < 1e-6)
    assert 0.1 < full.power < 0.95  # decisions of both kinds


def test_pooled_leaf_is_the_evaluators_pooling():
    """The drawn leaf arrives pooled (no groups): its layout parts are the evaluator's own pooling
    of the template, and its response column obeys the identities of sums over the same groups."""
    _, agg0, skeleton = _skeleton(*CASES[0][:2])
    agg = skeleton.draw(rng_for(3))
    leaf = agg.factors[agg.chain[0]]
    drawn, own = leaf.pooled, leaf_classes(agg0)
    assert drawn is not None and leaf.ztk is None
    for name in ("counts", "ngroups", "children"):
        np.testing.assert_array_equal(getattr(drawn, name), getattr(own, name))
    p = agg.p
    np.testing.assert_allclose(drawn.sss[:, :p, :p], own.sss[:, :p, :p], rtol=1e-12)
    np.testing.assert_allclose(drawn.sums[:, :, :p], own.sums[:, :, :p], rtol=1e-12)
    y_sums = drawn.sums[:, :, p].sum(axis=0)  # per class: sum of the groups' y sums
    assert y_sums.sum() == pytest.approx(agg.ktk[0, p], rel=1e-12)  # = sum of y (the intercept column)
    np.testing.assert_allclose(drawn.sss[:, 0, p], drawn.counts * y_sums, rtol=1e-12)  # sum n_g t_g, n_g = c
