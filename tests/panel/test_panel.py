"""Panel estimators against tests/reference/Grunfeld__panel.json and
Grunfeld_unbalanced__xtreg.json (plm 2.6-2, with Stata xtreg conventions).

Tolerance: 1e-6 relative for every reference quantity (coefficients, SEs, variance
components, theta, R-squared, test statistics); p-values below 1e-300 are not compared.
Cluster-robust SEs of ``fe`` differ from plm's only by Stata's small-sample factor, which
counts ``_cons`` (K = k + 1): se_stata = se_plm * sqrt((N - k) / (N - k - 1)).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from hlm.errors import ColumnError, ComparisonError, DataError, FormulaError, OptionError
from hlm.panel import PanelFit, hausman, xtreg, xttest0
from hlm.panel.hausman import NOT_PD, hausman_statistic
from hlm.panel.results import stata_percentile
from support import dataset, reference

RTOL = 1e-6
MODEL = "inv value capital"
BAL, UNB = "Grunfeld", "Grunfeld_unbalanced"
REF = {BAL: "Grunfeld__panel", UNB: "Grunfeld_unbalanced__xtreg"}


def close(actual, expected, rtol=RTOL):
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float), rtol=rtol, atol=0)


_CACHE: dict = {}


def fit(name: str, estimator: str, **kw) -> PanelFit:
    key = (name, estimator, tuple(sorted(kw.items())))
    if key not in _CACHE:
        _CACHE[key] = xtreg(MODEL, dataset(name), panel="firm", estimator=estimator, **kw)
    return _CACHE[key]


def ref_coefs(entries: list[dict]) -> tuple[list[str], list[float], list[float]]:
    names = ["_cons" if e["term"] == "(Intercept)" else e["term"] for e in entries]
    return names, [e["estimate"] for e in entries], [e["se"] for e in entries]


def check_coefs(f: PanelFit, entries: list[dict], se_factor: float = 1.0) -> None:
    names, est, se = ref_coefs(entries)
    close(f.coef[names], est)
    close(f.se[names], np.asarray(se) * se_factor)


# ----------------------------------------------------------------------------- fixed effects


@pytest.mark.parametrize("name", [BAL, UNB])
def test_fe_matches_reference(name):
    ref = reference(REF[name])["fixed_effects"]
    f = fit(name, "fe")
    check_coefs(f, ref["coefficients"])
    close(f.coef["_cons"], ref["cons_stata"]["estimate"])
    close(f.se["_cons"], ref["cons_stata"]["se"])
    close([f.sigma_e, f.sigma_u, f.rho, f.ssr], [ref["sigma_e"], ref["sigma_u"], ref["rho"], ref["ssr"]])
    assert f.df_resid == ref["df_resid"]
    close([f.r2_within, f.r2_between, f.r2_overall], [ref["r2"][k] for k in ("within", "between", "overall")])
    fu = ref["F_test_all_u_i_zero"]
    close(f.f_u.stat, fu["F"])
    assert (f.f_u.df1, f.f_u.df2) == (fu["df1"], fu["df2"])
    close(f.f_u.p, fu["p"])
    for panel, u in ref["u_i_head"].items():
        close(f.u[int(panel)], u)


def test_fe_unbalanced_extras():
    ref = reference(REF[UNB])["fixed_effects"]
    f = fit(UNB, "fe")
    close(f.corr_u_xb, ref["corr_u_xb"])
    close(f.u.to_numpy(), ref["u_i"]["u"])
    assert [str(p) for p in f.u.index] == ref["u_i"]["panel"]
    ft = ref["F_test_slopes"]
    close([f.model_test.stat, f.model_test.p], [ft["F"], ft["p"]])
    assert (f.model_test.df1, f.model_test.df2) == (ft["df1"], ft["df2"])


@pytest.mark.parametrize("name", [BAL, UNB])
def test_fe_cluster_stata_small_sample(name):
    ref = reference(REF[name])
    f = fit(name, "fe", vce="cluster", cluster="firm")
    N, k = ref["nobs"], 2
    check_coefs(f, ref["fixed_effects"]["se_cluster"], se_factor=np.sqrt((N - k) / (N - k - 1)))
    assert f.df_resid == ref["n_panels"] - 1  # Stata: t with G - 1 df
    # xtreg, fe vce(robust) is vce(cluster panelvar)
    r = fit(name, "fe", vce="robust")
    close(r.vcov, f.vcov, rtol=1e-12)
    assert r.vce == "cluster" and r.cluster_var == "firm"


# ----------------------------------------------------------------------------- random effects


def test_re_balanced_matches_reference():
    ref = reference(REF[BAL])["random_effects"]
    for sa in (False, True):  # balanced: Swamy-Arora and Baltagi-Chang coincide
        f = fit(BAL, "re", sa=sa)
        check_coefs(f, ref["coefficients"])
        close([f.sigma_u, f.sigma_e, f.rho, f.theta], [ref["sigma_u"], ref["sigma_e"], ref["rho"], ref["theta"]])
        close([f.r2_within, f.r2_between, f.r2_overall], [ref["r2"][k] for k in ("within", "between", "overall")])
        close([f.model_test.stat, f.model_test.p], [ref["wald_chi2"], ref["wald_p"]])
        assert f.model_test.df1 == ref["wald_df"] and f.df_resid is None
    assert fit(BAL, "re").to_dict()["theta"] == pytest.approx(ref["theta"], rel=RTOL)


def test_default_estimator_is_random_effects_as_in_stata():
    """Stata's ``xtreg y x, i(id)`` without an estimator option is ``re`` (Swamy-Arora)."""
    ref = reference(REF[UNB])["random_effects"]["stata_default_reimpl"]
    f = xtreg(MODEL, dataset(UNB), panel="firm")
    assert f.estimator == "re"
    check_coefs(f, ref["coefficients"])
    close([f.sigma_u, f.sigma_e], [ref["sigma_u"], ref["sigma_e"]])


