"""The quasi-Newton search for crossed vector effects (kb07-like design): G_f = d criterion /
d T_f against finite differences in T, the boundary (KKT) test, its restart from a point
where BFGS is stuck on a zero column, and the lower-triangular factor behind the restart."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hlm.lmm.collinear import remove_collinear
from hlm.lmm.objective import DevianceFunction
from hlm.lmm.pipeline import aggregate
from hlm.lmm.quasi_newton import _bfgs, _lower_factor, boundary_descent, canonical_signs, quasi_newton
from hlm.lmm.scaling import column_scales, standardized
from hlm.lmm.start import anova_start
from hlm.lmm.structure import build_structure
from hlm.spec import parse_model
from support import dataset

TWENTY = "rt ~ spkr*prec*load + (1+spkr+prec+load | subj) + (1+spkr+prec+load | item)"


def _standardized_devfun(formula: str, reml: bool) -> DevianceFunction:
    spec = parse_model(formula)
    agg, _ = aggregate(spec, dataset("kb07like"))
    agg, _ = remove_collinear(agg)
    struct = build_structure(agg, tuple(t.name for t in spec.random), tuple(t.cov for t in spec.random))
    return DevianceFunction.build(standardized(agg, *column_scales(agg, struct)), struct, reml)


def _theta_of(struct, lambdas) -> np.ndarray:
    return np.array([lambdas[f][r, c] for f, r, c in struct.theta_pos])


def test_covariance_gradient_matches_finite_differences_in_T():
    """tr(G_f S) is the derivative of the criterion along T_f + h S (S symmetric), computed
    here by refactoring T_f + h S with numpy's Cholesky at an interior theta."""
    devfun = _standardized_devfun(TWENTY, True)
    struct = devfun.struct
    rng = np.random.default_rng(3)
    theta = np.where(np.isfinite(struct.lower), 0.5, 0.1) + 0.05 * rng.standard_normal(struct.ntheta)
    G = devfun.derivatives(theta).cov_gradients
    for f in range(2):
        S = rng.standard_normal((4, 4))
        S = S + S.T
        lam = struct.lambdas(theta)

        def along(h: float, f: int = f, S: np.ndarray = S, lam: list = lam) -> float:
            moved = [x.copy() for x in lam]
            moved[f] = np.linalg.cholesky(lam[f] @ lam[f].T + h * S)
            return devfun(_theta_of(struct, moved))

        h = 1e-5
        fd = (along(h) - along(-h)) / (2 * h)
        assert np.sum(G[f] * S) == pytest.approx(fd, rel=1e-6, abs=1e-6)


def test_boundary_test_and_restart_from_a_stuck_zero_column():
    """BFGS started with the second column of both Lambda_f at zero keeps it there (the gradient
    over that column vanishes), stopping above the optimum; the boundary test finds a descent
    direction in T there and none at the optimum, and the search with its restart reaches the
    optimum of the ordinary start."""
    devfun = _standardized_devfun(TWENTY, True)
    struct = devfun.struct
    theta0 = anova_start(devfun.agg, struct)
    best = quasi_newton(devfun, theta0, struct)
    assert best.converged
    assert (
        boundary_descent(struct, np.array(best.theta), devfun.derivatives(np.array(best.theta)).cov_gradients) is None
    )
    stuck0 = np.where([c == 1 for _, _, c in struct.theta_pos], 0.0, theta0)
    stuck, _, _ = _bfgs(devfun, stuck0)
    assert np.all(np.array(struct.lambdas(stuck))[:, :, 1] == 0.0)
    assert devfun(stuck) > best.fmin + 0.1
    restart = boundary_descent(struct, stuck, devfun.derivatives(stuck).cov_gradients)
    assert restart is not None and devfun(restart) < devfun(stuck)
    again = quasi_newton(devfun, stuck0, struct)
    assert again.converged
    assert again.fmin <= best.fmin + 1e-8 * abs(best.fmin)


def test_failed_boundary_test_is_not_reported_converged(monkeypatch):
    """Where the restarts cannot leave a point that fails the boundary test (here: a restart
    that lands on the stuck point again), the search says so instead of 'converged'."""
    import hlm.lmm.quasi_newton as qn

    devfun = _standardized_devfun(TWENTY, True)
    struct = devfun.struct
    stuck0 = np.where([c == 1 for _, _, c in struct.theta_pos], 0.0, anova_start(devfun.agg, struct))
    stuck, _, _ = _bfgs(devfun, stuck0)
    monkeypatch.setattr(qn, "_bfgs", lambda devfun, theta0: (stuck, "success", 1))
    opt = quasi_newton(devfun, stuck0, struct)
    assert not opt.converged
    assert opt.return_code.startswith("failure")


def test_lower_factor_and_canonical_signs():
    rng = np.random.default_rng(0)
    M = rng.standard_normal((4, 6))
    L = _lower_factor(M)
    assert np.allclose(L, np.tril(L)) and np.all(np.diag(L) >= 0)
    np.testing.assert_allclose(L @ L.T, M @ M.T, atol=1e-12)
    devfun = _standardized_devfun(TWENTY, False)
    struct = devfun.struct
    theta = rng.standard_normal(struct.ntheta)
    flipped = canonical_signs(struct, theta)
    assert np.all(flipped[np.isfinite(struct.lower)] >= 0)
    for a, b in zip(struct.lambdas(theta), struct.lambdas(flipped)):
        np.testing.assert_allclose(a @ a.T, b @ b.T, atol=1e-14)
    assert devfun(flipped) == pytest.approx(devfun(theta), rel=1e-12)


def test_dense_and_blocked_derivatives_agree():
    """The dense Cholesky route (no blocked layout) gives the blocked route's criterion, gradient
    and G_f."""
    devfun = _standardized_devfun(TWENTY, False)
    dense = dataclasses.replace(devfun, blocked=None)
    theta = np.where(np.isfinite(devfun.struct.lower), 0.4, -0.05)
    a, b = devfun.derivatives(theta), dense.derivatives(theta)
    assert a.objective == pytest.approx(b.objective, rel=1e-12)
    np.testing.assert_allclose(a.gradient, b.gradient, rtol=1e-8, atol=1e-8 * np.abs(b.gradient).max())
    for x, y in zip(a.cov_gradients, b.cov_gradients):
        np.testing.assert_allclose(x, y, rtol=1e-8, atol=1e-8 * np.abs(y).max())
