"""The exact gradient of the Laplace deviance (hlm.glmm.gradient) against central differences of
the deviance itself, and the Newton stage built on it: its Hessian against glmmTMB's automatic
differentiation, and its fallback to BOBYQA where a variance is near zero."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import special

import hlm
from hlm.glmm.family import Family
from hlm.glmm.frame import glmm_frame
from hlm.glmm.gradient import LaplaceGradient
from hlm.glmm.optimize import Objective
from support import dataset, reference


def crossed(family: str, rng: np.random.Generator) -> pd.DataFrame:
    """400 rows, a correlated random slope on 15 groups crossed with 6 intercept groups."""
    g, h = rng.integers(0, 15, 400), rng.integers(0, 6, 400)
    x = rng.normal(size=400)
    eta = 0.2 + 0.5 * x + rng.normal(0, 0.8, 15)[g] + rng.normal(0, 0.5, 15)[g] * x + rng.normal(0, 0.6, 6)[h]
    y = rng.random(400) < special.expit(eta) if family == "binomial" else rng.poisson(np.exp(eta))
    return pd.DataFrame({"y": y.astype(float), "x": x, "g": g.astype(str), "h": h.astype(str)})


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_gradient_equals_central_differences(family: str) -> None:
    fam = Family.of(family, None)
    gf = glmm_frame("y ~ x + (x | g) + (1 | h)", crossed(family, np.random.default_rng(5)), fam)
    obj = Objective(fam, gf, collapse=False)
    x = np.r_[0.8, 0.1, 0.4, 0.6, 0.2, 0.5]
    grad = LaplaceGradient(obj.pls)(fam, x[:4], obj.modes(x))
    h = 1e-5
    numeric = [(obj(x + h * e) - obj(x - h * e)) / (2 * h) for e in np.eye(len(x))]
    assert grad == pytest.approx(numeric, abs=2e-5)


def test_verbagg_newton_hessian_is_glmmtmbs() -> None:
    """The crossed binary model through the Newton stage: the Wald SEs from forward differences
    of the exact gradient agree with glmmTMB's (AD Hessian, same optimum) to 2e-5 relative
    (lme4's deriv12 on the deviance: 1e-4)."""
    frame = dataset("VerbAgg").astype({"id": str, "item": str})
    ref = reference("VerbAgg__glmm_crossed_laplace")
    fit = hlm.fit(ref["formula"], frame, family="binomial")
    assert fit.optsummary.optimizer == "bobyqa+newton" and fit.converged
    tmb = ref["checks"]["glmmTMB"]
    assert fit.loglik == pytest.approx(tmb["logLik"], abs=1e-6)
    assert fit.se[list(tmb["se"])].to_numpy() == pytest.approx(list(tmb["se"].values()), rel=2e-5)


def test_variance_near_zero_falls_back_to_bobyqa() -> None:
    """Every group has the same rows, so theta's optimum is on its bound 0, where the Newton
    steps do not apply: BOBYQA finds it, and beta is the Poisson GLM's (numpy Newton here)."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=20)
    y = rng.poisson(np.exp(0.3 + 0.4 * x)).astype(float)
    frame = pd.DataFrame({"y": np.tile(y, 30), "x": np.tile(x, 30), "g": np.repeat(np.arange(30), 20).astype(str)})
    fit = hlm.fit("y ~ x + (1 | g)", frame, family="poisson")
    assert fit.optsummary.optimizer == "bobyqa"
    assert fit.optsummary.theta[0] < 1e-4
    X, beta = np.column_stack([np.ones(20), x]), np.zeros(2)
    for _ in range(50):
        mu = np.exp(X @ beta)
        beta += np.linalg.solve(X.T @ (mu[:, None] * X), X.T @ (y - mu))
    assert fit.fixef.to_numpy() == pytest.approx(beta, abs=1e-5)


def test_newton_from_a_far_rough_start_is_stationary() -> None:
    """A crossed Poisson model with an offset whose rough stage 1 stops where B is indefinite:
    stage 1 resumes and the Newton route ends where central differences of the deviance itself
    (not the exact gradient) vanish."""
    rng = np.random.default_rng(9)
    n = 3000
    g, h, x, t = rng.integers(0, 60, n), rng.integers(0, 12, n), rng.normal(size=n), rng.uniform(0.5, 3, n)
    y = rng.poisson(t * np.exp(0.2 + 0.3 * x + rng.normal(0, 0.5, 60)[g] + rng.normal(0, 0.3, 12)[h]))
    frame = pd.DataFrame({"y": y, "x": x, "g": g.astype(str), "h": h.astype(str), "t": t})
    model = "y ~ x + offset(log(t)) + (1 | g) + (1 | h)"
    fit = hlm.fit(model, frame, family="poisson")
    assert fit.optsummary.optimizer == "bobyqa+newton"
    fam = Family.of("poisson", None)
    obj = Objective(fam, glmm_frame(model, frame, fam))
    xhat, step = np.asarray(fit.optsummary.theta), 1e-4
    numeric = [(obj(xhat + step * e) - obj(xhat - step * e)) / (2 * step) for e in np.eye(len(xhat))]
    assert numeric == pytest.approx(np.zeros(len(xhat)), abs=1e-4)


@pytest.mark.parametrize("family", ["binomial", "poisson"])
@pytest.mark.parametrize("joint", [False, True])
def test_mode_jacobian_equals_central_differences_of_the_modes(family: str, joint: bool) -> None:
    """The exact d(modes)/dx that seeds PIRLS's predictor (scalar terms, canonical link) against
    central differences of the converged modes: (u) over (theta, beta), or (u, beta) over theta
    for the fast stage's joint modes."""
    fam = Family.of(family, None)
    gf = glmm_frame("y ~ x + (1 | g) + (1 | h)", crossed(family, np.random.default_rng(7)), fam)
    obj = Objective(fam, gf, collapse=False)
    theta, beta = np.r_[0.7, 0.5], np.r_[0.1, 0.4]

    def state(t: np.ndarray, b: np.ndarray) -> np.ndarray:
        m = obj.pls.modes(fam, t, b, joint=joint)
        return np.concatenate([m.u, m.beta]) if joint else m.u

    at = obj.pls.modes(fam, theta, beta, joint=joint)
    J = obj.pls.mode_jacobian(fam, theta, at.beta, at, joint)  # at the joint mode's beta with ``joint``
    x, h = (theta if joint else np.r_[theta, beta]), 1e-5
    for j, e in enumerate(np.eye(len(x))):
        up, down = x + h * e, x - h * e
        numeric = (state(up[:2], beta if joint else up[2:]) - state(down[:2], beta if joint else down[2:])) / (2 * h)
        assert J[:, j] == pytest.approx(numeric, abs=1e-6)
