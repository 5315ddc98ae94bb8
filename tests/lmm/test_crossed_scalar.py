"""Crossed scalar random intercepts (the InstEval model) against lme4, and the optimiser's
bookkeeping that this path leans on: a point is evaluated once, and the convergence check's
Hessian (lme4's mixed differences) against an analytic one."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import hlm
from hlm.lmm.optimize import minimize
from hlm.lmm.start import all_from_moments
from hlm.numerics.derivatives import fd_derivatives
from support import dataset, reference

NAME = "insteval500__crossed_REML"  # InstEval's first 500 students: 13,049 rows, 500 x 1,080 x 28


def _fit() -> hlm.Fit:
    frame = dataset("insteval500").astype({"s": str, "d": str, "dept": str, "service": str})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hlm.fit("y ~ service + (1|s) + (1|d) + (1|dept:service)", frame)


@pytest.fixture(scope="module")
def fit() -> hlm.Fit:
    return _fit()


def _lme4_theta(fit: hlm.Fit) -> np.ndarray:
    """lme4's theta in hlm's order of the terms."""
    named = reference(NAME)["theta"]
    factors = [fit.aggregates.factors[f].name for f, _, _ in fit.structure.theta_pos]
    return np.array([named[f"{name}.(Intercept)"] for name in factors])


def test_criterion_at_lme4_theta_is_lme4s(fit):
    """The Schur-block evaluation (the instructors are the first factor here, students and
    dept:service the dense block) gives lme4's REML criterion at lme4's theta."""
    assert fit.devfun.scalar_crossed and all_from_moments(fit.aggregates, fit.structure)
    ref = reference(NAME)
    assert fit.devfun(_lme4_theta(fit)) == pytest.approx(ref["REMLcrit"], rel=1e-10)


def test_fit_reaches_lme4s_optimum(fit):
    ref = reference(NAME)
    assert fit.reml_criterion <= ref["REMLcrit"] * (1 + 1e-9)
    assert fit.reml_criterion == pytest.approx(ref["REMLcrit"], rel=1e-9)
    np.testing.assert_allclose(fit.theta, _lme4_theta(fit), rtol=1e-4)
    np.testing.assert_allclose(fit.fixef.to_numpy(), list(ref["fixef"].values()), rtol=1e-4)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-6)
    assert fit.converged


def test_weights_and_slopes_start_from_lme4s_theta():
    """BOBYQA's smaller first radius is kept for moment starts: a weighted fit or a random
    slope starts at theta = 1, not from moments."""
    frame = dataset("Penicillin")
    frame["w"] = np.linspace(0.5, 2.0, len(frame))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        weighted = hlm.fit("diameter ~ 1 + (1|plate) + (1|sample)", frame, weights="w")
        slope = hlm.fit("diameter ~ w + (0 + w|plate) + (1|sample)", frame)
    assert not all_from_moments(weighted.aggregates, weighted.structure)
    assert not all_from_moments(slope.aggregates, slope.structure)


def test_minimize_evaluates_each_point_once():
    """BOBYQA's best point is revisited by the checks; the criterion is computed once there."""
    seen: list[bytes] = []

    def f(x: np.ndarray) -> float:
        seen.append(np.asarray(x, dtype=float).tobytes())
        return float((x[0] - 1.0) ** 2 + 2.0 * (x[1] - 0.5) ** 2 + 0.5 * x[0] * x[1])

    opt = minimize(f, np.array([0.3, 0.3]), np.zeros(2))
    assert len(seen) == len(set(seen))
    assert opt.converged


def test_check_hessian_matches_the_analytic_one():
    """Mixed second differences by lme4's deriv12 scheme (n^2 + n evaluations), unequal
    steps, one fixed coordinate: against the analytic Hessian."""
    A = np.array([[3.0, 1.0, 0.5, 0.2], [1.0, 2.0, 0.3, 0.0], [0.5, 0.3, 4.0, 0.1], [0.2, 0.0, 0.1, 1.0]])

    def f(x: np.ndarray) -> float:
        return float(0.5 * x @ A @ x + np.sin(x[0] * x[1]) + x[2] ** 3)

    x = np.array([0.3, 0.5, 1.5, 2.0])
    calls = [0]

    def counted(v: np.ndarray) -> float:
        calls[0] += 1
        return f(v)

    free = np.array([True, True, True, False])
    g, H = fd_derivatives(counted, x, free)
    c, s = np.cos(x[0] * x[1]), np.sin(x[0] * x[1])
    exact = A.copy()
    exact[:2, :2] += [[-s * x[1] ** 2, c - s * x[0] * x[1]], [c - s * x[0] * x[1], -s * x[0] ** 2]]
    exact[2, 2] += 6.0 * x[2]
    grad = A @ x + np.array([c * x[1], c * x[0], 3.0 * x[2] ** 2, 0.0])
    np.testing.assert_allclose(g[:3], grad[:3], rtol=1e-7)
    np.testing.assert_allclose(H[:3, :3], exact[:3, :3], atol=1e-4)
    assert H[3, 3] == 1.0 and not H[3, :3].any()
    assert calls[0] == 3**2 + 3 + 1
