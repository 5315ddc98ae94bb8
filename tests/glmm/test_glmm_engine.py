"""The GLMM engine against independent numpy computations: the fast (nagq=0) stage's
stationarity conditions and Laplace value, and the sufficient-statistics collapse (binary rows
expanded from cbpp's counts; Poisson rows sharing keys) against the uncollapsed fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import special

import hlm
from hlm.glmm.family import Family
from hlm.glmm.frame import glmm_frame
from hlm.glmm.optimize import Objective, estimate
from support import dataset

CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


def cbpp() -> pd.DataFrame:
    frame = dataset("cbpp")
    frame["herd"] = frame["herd"].astype(str)
    frame["period"] = frame["period"].astype(str)
    return frame


def binary_cbpp() -> pd.DataFrame:
    """Every animal of cbpp as one 0/1 row."""
    frame = cbpp()
    rows = [
        (h, p, v)
        for h, p, s, i in frame[["herd", "period", "size", "incidence"]].itertuples(index=False)
        for v in [1] * i + [0] * (s - i)
    ]
    return pd.DataFrame(rows, columns=["herd", "period", "sick"])


def laplace_scalar(y: np.ndarray, n: np.ndarray, X: np.ndarray, g: np.ndarray, theta: float, beta: np.ndarray):
    """numpy: conditional modes of a logit random intercept by Newton per group, and the Laplace
    -2 logLik (choose terms included)."""
    G = g.max() + 1
    u = np.zeros(G)
    xb = X @ beta
    for _ in range(100):
        mu = special.expit(xb + theta * u[g])
        grad = theta * np.bincount(g, y - n * mu, minlength=G) - u
        info = 1.0 + theta**2 * np.bincount(g, n * mu * (1 - mu), minlength=G)
        u = u + grad / info
        if np.abs(grad / info).max() < 1e-14:
            break
    mu = special.expit(xb + theta * u[g])
    info = 1.0 + theta**2 * np.bincount(g, n * mu * (1 - mu), minlength=G)
    ll = special.gammaln(n + 1) - special.gammaln(y + 1) - special.gammaln(n - y + 1)
    ll = ll + special.xlogy(y, mu) + special.xlogy(n - y, 1 - mu)
    return u, mu, -2 * ll.sum() + u @ u + np.log(info).sum()


def test_fast_stage_is_the_joint_mode() -> None:
    """nagq=0: beta and u solve the joint PIRLS equations at theta, the loglik is the Laplace
    value there, theta minimises it given beta's profile, and the result says it is the fast fit."""
    fit = hlm.fit(CBPP, cbpp(), family="binomial", nagq=0)
    f = fit.frame
    g = np.asarray(f.A0.argmax(axis=1)).ravel()
    theta, beta = float(fit.theta[0]), fit.fixef.to_numpy()
    u, mu, dev = laplace_scalar(f.y, f.n, f.X, g, theta, beta)
    assert np.abs(f.X.T @ (f.y - f.n * mu)).max() < 1e-6  # d/dbeta of -2 sum log p + |u|^2
    assert fit.loglik == pytest.approx(-dev / 2, abs=1e-8)

    def profiled(t: float) -> float:  # beta re-solved at t by damped Newton on the joint equations
        b = beta.copy()
        for _ in range(50):
            _, m, _ = laplace_scalar(f.y, f.n, f.X, g, t, b)
            w = f.n * m * (1 - m)
            b = b + np.linalg.solve(f.X.T @ (w[:, None] * f.X) * 1.0, f.X.T @ (f.y - f.n * m)) * 0.5
        return laplace_scalar(f.y, f.n, f.X, g, t, b)[2]

    assert profiled(theta) <= min(profiled(theta - 0.01), profiled(theta + 0.01))
    laplace = hlm.fit(CBPP, cbpp(), family="binomial")
    assert fit.loglik <= laplace.loglik + 1e-8
    assert abs(fit.loglik - laplace.loglik) < 0.05
    assert any("nagq=0" in note for note in fit.notes) and "nagq=0" in fit.summary()


def test_binary_rows_collapse_to_the_binomial_counts() -> None:
    """cbpp's animals as 0/1 rows collapse to herd x period counts: the fit equals the cbind one
    with the log choose(n, y) constant taken out (independent: scipy's gammaln)."""
    counts = hlm.fit(CBPP, cbpp(), family="binomial")
    binary = hlm.fit("sick ~ period + (1 | herd)", binary_cbpp(), family="binomial")
    frame = cbpp()
    choose = special.gammaln(frame["size"] + 1) - special.gammaln(frame["incidence"] + 1)
    choose -= special.gammaln(frame["size"] - frame["incidence"] + 1)
    assert binary.nobs == frame["size"].sum()
    assert binary.loglik == pytest.approx(counts.loglik - choose.sum(), abs=1e-6)
    assert binary.fixef.to_numpy() == pytest.approx(counts.fixef.to_numpy(), abs=1e-5)