@pytest.mark.parametrize("sa", [True, False])
def test_re_unbalanced_matches_reference(sa):
    block = reference(REF[UNB])["random_effects"]
    ref = block if sa else block["stata_default_reimpl"]
    f = fit(UNB, "re", sa=sa)
    check_coefs(f, ref["coefficients"])
    close([f.sigma_u, f.sigma_e, f.rho], [ref["sigma_u"], ref["sigma_e"], ref["rho"]])
    close(f.theta_by_panel.to_numpy(), ref["theta"]["by_panel"]["theta"])
    t = f.theta_summary()
    close([t["min"], t["p50"], t["max"]], [ref["theta"][k] for k in ("min", "median", "max")])
    close([t["p5"], t["p95"]], [ref["theta"]["min"], ref["theta"]["max"]])  # 10 panels: Stata's 5% / 95% are min / max
    assert f.theta is None and f.to_dict()["theta"] == pytest.approx(t)
    close([f.r2_within, f.r2_between, f.r2_overall], [ref["r2"][k] for k in ("within", "between", "overall")])
    close([f.model_test.stat, f.model_test.p], [ref["wald_chi2"], ref["wald_p"]])
    if not sa:
        close(f.Tbar, ref["Tbar_harmonic"])
    assert f.re_method == ("baltagi-chang" if sa else "swamy-arora")


