"""Variance-component SEs in Stata's order, LR test vs the linear model, ICC and R^2.

Tolerances: SDs, SEs and CIs of SDs and correlations within 1e-3 relative of glmmTMB's
``*__varcomp_se.json``; the covariance of the log SDs within 2e-3 relative; LR statistics
and p-values within 1e-5 relative of ``lrtests_public.json``; ICC / share CIs within 1e-3
relative of the delta method applied to glmmTMB's covariance; R^2 equal to the row-wise
definition to 1e-10.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

import hlm
from hlm.errors import DataError
from hlm.variance_share import varcomp_table
from support import dataset, reference

VARCOMP = [
    "Dyestuff__intercept_ML",
    "Dyestuff__intercept_REML",
    "Pastes__nested_ML",
    "Hsb82__ri_ML",
    "sleepstudy__uncorr_ML",
    "sleepstudy__slope_ML",
]
Z95 = stats.norm.ppf(0.975)


def _fit_for(name: str):
    ref = reference(f"{name}__varcomp_se")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hlm.fit(ref["formula"], dataset(ref["dataset"]), reml=ref["REML"]), ref


@pytest.fixture(scope="module")
def varcomp_fits():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = _fit_for(name)
        return cache[name]

    return get


@pytest.mark.parametrize("name", VARCOMP)
def test_sd_table_matches_glmmtmb(name, varcomp_fits):
    fit, ref = varcomp_fits(name)
    table = varcomp_table(fit)
    sds = table[table["var2"].isna() & (table["group"] != "Residual")]
    assert len(sds) == len(ref["components"])
    for ours, theirs in zip(sds.itertuples(), ref["components"]):  # outermost first, slopes first
        assert ours.group == theirs["group"] and ours.var1 == theirs["term"]
        assert ours.estimate == pytest.approx(theirs["sd"], rel=1e-3)
        assert ours.std_error == pytest.approx(theirs["se_sd"], rel=1e-3)
        assert ours.conf_low == pytest.approx(theirs["ci_low"], rel=1e-3)
        assert ours.conf_high == pytest.approx(theirs["ci_high"], rel=1e-3)
    res = table[table["group"] == "Residual"].iloc[0]
    for key, col in [("sd", "estimate"), ("se_sd", "std_error"), ("ci_low", "conf_low"), ("ci_high", "conf_high")]:
        assert res[col] == pytest.approx(ref["residual"][key], rel=1e-3)
    for corr in ref.get("correlations", []):
        row = table[table["var2"].notna()].iloc[0]
        assert row.estimate == pytest.approx(corr["corr"], rel=1e-3)
        assert row.std_error == pytest.approx(corr["se_corr"], rel=1e-3)
        assert row.conf_low == pytest.approx(corr["ci_low"], rel=1e-3)
        assert row.conf_high == pytest.approx(corr["ci_high"], rel=1e-3)


def _ref_cov_log_sd(fit, ref) -> tuple[list[str], np.ndarray]:
    mat = ref["vcov_log_sd"]
    return mat["rownames"], np.array(mat["values"])


@pytest.mark.parametrize("name", ["Pastes__nested_ML", "Hsb82__ri_ML", "Dyestuff__intercept_REML"])
def test_log_sd_covariance(name, varcomp_fits):
    fit, ref = varcomp_fits(name)
    names, expected = _ref_cov_log_sd(fit, ref)
    got = fit.varcomp_vcov.loc[names, names].to_numpy()
    scale = np.sqrt(np.outer(np.diag(expected), np.diag(expected)))
    np.testing.assert_allclose(got / scale, expected / scale, atol=2e-3)


LR_CASES = [
    ("dyestuff_ML_lr_vs_linear", "chibar2_01"),
    ("hsb82_ri_ML_lr_vs_linear", "chibar2_01"),
    ("pastes_nested_ML_lr_vs_linear", "chi2"),
]


@pytest.mark.parametrize("key,stat", LR_CASES)
def test_lr_test_vs_linear_model(key, stat):
    case = reference("lrtests_public")[key]
    data = {"Yield": "Dyestuff", "mAch": "Hsb82", "strength": "Pastes"}[case["formula"].split()[0]]
    fit = hlm.fit(case["formula"], dataset(data), reml=case["REML"])
    lr = fit.lr_test_linear()
    assert lr.statistic == pytest.approx(case[stat], rel=1e-5)
    assert lr.p_value == pytest.approx(case["p"], rel=1e-5)
    assert lr.loglik0 == pytest.approx(case["logLik_linear"], rel=1e-8)
    assert (lr.distribution == "chibar2(01)") == (case["n_variance_components"] == 1)


def test_lr_test_reml_compares_reml_criteria(varcomp_fits):
    fit, ref = varcomp_fits("Dyestuff__intercept_REML")
    lr = fit.lr_test_linear()
    assert lr.statistic == pytest.approx(ref["lr_test_vs_linear_model"]["chi2"], rel=1e-5)
    assert lr.p_value == pytest.approx(ref["lr_test_vs_linear_model"]["p_chibar2_01"], rel=1e-5)


def test_icc_single_level_against_glmmtmb_delta(varcomp_fits):
    """share = v_b / (v_b + v_e); logit(share) = 2 (log sd_b - log sd_e), so its SE follows
    from glmmTMB's covariance of the log SDs."""
    fit, ref = varcomp_fits("Dyestuff__intercept_ML")
    icc = fit.icc()
    assert list(icc["level"]) == ["Batch", "Residual"]
    vb, ve = ref["components"][0]["var"], ref["residual"]["var"]
    V = np.array(ref["vcov_log_sd"]["values"])
    share = vb / (vb + ve)
    se = 2 * math.sqrt(V[0, 0] + V[1, 1] - 2 * V[0, 1])
    logit = math.log(share / (1 - share))
    lo, hi = 1 / (1 + math.exp(-(logit - Z95 * se))), 1 / (1 + math.exp(-(logit + Z95 * se)))
    row = icc.iloc[0]
    assert row["share"] == pytest.approx(share, rel=1e-4)
    assert row["icc"] == pytest.approx(share, rel=1e-4)
    assert row["share_low"] == pytest.approx(lo, rel=1e-3)
    assert row["share_high"] == pytest.approx(hi, rel=1e-3)
    assert row["variance_low"] == pytest.approx(ref["components"][0]["var_ci_low"], rel=1e-3)
    assert row["variance_high"] == pytest.approx(ref["components"][0]["var_ci_high"], rel=1e-3)
    assert icc.iloc[1]["variance_low"] == pytest.approx(ref["residual"]["var_ci_low"], rel=1e-3)
    assert np.isnan(icc.iloc[1]["icc"])