@pytest.mark.parametrize(
    ("family", "model", "data", "nagq"),
    [
        ("binomial", "sick ~ period + (1 | herd)", binary_cbpp, 1),
        ("binomial", "sick ~ period + (1 | herd)", binary_cbpp, 9),
        ("poisson", "TICKS ~ YEAR + (1 | LOCATION/BROOD)", lambda: dataset("grouseticks"), 1),
    ],
)
def test_collapsed_equals_uncollapsed(family: str, model: str, data, nagq: int) -> None:
    """The deviance is the same function of the parameters with and without the collapse (to
    round-off), and so are the fits (loglik with every constant term, to 1e-8)."""
    fam = Family.of(family, None)
    frame = data()
    for col in ("YEAR", "LOCATION", "BROOD"):
        if col in frame:
            frame[col] = frame[col].astype(str)
    gf = glmm_frame(model, frame, fam)
    on, off = Objective(fam, gf, nagq), Objective(fam, gf, nagq, collapse=False)
    assert on.pls.rows.collapsed and len(on.pls.rows.y) < len(off.pls.rows.y) == len(gf.y)
    x = np.concatenate([np.full(on.ntheta, 0.8), on.beta * 0.9])
    assert on(x) == pytest.approx(off(x), abs=1e-9)
    (x_on, s_on, _), (x_off, s_off, _) = estimate(on), estimate(off)
    for x in (x_on, x_off):  # the same loglik (-deviance / 2) at either optimum
        assert on(x) / 2 == pytest.approx(off(x) / 2, abs=1e-8)
    assert s_on.fmin == pytest.approx(s_off.fmin, abs=1e-7)  # each optimum within BOBYQA's ftol 1e-8
    assert x_on == pytest.approx(x_off, abs=1e-4)


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_laplace_deviance_of_each_link(link: str) -> None:
    """The compiled kernels' Laplace -2 logLik at given (theta, beta) against scipy: each group's
    mode by a scalar minimiser of -2 log p(y, u), the curvature from lme4's expected information
    n (dmu/deta)^2 / (mu (1 - mu)) at the mode."""
    from scipy import optimize, stats

    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(12), 15)
    x = rng.normal(size=len(g))
    y = (rng.random(len(g)) < stats.norm.cdf(-0.3 + 0.6 * x + rng.normal(0, 0.7, 12)[g])).astype(float)
    frame = pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})
    fam = Family.of("binomial", link)
    obj = Objective(fam, glmm_frame("y ~ x + (1 | g)", frame, fam))
    theta, beta = 0.8, np.array([-0.2, 0.5])
    inv = {
        "logit": (special.expit, lambda e: special.expit(e) * (1 - special.expit(e))),
        "probit": (stats.norm.cdf, stats.norm.pdf),
        "cloglog": (lambda e: -np.expm1(-np.exp(e)), lambda e: np.exp(e - np.exp(e))),
    }[link]
    dev = 0.0
    for j in range(12):
        yj, eta0 = y[g == j], -0.2 + 0.5 * x[g == j]

        def d(u: float, yj: np.ndarray = yj, eta0: np.ndarray = eta0) -> float:
            mu = inv[0](eta0 + theta * u)
            return -2 * np.sum(special.xlogy(yj, mu) + special.xlogy(1 - yj, 1 - mu)) + u * u

        u = optimize.minimize_scalar(d, bounds=(-8, 8), method="bounded", options={"xatol": 1e-12}).x
        mu, dmu = inv[0](eta0 + theta * u), inv[1](eta0 + theta * u)
        dev += d(u) + np.log(1 + theta**2 * np.sum(dmu**2 / (mu * (1 - mu))))
    assert obj(np.r_[theta, beta]) == pytest.approx(dev, abs=1e-7)


def test_conditional_sds_from_the_selected_inverse() -> None:
    """Crossed terms, one with correlated effects: the conditional SDs from Takahashi's selected
    inverse equal sqrt diag(Lambda M^-1 Lambda') with M^-1 a dense numpy inverse of M = A'WA + I."""
    from hlm.glmm.kernels import weights_rows
    from hlm.glmm.laplace import family_code
    from hlm.glmm.theta import lambda_matrix

    rng = np.random.default_rng(3)
    g, h = rng.integers(0, 15, 400), rng.integers(0, 6, 400)
    x = rng.normal(size=400)
    eta = 0.2 + 0.5 * x + rng.normal(0, 0.8, 15)[g] + rng.normal(0, 0.5, 15)[g] * x + rng.normal(0, 0.6, 6)[h]
    frame = pd.DataFrame({"y": (rng.random(400) < special.expit(eta)).astype(float), "x": x, "g": g, "h": h})
    fam = Family.of("binomial", None)
    gf = glmm_frame("y ~ x + (x | g) + (1 | h)", frame.astype({"g": str, "h": str}), fam)
    obj = Objective(fam, gf, collapse=False)
    xv = np.r_[0.8, 0.1, 0.4, 0.6, 0.2, 0.5]
    modes = obj.modes(xv)
    lam = lambda_matrix(xv[:4], gf.dims, gf.blocks).toarray()
    A = gf.A0.toarray() @ lam
    w = weights_rows(*family_code(fam), gf.y, gf.n, modes.eta)
    dense = lam @ np.linalg.inv(A.T @ (w[:, None] * A) + np.eye(A.shape[1])) @ lam.T
    sd = modes.conditional_sd(xv[:4], gf.dims, gf.blocks)
    assert sd == pytest.approx(np.sqrt(np.diag(dense)), rel=1e-9)