def test_re_cluster_is_sandwich_on_quasi_demeaned_data():
    """Independent check: statsmodels OLS on y - theta_i ybar_i with its cluster SEs
    (G/(G-1) (N-1)/(N-K), Stata's factor)."""
    sm = pytest.importorskip("statsmodels.api")
    f = fit(UNB, "re", vce="cluster", cluster="firm")
    d = dataset(UNB)
    th = fit(UNB, "re").theta_by_panel.reindex(d["firm"]).to_numpy()
    g = d.groupby("firm")[["inv", "value", "capital"]].transform("mean")
    Xs = np.column_stack([d["value"] - th * g["value"], d["capital"] - th * g["capital"], 1 - th])
    ys = d["inv"] - th * g["inv"]
    res = sm.OLS(ys.to_numpy(), Xs).fit(cov_type="cluster", cov_kwds={"groups": d["firm"].to_numpy()})
    close(f.params, res.params, rtol=1e-9)
    close(f.se.to_numpy(), res.bse, rtol=1e-9)
    close(fit(UNB, "re", vce="robust").vcov, f.vcov, rtol=1e-12)


# ----------------------------------------------------------------------------- between, pooled


def test_be_matches_reference():
    ref = reference(REF[UNB])["between_effects"]
    f = fit(UNB, "be")
    check_coefs(f, ref["coefficients"])
    close([f.sigma, f.ssr], [ref["sigma"], ref["ssr"]])
    assert f.df_resid == ref["df_resid"]
    close([f.r2_within, f.r2_between, f.r2_overall], [ref["r2"][k] for k in ("within", "between", "overall")])
    close([f.model_test.stat, f.model_test.p], [ref["F_test_slopes"]["F"], ref["F_test_slopes"]["p"]])


@pytest.mark.parametrize("name", [BAL, UNB])
def test_pooled_matches_reference(name):
    ref = reference(REF[name])["pooled_ols"]
    f = fit(name, "pooled")
    check_coefs(f, ref["coefficients"])
    close(
        [f.sigma, f.ssr, f.r2, f.adj_r2, f.r2_overall], [ref["sigma"], ref["ssr"], ref["r2"], ref["adj_r2"], ref["r2"]]
    )
    assert f.df_resid == ref["df_resid"]
    c = fit(name, "pooled", vce="cluster", cluster="firm")  # regress, vce(cluster): same factor as plm's sss
    check_coefs(c, ref["se_cluster"])


def test_pooled_robust_is_hc1():
    sm = pytest.importorskip("statsmodels.api")
    d = dataset(UNB)
    res = sm.OLS(d["inv"], sm.add_constant(d[["value", "capital"]])).fit(cov_type="HC1")
    f = fit(UNB, "pooled", vce="robust")
    close(f.se[["_cons", "value", "capital"]].to_numpy(), res.bse.to_numpy(), rtol=1e-9)


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name,sa,key", [(BAL, False, None), (UNB, True, None), (UNB, False, "stata_default_reimpl")])
def test_hausman_matches_reference(name, sa, key):
    block = reference(REF[name])["random_effects"]
    ref = (block[key] if key else block)["hausman"]
    h = hausman(fit(name, "fe"), fit(name, "re", sa=sa))
    close([h.chi2, h.p], [ref["chi2"], ref["p"]])
    assert h.df == ref["df"] and h.note is None
    assert h.to_dict()["chi2"] == pytest.approx(ref["chi2"], rel=RTOL)
    assert "Prob > chi2" in h.summary()


def test_hausman_sigmamore_rescales_consistent_covariance():
    fe, re = fit(UNB, "fe"), fit(UNB, "re")
    h = hausman(fe, re, sigmamore=True)
    d = fe.params[:2] - re.params[:2]
    Vd = fe.vcov[:2, :2] * (re.sigma / fe.sigma_e) ** 2 - re.vcov[:2, :2]
    close(h.chi2, d @ np.linalg.solve(Vd, d), rtol=1e-10)


def test_hausman_not_positive_definite_note():
    d = np.array([0.1, 0.2])
    chi2, df, p, note = hausman_statistic(d, np.diag([1.0, -0.5]))
    assert NOT_PD in note and "chi2<0" in note and np.isnan(p) and chi2 < 0
    chi2, df, p, note = hausman_statistic(d, np.diag([1.0, 0.0]))
    assert df == 1 and NOT_PD in note and chi2 == pytest.approx(0.01)