def test_icc_nested_levels(varcomp_fits):
    fit, _ = varcomp_fits("Pastes__nested_ML")
    icc = fit.icc()
    vc = fit.varcorr.set_index("group")["vcov"]
    v_cask, v_batch, v_e = vc["cask:batch"], vc["batch"], vc["Residual"]
    total = v_cask + v_batch + v_e
    assert list(icc["level"]) == ["cask:batch", "batch", "Residual"]  # innermost first
    np.testing.assert_allclose(icc["share"], [v_cask / total, v_batch / total, v_e / total], rtol=1e-10)
    assert icc["share"].sum() == pytest.approx(1.0)
    # two samples from the same cask share the batch effect too
    assert icc.iloc[0]["icc"] == pytest.approx((v_cask + v_batch) / total, rel=1e-10)
    assert icc.iloc[1]["icc"] == pytest.approx(v_batch / total, rel=1e-10)
    for r in icc.itertuples():
        assert r.share_low < r.share < r.share_high
        assert r.variance_low < r.variance < r.variance_high


def test_icc_with_random_slopes_depends_on_at(varcomp_fits):
    fit, _ = varcomp_fits("sleepstudy__slope_ML")
    vc = fit.varcorr
    s00 = vc.iloc[0]["vcov"]
    s11 = vc.iloc[1]["vcov"]
    s01 = vc.iloc[2]["vcov"]
    at0, at5 = fit.icc(), fit.icc(at={"Days": 5})
    assert at0.iloc[0]["variance"] == pytest.approx(s00, rel=1e-10)
    assert at5.iloc[0]["variance"] == pytest.approx(s00 + 2 * 5 * s01 + 25 * s11, rel=1e-10)
    assert "Days = 5" in at5.attrs["note"] and "Days = 0" in at0.attrs["note"]
    with pytest.raises(DataError, match="Dayz"):
        fit.icc(at={"Dayz": 1})


def test_r2_nakagawa_johnson(varcomp_fits):
    """Row-wise definitions: var(X beta) with n - 1, mean over rows of z' Sigma z."""
    fit, _ = varcomp_fits("sleepstudy__slope_ML")
    data = dataset("sleepstudy")
    X = np.column_stack([np.ones(len(data)), data["Days"]])
    var_f = np.var(X @ fit.fixef.to_numpy(), ddof=1)
    vc = fit.varcorr
    S = np.array([[vc.iloc[0]["vcov"], vc.iloc[2]["vcov"]], [vc.iloc[2]["vcov"], vc.iloc[1]["vcov"]]])
    var_r = np.mean(np.einsum("ij,jk,ik->i", X, S, X))
    tot = var_f + var_r + fit.sigma**2
    r2 = fit.r2()
    assert r2["marginal"] == pytest.approx(var_f / tot, rel=1e-10)
    assert r2["conditional"] == pytest.approx((var_f + var_r) / tot, rel=1e-10)


def test_boundary_component_is_held_fixed():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hlm.fit("Yield ~ 1 + (1 | Batch)", dataset("Dyestuff2"))
    assert fit.singular
    table = varcomp_table(fit)
    assert table.iloc[0]["estimate"] == 0 and np.isnan(table.iloc[0]["std_error"])
    assert np.isfinite(table.iloc[1]["std_error"])
    icc = fit.icc()
    assert icc.iloc[0]["share"] == 0 and np.isnan(icc.iloc[0]["share_low"])
    lr = fit.lr_test_linear()  # Stata: chibar2(01) = 0.00, Prob >= chibar2 = 1.0000
    assert lr.statistic == 0 and lr.p_value == 1.0
