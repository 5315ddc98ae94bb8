"""The sufficient-statistic simulator is exact: its replicates' estimates have the law of fits to
rows drawn from the model with the same layout.

The row side is written here from the model, independently of hlm.power: with the layout's
covariates fixed, each replicate draws every unit's random intercept (and slope) per level and the
residuals, forms y = X b + sum_levels (b0 + b1 x) + e row by row and fits those rows.
2,000 replicates each; two-sample Kolmogorov-Smirnov tests on the fixed effect and on the SDs.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

import hlm
from hlm.lmm.pipeline import aggregate, fit_aggregates
from hlm.lmm.result import term_covariances
from hlm.power.sufficient import build_skeleton, sufficient_reason
from hlm.simulate import Covariate, Design, Level, Observations, rng_for
from hlm.spec import parse_model

REPS = 2000


def small_design(slope: float) -> Design:
    return Design(
        (
            Level("school", n=6, sd=1.0),
            Level("class", n=3, sd=0.7, slopes={"x": slope} if slope else {}),
        ),
        observations=Observations(n="UniformInt(2, 5)"),
        residual_sd=1.2,
        covariates=(Covariate("x", "Normal(0, 1)"), Covariate("treat", "Assign(0.5)", level="school")),
        fixed={"intercept": 1.0, "x": 0.5, "treat": 0.4},
    )


def row_estimates(design: Design, frame, model: str, rng: np.random.Generator) -> np.ndarray:
    """Fixed effects and SDs of fits to rows drawn from the model given ``frame``'s covariates."""
    school = frame["school_id"].to_numpy() - 1
    klass = frame["class_id"].to_numpy() - 1
    x, treat = frame["x"].to_numpy(), frame["treat"].to_numpy()
    out = []
    for _ in range(REPS):
        y = 1.0 + 0.5 * x + 0.4 * treat + rng.standard_normal(len(x)) * 1.2
        y += (rng.standard_normal(school.max() + 1) * 1.0)[school]
        cls = design.levels[1]
        if cls.slopes:
            u = rng.standard_normal((klass.max() + 1, 2)) * [cls.sd, cls.slopes["x"]]
            y += u[klass, 0] + u[klass, 1] * x
        else:
            y += (rng.standard_normal(klass.max() + 1) * cls.sd)[klass]
        spec = parse_model(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fit_aggregates(spec, aggregate(spec, frame.assign(y=y), backend="memory")[0])
        out.append(_estimates(fit))
    return np.array(out)


def _estimates(fit) -> list[float]:
    """Fixed effects, then each term's SDs, then the residual SD."""
    sds = [np.sqrt(np.diag(c)) for c in term_covariances(fit.structure, fit.theta, fit.sigma)]
    return [*fit.profiled.beta, *np.concatenate(sds), fit.sigma]


@pytest.mark.parametrize("slope", [0.0, pytest.param(0.5, marks=pytest.mark.slow)])
def test_sufficient_statistics_match_rows(slope):
    design = small_design(slope)
    model = "y ~ x + treat + (1 | school_id) + " + ("(1 + x | class_id)" if slope else "(1 | class_id)")
    frame = hlm.simulate.simulate(design, seed=11)
    spec = parse_model(model)
    agg, _ = aggregate(spec, frame, backend="memory")
    assert sufficient_reason(design, agg) is None
    layout = build_skeleton(design, agg, frame)
    fast = []
    for r in range(REPS):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fit_aggregates(spec, layout.draw(rng_for(5, r)))
        fast.append(_estimates(fit))
    fast = np.array(fast)
    rows = row_estimates(design, frame, model, np.random.default_rng(7))
    assert fast.shape == rows.shape
    for j in range(fast.shape[1]):  # intercept, x, treat, then every SD (and the residual's)
        assert stats.ks_2samp(fast[:, j], rows[:, j]).pvalue > 0.001, j
    # and the simulated statistics are centred on the truth: the fixed effects are unbiased
    assert np.allclose(fast[:, :3].mean(axis=0), [1.0, 0.5, 0.4], atol=4 * fast[:, :3].std(axis=0) / np.sqrt(REPS))


POOLED = Design(
    (Level("school", n=5, sd=1.0), Level("class", n=3, sd=0.7), Level("student", n=8, sd=1.5)),
    observations=Observations(n="UniformInt(1, 3)"),
    residual_sd=1.2,
    covariates=(Covariate("x", "Normal(0, 1)"), Covariate("treat", "Assign(0.5)", level="school")),
    fixed={"intercept": 1.0, "x": 0.5, "treat": 0.4},
)


def test_pooled_leaf_statistics_match_rows():
    """Students pooled by count (three classes): the statistics are drawn per (class, parent)
    cell without the students; their fits have the law of fits to rows."""
    model = "y ~ x + treat + (1 | school_id/class_id/student_id)"
    frame = hlm.simulate.simulate(POOLED, seed=11)
    spec = parse_model(model)
    agg, _ = aggregate(spec, frame, backend="memory")
    layout = build_skeleton(POOLED, agg, frame)
    assert layout.pooled is not None and len(layout.pooled.classes.counts) == 3
    fast, rows = [], []
    rng = np.random.default_rng(7)
    units = [frame[f"{lv.name}_id"].to_numpy() - 1 for lv in POOLED.levels]
    x, treat = frame["x"].to_numpy(), frame["treat"].to_numpy()
    for r in range(REPS):
        y = 1.0 + 0.5 * x + 0.4 * treat + rng.standard_normal(len(x)) * 1.2
        for lv, u in zip(POOLED.levels, units):
            y += (rng.standard_normal(u.max() + 1) * lv.sd)[u]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fast.append(_estimates(fit_aggregates(spec, layout.draw(rng_for(5, r)))))
            rows.append(_estimates(fit_aggregates(spec, aggregate(spec, frame.assign(y=y), backend="memory")[0])))
    fast, rows = np.array(fast), np.array(rows)
    for j in range(fast.shape[1]):  # intercept, x, treat, the three SDs, the residual's
        assert stats.ks_2samp(fast[:, j], rows[:, j]).pvalue > 0.001, j
    assert np.allclose(fast[:, :3].mean(axis=0), [1.0, 0.5, 0.4], atol=4 * fast[:, :3].std(axis=0) / np.sqrt(REPS))


def test_models_that_the_statistics_cannot_serve_are_refused():
    design = small_design(0.5)
    frame = hlm.simulate.simulate(design, seed=1)
    for model, why in [
        ("y ~ x + treat + (1 | school_id) + (1 | class_id)", "random x"),
        ("y ~ x + (1 | school_id) + (1 + x | class_id)", "fixed effect of 'treat'"),
        ("y ~ x + treat + (1 + x | school_id)", "innermost"),
    ]:
        agg, _ = aggregate(parse_model(model), frame, backend="memory")
        assert why in sufficient_reason(design, agg)