def test_hausman_refuses_bad_input():
    fe, re = fit(UNB, "fe"), fit(UNB, "re")
    with pytest.raises(ComparisonError, match="fixed-effects fit first"):
        hausman(re, fe)
    with pytest.raises(ComparisonError, match="conventional"):
        hausman(fit(UNB, "fe", vce="robust"), re)
    with pytest.raises(ComparisonError, match="different data"):
        hausman(fit(BAL, "fe"), re)


def test_xttest0_matches_reference():
    ref = reference(REF[UNB])["breusch_pagan"]
    for sa in (False, True):
        bp = xttest0(fit(UNB, "re", sa=sa))
        close(
            [bp.lm, bp.p_chi2, bp.chibar2, bp.p],
            [ref["statistic"], ref["p"], ref["statistic"], ref["p_one_sided_chibar2"]],
        )
    assert bp.var_u == pytest.approx(fit(UNB, "re", sa=True).sigma_u ** 2)
    assert "chibar2(01)" in bp.summary() and json.dumps(bp.to_dict())
    with pytest.raises(OptionError):
        xttest0(fit(UNB, "fe"))


def test_stata_percentile_rule():
    x = np.arange(1.0, 11.0)  # n = 10: P = n q / 100
    assert stata_percentile(x, 5) == 1.0 and stata_percentile(x, 50) == 5.5 and stata_percentile(x, 95) == 10.0
    assert stata_percentile(np.arange(1.0, 21.0), 5) == 1.5  # P = 1 whole: mean of x(1), x(2)


# ----------------------------------------------------------------------------- model strings, data


def test_formula_and_stata_syntax_agree_and_fe_equals_lsdv():
    d = dataset(UNB)
    a = xtreg("inv value capital i.year", d, panel="firm", estimator="fe")
    b = xtreg("inv ~ value + capital + C(year)", d, panel="firm", estimator="fe")
    close(a.params, b.params, rtol=1e-10)
    close(a.se.to_numpy(), b.se.to_numpy(), rtol=1e-10)
    # within slopes and SEs equal the dummy-variable (LSDV) regression's
    lsdv = xtreg("inv ~ value + capital + C(firm)", d, panel="firm", estimator="pooled")
    f = fit(UNB, "fe")
    close(lsdv.coef[["value", "capital"]], f.coef[["value", "capital"]], rtol=1e-8)
    close(lsdv.se[["value", "capital"]], f.se[["value", "capital"]], rtol=1e-8)


def test_time_invariant_regressor_is_omitted_in_fe():
    d = dataset(UNB)
    d["size"] = d["firm"] % 3
    f = xtreg("inv value capital size", d, panel="firm", estimator="fe")
    assert f.omitted == ("size",) and "size" not in f.terms and "(omitted)" in f.summary()
    close(f.params[:2], fit(UNB, "fe").params[:2], rtol=1e-8)
    assert "size" in xtreg("inv value capital size", d, panel="firm", estimator="re").terms


def test_missing_rows_dropped_and_sources():
    d = dataset(UNB)
    d.loc[[0, 5], "value"] = np.nan
    f = xtreg(MODEL, d, panel="firm", estimator="fe")
    assert f.n_dropped == 2 and f.nobs == 143 and f.to_dict()["n_dropped"] == 2
    assert "2 observations with missing values dropped" in f.summary()
    pl = pytest.importorskip("polars")
    g = xtreg(MODEL, pl.from_pandas(dataset(UNB)), panel="firm", estimator="re")
    close(g.params, fit(UNB, "re").params, rtol=1e-12)


