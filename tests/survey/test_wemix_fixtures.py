"""Sampling-weighted fits against WeMix 4.0.4 (reference/*__weighted_*.json) and, for integer
weights, against lme4 ML on the expanded data (duplicated rows or groups)."""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import pytest

import hlm
from hlm.survey.result import PseudoFit
from support import DATA, REFERENCE, reference

NAMES = sorted(p.stem for p in REFERENCE.glob("*__weighted_*.json"))


def frame(r: dict, csv: str) -> pd.DataFrame:
    df = pd.read_csv(DATA / csv.split("/")[-1])
    for col in r["dataset"].get("factor_columns", []):
        df[col] = df[col].astype(str)
    return df


@cache
def fitted(name: str) -> PseudoFit:
    r = reference(name)
    return hlm.fit(r["formula"], frame(r, r["dataset"]["csv"]), pweights=r["weights"], cond_weights=r["cWeights"])


@pytest.mark.parametrize("name", NAMES)
def test_estimates_match_wemix(name: str) -> None:
    r, fit = reference(name), fitted(name)
    w, pol = r["wemix"], r["polished"]
    assert fit.loglik == pytest.approx(pol["lnl"], rel=1e-9)
    assert fit.loglik == pytest.approx(w["lnl"], rel=1e-8)
    tid = fit.tidy().set_index("term")
    for f in w["fixef"]:
        assert tid.loc[f["term"], "estimate"] == pytest.approx(f["estimate"], rel=1e-6, abs=1e-6 * f["se"])
        assert tid.loc[f["term"], "std_error"] == pytest.approx(f["se"], rel=1e-6)
    vc = fit.varcorr.astype(object).where(fit.varcorr.notna(), None)
    got = {(g, a, b): float(v) for g, a, b, v in zip(vc["group"], vc.var1, vc.var2, vc.vcov)}
    for v in w["vars"]:
        assert got[(v["grp"], v["var1"], v["var2"])] == pytest.approx(
            v["vcov"], rel=1e-4, abs=1e-8 * abs(fit.sigma) ** 2
        )


@pytest.mark.parametrize("name", [n for n in NAMES if "identity" in reference(n)])
def test_integer_weights_equal_lme4_on_expanded_data(name: str) -> None:
    """Integer level-1 weights = duplicated rows; integer upper-level weights = duplicated groups."""
    r, fit = reference(name), fitted(name)
    ident = r["identity"]
    assert fit.loglik == pytest.approx(ident["logLik"], rel=1e-8)
    for f in ident["fixef"]:
        assert fit.fixef[f["term"]] == pytest.approx(f["estimate"], rel=1e-7)
    lme4 = hlm.fit(r["formula"], frame(r, ident["expanded_csv"]), reml=False)
    assert lme4.loglik == pytest.approx(ident["logLik"], rel=1e-8)


def test_model_based_se_on_request() -> None:
    r, fit = reference("sleepstudy_3lvl_wts__weighted_ri3"), fitted("sleepstudy_3lvl_wts__weighted_ri3")
    model = fit.tidy(se="model").set_index("term")["std_error"]
    for f in r["wemix"]["fixef"]:
        assert model[f["term"]] == pytest.approx(f["se_model_based"], rel=1e-4)


@pytest.mark.parametrize(
    ("how", "fixture"),
    [
        ("size", "pisa_sim__weighted_ri_pwscale_size"),
        ("effective", "pisa_sim__weighted_ri_pwscale_effective"),
        ("gk", "pisa_sim__weighted_ri_pwscale_gk"),
        ("size", "pisa_sim__weighted_rs_pwscale_size"),
    ],
)
def test_pwscale_equals_prescaled_columns(how: str, fixture: str) -> None:
    """Stata's pwscale() applied by hlm equals WeMix on the columns the fixture pre-scaled."""
    r = reference(fixture)
    fit = hlm.fit(
        r["formula"], frame(r, r["dataset"]["csv"]), pweights=["w_stu_cond", "w_sch"], cond_weights=True, pwscale=how
    )
    assert fit.loglik == pytest.approx(r["polished"]["lnl"], rel=1e-8)
    for f in r["wemix"]["fixef"]:
        assert fit.se[f["term"]] == pytest.approx(f["se"], rel=1e-4)
    assert fit.scaling.startswith(f"stata_pwscale_{how}")


def test_unit_weights_are_lme4_ml() -> None:
    df = frame(reference("sleepstudy_wts__weighted_l1_ri"), "sleepstudy_wts.csv")
    df["one"] = 1.0
    pw = hlm.fit("Reaction ~ Days + (Days | Subject)", df, pweights=["one", "one"])
    ml = hlm.fit("Reaction ~ Days + (Days | Subject)", df, reml=False)
    assert pw.loglik == pytest.approx(ml.loglik, rel=1e-9)
    np.testing.assert_allclose(pw.fixef, ml.fixef, rtol=1e-6)


@pytest.mark.parametrize(
    "name", ["sleepstudy_3lvl_wts__weighted_ri3", "sleepstudy_wts__weighted_l12_rs", "pisa_sim__weighted_rs"]
)
def test_full_sandwich_matches_the_polished_reference(name: str) -> None:
    """The full-Hessian sandwich (not WeMix's beta SEs) against the fixture's independent R one."""
    r, fit = reference(name), fitted(name)
    full = fit.tidy(se="full").set_index("term")["std_error"]
    for f in r["polished"]["fixef"]:
        assert full[f["term"]] == pytest.approx(f["se_full_sandwich"], rel=1e-4)
    vc = fit.varcorr_full_sandwich()
    got = sorted(vc.std_error)
    want = sorted(v["se_full_sandwich"] for v in r["polished"]["varcomp"])
    assert got == pytest.approx(want, rel=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_variance_component_ses_match_wemix(name: str) -> None:
    """WeMix's per-level sandwich SEs of the variances (WeMix's finite differences limit them)."""
    r, fit = reference(name), fitted(name)
    table = fit.varcorr_se()
    vc = table.astype(object).where(table.notna(), None)
    got = {(g, a, b): float(s) for g, a, b, s in zip(vc["group"], vc.var1, vc.var2, vc.std_error)}
    for v in r["wemix"]["vars"]:
        assert got[(v["grp"], v["var1"], v["var2"])] == pytest.approx(v["se"], rel=5e-4)


@pytest.mark.parametrize("name", NAMES)
def test_icc_is_wemix_s(name: str) -> None:
    assert fitted(name).icc() == pytest.approx(reference(name)["wemix"]["ICC"], rel=1e-5)


def test_wald_slopes_use_the_robust_vcov() -> None:
    r, fit = reference("pisa_sim__weighted_ri"), fitted("pisa_sim__weighted_ri")
    ses = next(f for f in r["wemix"]["fixef"] if f["term"] == "ses")
    chi2, df, _ = fit.wald_test()
    assert df == 1 and chi2 == pytest.approx((ses["estimate"] / ses["se"]) ** 2, rel=1e-5)
