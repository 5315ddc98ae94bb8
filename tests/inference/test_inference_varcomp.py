"""Variance-component SEs and CIs (Stata's ``mixed`` layout) against glmmTMB's ``sdreport``.

Tolerances: SDs, SEs and CI limits within 1e-3 relative of ``*__varcomp_se.json``; the
covariance of the natural parameters within 1e-3 relative (1e-6 absolute for near-zero
entries); the Hessian agrees with a plain central-difference Hessian of the un-profiled
deviance -2 log L(beta, log sd, atanh r, log sigma) to 1e-3.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

import hlm
from hlm.inference.varcomp import varcomp, varcomp_vcov
from hlm.lmm.params import Criterion, VarParams, full_deviance
from hlm.numerics.derivatives import fd_derivatives, hessian
from support import dataset, reference

VARCOMP = [
    "Dyestuff__intercept_ML",
    "Dyestuff__intercept_REML",
    "Pastes__nested_ML",
    "Hsb82__ri_ML",
    "sleepstudy__uncorr_ML",
    "sleepstudy__slope_ML",
]


def _fit(name: str):
    ref = reference(f"{name}__varcomp_se")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hlm.fit(ref["formula"], dataset(ref["dataset"]), reml=ref["REML"])


@pytest.fixture(scope="module")
def fitted():
    cache: dict[str, object] = {}

    def get(name):
        if name not in cache:
            cache[name] = _fit(name)
        return cache[name]

    return get


def _row(table, group_factor: str, term: str):
    base = table[(table.kind == "sd") & (table.var1 == term)]
    hits = base[base.group.str.split(".").str[0] == group_factor]
    assert len(hits) == 1, (group_factor, term)
    return hits.iloc[0]


@pytest.mark.parametrize("name", VARCOMP)
def test_matches_glmmtmb(name, fitted):
    ref = reference(f"{name}__varcomp_se")
    table = varcomp(fitted(name))
    for comp in ref["components"]:
        row = _row(table, comp["grouping_factor"], comp["term"])
        assert row.estimate == pytest.approx(comp["sd"], rel=1e-3)
        assert row.std_error == pytest.approx(comp["se_sd"], rel=1e-3)
        assert row.se_natural == pytest.approx(comp["se_log_sd"], rel=1e-3)
        assert row.conf_low == pytest.approx(comp["ci_low"], rel=1e-3)
        assert row.conf_high == pytest.approx(comp["ci_high"], rel=1e-3)
    for cor in ref.get("correlations", []):
        row = table[table.kind == "cor"].iloc[0]
        assert {row.var1, row.var2} == set(cor["terms"])
        assert row.estimate == pytest.approx(cor["corr"], rel=1e-3)
        assert row.std_error == pytest.approx(cor["se_corr"], rel=1e-3)
        assert row.conf_low == pytest.approx(cor["ci_low"], rel=1e-3)
        assert row.conf_high == pytest.approx(cor["ci_high"], rel=1e-3)
    res = ref["residual"]
    row = table[table.kind == "sigma"].iloc[0]
    assert row.estimate == pytest.approx(res["sd"], rel=1e-3)
    assert row.std_error == pytest.approx(res["se_sd"], rel=1e-3)
    assert row.conf_low == pytest.approx(res["ci_low"], rel=1e-3)
    assert row.conf_high == pytest.approx(res["ci_high"], rel=1e-3)


def _ref_label(label: str) -> str:
    if label.startswith("atanh_corr"):
        return "cor"
    return label.split(":", 1)[1]


@pytest.mark.parametrize("name", ["Pastes__nested_ML", "sleepstudy__slope_ML", "Dyestuff__intercept_REML"])
def test_vcov_matches_glmmtmb(name, fitted):
    ref = reference(f"{name}__varcomp_se")
    block = ref.get("vcov_log_sd_atanh_corr") or ref["vcov_log_sd"]
    ours = varcomp_vcov(fitted(name))

    def key(label: str) -> str:
        if label.startswith("atanh"):
            return "cor"
        grp_term = label.split(":", 1)[1]
        if grp_term == "Residual":
            return "Residual"
        grp, term = grp_term.rsplit("|", 1)
        return f"{grp.split('.')[0]}|{term}"

    ours_keys = [key(c) for c in ours.columns]
    ref_keys = [key(c) for c in block["rownames"]]
    idx = [ours_keys.index(k) for k in ref_keys]
    got = ours.to_numpy()[np.ix_(idx, idx)]
    np.testing.assert_allclose(got, np.array(block["values"]), rtol=1e-3, atol=1e-6)


def test_prefers_full_information_over_beta_fixed(fitted):
    """Hsb82 separates glmmTMB's se_log_sd (beta profiled) from the beta-fixed variant."""
    ref = reference("Hsb82__ri_ML__varcomp_se")["components"][0]
    row = _row(varcomp(fitted("Hsb82__ri_ML")), "school", "(Intercept)")
    assert row.se_natural == pytest.approx(ref["se_log_sd"], rel=5e-5)
    assert abs(row.se_natural / ref["se_log_sd_beta_fixed"] - 1) > 1e-4