def test_results_are_immutable_and_tidy():
    f = fit(UNB, "fe")
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.sigma_u = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        f.params[0] = 1.0
    t = f.tidy()
    assert list(t.columns) == ["term", "estimate", "std_error", "statistic", "p_value", "conf_low", "conf_high"]
    assert list(t.term) == ["value", "capital", "_cons"]
    from scipy import stats as sps

    crit = sps.t.ppf(0.975, f.df_resid)
    close(t.conf_high, t.estimate + crit * t.std_error, rtol=1e-12)
    d = json.loads(json.dumps(fit(UNB, "re").to_dict()))
    for key in (
        "estimator",
        "nobs",
        "ngroups",
        "coef",
        "sigma_u",
        "sigma_e",
        "rho",
        "theta",
        "r2_within",
        "r2_between",
        "r2_overall",
    ):
        assert key in d
    assert set(d["coef"][0]) >= {"term", "estimate", "se"}
    assert set(d["theta"]) == {"min", "p5", "p50", "p95", "max"}


@pytest.mark.parametrize(
    "estimator,text",
    [
        ("fe", "Fixed-effects (within) regression"),
        ("re", "Random-effects GLS regression"),
        ("be", "Between regression"),
        ("pooled", "Root MSE"),
    ],
)
def test_summary_layout(estimator, text):
    s = fit(UNB, estimator).summary()
    assert text in s and "Coefficient  Std. err." in s and "_cons" in s
    if estimator == "fe":
        assert "F test that all u_i=0: F(9, 133)" in s and "corr(u_i, Xb) = -0.2278" in s
    if estimator == "re":
        assert "theta" in s and "sigma_u" in s


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs,err,match",
    [
        (dict(estimator="gls"), OptionError, "estimator must be"),
        (dict(vce="hc3"), OptionError, "vce must be"),
        (dict(vce="cluster"), OptionError, "needs cluster="),
        (dict(cluster="firm"), OptionError, "only used with"),
        (dict(estimator="be", vce="robust"), OptionError, "be has no robust"),
        (dict(estimator="fe", sa=True), OptionError, "applies to estimator='re'"),
        (dict(vce="cluster", cluster="year"), OptionError, "not nested within clusters"),
    ],
)
def test_option_errors(kwargs, err, match):
    with pytest.raises(err, match=match):
        xtreg(MODEL, dataset(UNB), panel="firm", **kwargs)


def test_model_and_data_errors():
    d = dataset(UNB)
    with pytest.raises(FormulaError, match="constant"):
        xtreg("inv ~ 0 + value", d, panel="firm")
    with pytest.raises(FormulaError, match="constant"):
        xtreg("inv value, nocons", d, panel="firm")
    with pytest.raises(FormulaError):
        xtreg("inv value || firm:", d, panel="firm")
    with pytest.raises(ColumnError, match="did you mean"):
        xtreg("inv valu", d, panel="firm")
    with pytest.raises(DataError, match="no regressor varies within"):
        xtreg("inv ~ I(firm * 2)", d, panel="firm", estimator="fe")
    with pytest.raises(DataError, match="missing"):
        xtreg(MODEL, d.assign(value=np.nan), panel="firm")
    # pooled cluster needs no nesting
    assert fit(UNB, "pooled", vce="cluster", cluster="year").n_clusters == 19


@pytest.mark.parametrize("estimator", ["fe", "re", "be", "pooled"])
def test_html_repr(estimator):
    """The notebook table carries the fit's numbers (the Stata reference's, at 4 digits)."""
    f = fit(UNB, estimator)
    html = f._repr_html_()
    assert html.startswith("<div class='hlm-fit'>") and f.title in html
    assert html.count("<table") == {"fe": 2, "re": 3, "be": 1, "pooled": 1}[estimator]
    assert f"{f.coef['value']:.4g}" in html and f"{f.se['value']:.4g}" in html
    if estimator == "fe":
        ref = reference(REF[UNB])["fixed_effects"]
        assert f"<td>sigma_u</td><td>{ref['sigma_u']:.4g}</td>" in html and "F test that all u_i = 0" in html
