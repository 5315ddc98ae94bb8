"""The criterion by type (hlm.power.typed) is the nested evaluator's, checked against a dense numpy
computation on the rows: log|H| and K'H^{-1}K with H = I + sum_l theta_l^2 Z_l Z_l', and the REML
criterion written out from them (lme4's formula), on balanced and unbalanced designs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import hlm.power.typed as typed
from hlm.lmm.pipeline import aggregate, fit_aggregates
from hlm.power.typed import TypedLayout
from hlm.simulate import Covariate, Design, Level, Observations, simulate
from hlm.spec import parse_model

MODEL = "y ~ tutoring + (1 | district_id/school_id/teacher_id/student_id)"


def _design(teachers: object, students: object, observations: object) -> Design:
    return Design(
        (
            Level("district", n=3, sd=1.0),
            Level("school", n=2, sd=1.5),
            Level("teacher", n=teachers, sd=1.0),
            Level("student", n=students, sd=2.0),
        ),
        observations=Observations(n=observations),
        residual_sd=3.0,
        covariates=(Covariate("tutoring", "Bernoulli(0.3)"),),
        fixed={"tutoring": 0.8},
    )


BALANCED = _design(2, 6, 2)
UNBALANCED = _design("UniformInt(1, 3)", "UniformInt(6, 8)", "UniformInt(1, 2)")


def _dense(frame, groupings: list[list[str]], theta: np.ndarray) -> tuple[float, np.ndarray, float]:
    """log|H|, K'H^{-1}K and the REML criterion from the rows; theta[i] scales the intercepts of
    the groups formed by the columns ``groupings[i]``."""
    n = len(frame)
    K = np.column_stack([np.ones(n), frame["tutoring"], frame["y"]])
    H = np.eye(n)
    for t, columns in zip(theta, groupings):
        ids = frame[columns].astype(str).agg("/".join, axis=1).to_numpy()
        H += t**2 * (ids[:, None] == ids[None, :])
    logdet = np.linalg.slogdet(H)[1]
    Q = K.T @ np.linalg.solve(H, K)
    p = 2
    beta = np.linalg.solve(Q[:p, :p], Q[:p, p])
    pwrss = Q[p, p] - Q[p, :p] @ beta
    reml = logdet + np.linalg.slogdet(Q[:p, :p])[1] + (n - p) * (1 + np.log(2 * np.pi * pwrss / (n - p)))
    return logdet, Q, reml


@pytest.mark.parametrize("design", [BALANCED, UNBALANCED], ids=["balanced", "unbalanced"])
def test_criterion_by_type_is_the_dense_one(design, monkeypatch):
    monkeypatch.setattr(typed, "MAX_ENTRIES", 10**7)  # the unbalanced chain has many paths
    spec = parse_model(MODEL)
    frame = simulate(design, seed=3)
    agg, _ = aggregate(spec, frame, backend="memory")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_aggregates(spec, agg)
    layout = TypedLayout.of(agg, fit.structure, reml=True)
    assert layout is not None
    assert (layout.ntypes.max() == 1) == (design is BALANCED)
    criterion = layout.bind(agg)
    assert criterion is not None
    groupings = [[]] * 4
    for t, f, _, _ in fit.structure.entries:
        groupings[t] = agg.factors[f].name.split(":")
    rng = np.random.default_rng(1)
    for _ in range(5):
        theta = rng.uniform(0.1, 2.0, 4)
        logdet, Q, reml = _dense(frame, groupings, theta)
        got_logdet, got_Q = criterion.terms(theta)
        assert got_logdet == pytest.approx(logdet, rel=1e-10)
        np.testing.assert_allclose(got_Q, Q, rtol=1e-9, atol=1e-9 * np.abs(Q).max())
        assert criterion(theta) == pytest.approx(reml, rel=1e-10)
        assert criterion.profiled(theta).objective == pytest.approx(reml, rel=1e-10)


def test_many_types_fall_back_to_the_per_group_recursion():
    spec = parse_model(MODEL)
    agg, _ = aggregate(spec, simulate(UNBALANCED, seed=3), backend="memory")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_aggregates(spec, agg)
    assert TypedLayout.of(agg, fit.structure, reml=True) is None  # its B's exceed MAX_ENTRIES