@pytest.mark.parametrize("name", ["sleepstudy__slope_ML", "Pastes__nested_ML"])
def test_agrees_with_fd_hessian_of_full_deviance(name, fitted):
    """Invert a Richardson central-difference Hessian of -2 log L(beta, eta) (nothing
    profiled, sigma numerical too) and compare its variance block with varcomp_vcov."""
    fit = fitted(name)
    vp = VarParams.of(fit.structure)
    p = fit.aggregates.p
    est = vp.estimates(fit.theta, fit.sigma)
    sd = np.append(vp.is_sd(), True)
    eta = np.where(sd, np.log(est), np.arctanh(np.clip(est, -0.999, 0.999)))

    def dev(x: np.ndarray) -> float:
        beta, e = x[:p], x[p:]
        sigma = math.exp(e[-1])
        rel = np.where(sd[:-1], np.exp(e[:-1]) / sigma, np.tanh(e[:-1]))
        return full_deviance(fit.devfun, beta, sigma, vp.theta_from_relative(rel))

    x0 = np.concatenate([fit.profiled.beta, eta])
    steps = np.concatenate([0.1 * fit.se.to_numpy(), np.full(len(eta), 0.01)])
    H = hessian(dev, x0, steps)
    cov = 2.0 * np.linalg.inv(H)[p:, p:]
    np.testing.assert_allclose(varcomp_vcov(fit).to_numpy(), cov, rtol=1e-3, atol=1e-7)


def test_reml_criterion_hessian_by_fd(fitted):
    """REML: the Hessian of the REML criterion in (log sd, log sigma) by plain differences."""
    fit = fitted("Dyestuff__intercept_REML")
    crit = Criterion(fit.devfun)

    def dev(x: np.ndarray) -> float:
        return crit.value(np.array([math.exp(x[0] - x[1])]), math.exp(x[1]))

    x0 = np.log([fit.varcorr.sdcor[0], fit.sigma])
    _, H = fd_derivatives(dev, x0, np.ones(2, dtype=bool))
    np.testing.assert_allclose(varcomp_vcov(fit).to_numpy(), 2.0 * np.linalg.inv(H), rtol=1e-3)


def test_boundary_component_has_no_se():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hlm.fit("Yield ~ 1 + (1 | Batch)", dataset("Dyestuff2"))
    table = varcomp(fit)
    assert np.isnan(table.std_error[0]) and np.isnan(table.conf_low[0])
    assert np.isfinite(table.std_error.iloc[-1])


def _slopes_with_zero_intercept_sd(seed: int = 10) -> pd.DataFrame:
    """40 groups of 12 in 10 clusters; random slopes only, at the cluster level."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(40), 12)
    x = rng.normal(size=len(g))
    y = 1 + 0.5 * x + rng.normal(0, 0.5, 40)[g] * x + rng.normal(0, 1, len(g))
    return pd.DataFrame({"y": y, "x": x, "g": g, "h": g // 4})


@pytest.mark.parametrize(("reml", "seed"), [(True, 10), (False, 113)])
def test_zero_sd_with_another_cholesky_root(reml, seed):
    """A zero intercept SD under a nonzero entry of Lambda: theta is not the root
    theta(log sd, atanh r) gives for the same covariance, so the theta-derivatives are
    taken there.  The Hessian equals differences of the criterion in the free natural
    parameters (log sd, atanh r, log sigma).  (Seed 10's ML fit had that shape at a local
    optimum 0.9 above the one the zero-column restart finds; seed 113's ML optimum has it.)"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hlm.fit("y ~ x + (x | h) + (1 | h:g)", _slopes_with_zero_intercept_sd(seed), reml=reml)
    vp = VarParams.of(fit.structure)
    lam = vp.term_lambda(fit.theta, [t.group for t in fit.structure.terms].index("h"))
    assert lam[0, 0] == 0.0 and lam[1, 0] != 0.0
    crit = Criterion(fit.devfun)
    free = vp.free(fit.theta)
    rel0 = vp.relative(fit.theta)
    sd = vp.is_sd()

    def dev(x: np.ndarray) -> float:
        sigma = math.exp(x[-1])
        rel = rel0.copy()
        rel[free] = np.where(sd[free], np.exp(x[:-1]) / sigma, np.tanh(x[:-1]))
        return crit.value(vp.theta_from_relative(rel), sigma)

    est = vp.estimates(fit.theta, fit.sigma)
    x0 = np.append(np.where(sd, np.log(np.maximum(est[:-1], 1e-300)), np.arctanh(est[:-1]))[free], math.log(fit.sigma))
    H = hessian(dev, x0, np.full(len(x0), 0.01))
    np.testing.assert_allclose(varcomp_vcov(fit).to_numpy(), 2.0 * np.linalg.inv(H), rtol=1e-4)
