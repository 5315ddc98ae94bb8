"""GLMM result features against R (``reference/glmm_results.json``, written by
``reference/scripts/glmm_results.R`` with lme4 1.1-31 / glmmTMB 1.1.5): predictions (new levels,
offsets), Nakagawa R^2 computed by hand in R, and latent-scale ICCs from their formula."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pandas as pd
import pytest

import hlm
from hlm.errors import DataError, OptionError
from hlm.glmm import GlmmResult
from support import dataset, reference

CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


@cache
def results() -> dict:
    return reference("glmm_results")


def cbpp() -> pd.DataFrame:
    frame = dataset("cbpp")
    frame["herd"] = frame["herd"].astype(str)
    frame["period"] = pd.Categorical(frame["period"].astype(str), categories=list("1234"))
    return frame


@cache
def cbpp_fit() -> GlmmResult:
    return hlm.fit(CBPP, cbpp(), family="binomial")


@cache
def grouse_fit(model: str = "TICKS ~ YEAR + zHEIGHT + (1 | LOCATION/BROOD)") -> GlmmResult:
    frame = dataset("grouseticks")
    for col in ("BROOD", "LOCATION", "YEAR"):
        frame[col] = frame[col].astype(str)
    return hlm.fit(model, frame, family="poisson")


# ---- predict ----
def test_predict_new_and_known_levels_match_lme4() -> None:
    ref = results()["cbpp_predict"]
    new = pd.DataFrame(ref["newdata"])  # herd 99 is new: its random effect contributes 0
    fit = cbpp_fit()
    for kind in ("link", "response"):
        assert fit.predict(new, type=kind).to_numpy() == pytest.approx(ref[f"{kind}_re"], abs=1e-4)
        assert fit.predict(new, type=kind, re=False).to_numpy() == pytest.approx(ref[f"{kind}_fixed"], abs=1e-4)
    assert fit.fitted().to_numpy() == pytest.approx(ref["fitted_response"], abs=1e-4)  # probabilities
    assert fit.predict().to_numpy() == pytest.approx(ref["fitted_link"], abs=1e-4)
    with pytest.raises(DataError, match="herd"):
        fit.predict(new, new_levels="error")


@pytest.mark.parametrize(
    "model",
    [
        "incidence ~ period + offset(log(size)) + (1 | herd)",
        "mepoisson incidence i.period, exposure(size) laplace || herd:",
    ],
)
def test_predict_with_offset_on_new_rows(model: str) -> None:
    ref = results()["cbpp_offset_predict"]
    fit = hlm.fit(model, cbpp(), family="poisson")
    new = pd.DataFrame(ref["newdata"])
    assert fit.predict(new, type="response").to_numpy() == pytest.approx(ref["response_re"], rel=1e-4)
    assert fit.predict(new).to_numpy() == pytest.approx(ref["link_re"], abs=1e-4)


def test_predict_missing_value_is_nan_and_bad_type_refused() -> None:
    new = pd.DataFrame({"herd": ["1", None], "period": ["1", "2"]})
    out = cbpp_fit().predict(new)
    assert np.isfinite(out.iloc[0]) and np.isnan(out.iloc[1])
    with pytest.raises(OptionError, match="type"):
        cbpp_fit().predict(new, type="probability")  # type: ignore[arg-type]


# ---- Nakagawa R^2 ----
@pytest.mark.parametrize(
    ("key", "fit"),
    [
        ("cbpp_r2", cbpp_fit),
        ("grouse_r2", grouse_fit),
        (
            "salamanders_nb_r2",
            lambda: hlm.fit("count ~ mined + (1 | site)", dataset("Salamanders"), family="negative_binomial"),
        ),
    ],
)
def test_nakagawa_r2_matches_the_formula_in_r(key: str, fit) -> None:
    ref, r2 = results()[key], fit().r2()
    for name in ("var_fixed", "var_random", "var_distribution", "marginal", "conditional"):
        assert r2[name] == pytest.approx(ref[name], rel=2e-4), name


def slopes_data(seed: int = 3, groups: int = 40, per: int = 30) -> pd.DataFrame:
    """Random intercepts and slopes in x (x centred away from 0, so the covariance term counts)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per)
    x = rng.normal(1.0, 1.0, groups * per)
    b = rng.multivariate_normal([0.0, 0.0], [[0.5, 0.1], [0.1, 0.2]], groups)
    eta = -0.3 + 0.6 * x + b[g, 0] + b[g, 1] * x
    return pd.DataFrame(
        {
            "g": g,
            "x": x,
            "y": (rng.uniform(size=len(g)) < 1 / (1 + np.exp(-eta))).astype(int),
            "c": rng.poisson(np.exp(0.2 + 0.5 * eta)),
        }
    )


def johnson_variance(fit, data: pd.DataFrame) -> float:
    """mean over rows of z_i' Sigma z_i with z_i = (1, x_i) and Sigma from varcorr (Johnson 2014)."""
    vc = fit.varcorr
    var = dict(zip(vc["var1"][vc["var2"].isna()], vc["vcov"][vc["var2"].isna()]))
    cov = float(vc["vcov"][vc["var2"].notna()].iloc[0])
    sigma = np.array([[var["(Intercept)"], cov], [cov, var["x"]]])
    Z = np.column_stack([np.ones(len(data)), data["x"]])
    return float(np.mean(np.einsum("ij,jk,ik->i", Z, sigma, Z)))


def test_nakagawa_r2_with_random_slopes_uses_the_mean_random_variance() -> None:
    """performance::r2_nakagawa / MuMIn::r.squaredGLMM with random slopes: the random-effect variance
    is the mean over rows of z_i' Sigma z_i; written out here in numpy from the data's columns.  For
    Poisson lambda comes from the intercept-only model with the same random terms."""
    data = slopes_data()
    Z = np.column_stack([np.ones(len(data)), data["x"]])
    fit = hlm.fit("y ~ x + (1 + x | g)", data, family="binomial")
    v_r, v_f, c = johnson_variance(fit, data), float(np.var(Z @ fit.fixef.to_numpy(), ddof=1)), math.pi**2 / 3
    r2 = fit.r2()
    assert (r2["var_random"], r2["var_fixed"], r2["var_distribution"]) == pytest.approx((v_r, v_f, c), rel=1e-10)
    assert r2["marginal"] == pytest.approx(v_f / (v_f + v_r + c), rel=1e-10)
    assert r2["conditional"] == pytest.approx((v_f + v_r) / (v_f + v_r + c), rel=1e-10)
    counts = hlm.fit("c ~ x + (1 + x | g)", data, family="poisson")
    null = hlm.fit("c ~ 1 + (1 + x | g)", data, family="poisson")
    lam = math.exp(float(null.fixef.iloc[0]) + 0.5 * johnson_variance(null, data))
    r2 = counts.r2()
    assert r2["var_random"] == pytest.approx(johnson_variance(counts, data), rel=1e-10)
    assert r2["var_distribution"] == pytest.approx(math.log1p(1 / lam), rel=1e-6)  # two refits: the optimizer's tol


# ---- variance components ----
def test_varcomp_ses_match_glmmtmb_sdreport() -> None:
    """Salamanders nbinom2: the SEs of log SD and log phi equal glmmTMB's sdreport (exact Hessian by
    automatic differentiation; hlm's is the finite-difference one), the limits exp(log v -+ z se)."""
    ref = reference("Salamanders__glmm_tmb_nbinom2_ri")
    params = dict(zip(ref["optimizer"]["parameters"]["rownames"], ref["optimizer"]["parameters"]["values"]))
    fit = hlm.fit("count ~ mined + (1 | site)", dataset("Salamanders"), family="negative_binomial")
    vc = fit.varcomp().set_index("parameter")
    assert list(vc["kind"]) == ["sd", "dispersion"]
    assert vc.loc[".sig01", "se_natural"] == pytest.approx(params["theta"][1], rel=1e-3)
    assert vc.loc["phi", "se_natural"] == pytest.approx(params["betad"][1], rel=1e-3)
    assert vc.loc["phi", "estimate"] == pytest.approx(ref["dispersion"]["sigma"], rel=1e-3)
    sd, se = vc.loc[".sig01", "estimate"], vc.loc[".sig01", "se_natural"]
    assert vc.loc[".sig01", "std_error"] == pytest.approx(sd * se, rel=1e-12)
    assert (vc.loc[".sig01", "conf_low"], vc.loc[".sig01", "conf_high"]) == pytest.approx(
        (sd * math.exp(-1.959963984540054 * se), sd * math.exp(1.959963984540054 * se)), rel=1e-9
    )


def test_varcomp_random_slopes_delta_method() -> None:
    """(1 + x | g): Cov(log sd, atanh r) = J Cov(theta) J' with J by central differences of the
    map theta -> (log sd_0, atanh r, log sd_1) written out here."""
    fit = hlm.fit("y ~ x + (1 + x | g)", slopes_data(), family="binomial")

    def natural(t: np.ndarray) -> np.ndarray:
        L = np.array([[t[0], 0.0], [t[1], t[2]]])
        C = L @ L.T
        sd = np.sqrt(np.diag(C))
        return np.array([math.log(sd[0]), math.atanh(C[1, 0] / (sd[0] * sd[1])), math.log(sd[1])])

    h = 1e-6
    J = np.column_stack([(natural(fit.theta + e) - natural(fit.theta - e)) / (2 * h) for e in np.eye(3) * h])
    cov = 2 * np.linalg.inv(fit.hessian)[:3, :3]
    vc = fit.varcomp()
    assert list(vc["kind"]) == ["sd", "cor", "sd"] and vc["var2"].iloc[1] == "(Intercept)"
    assert vc["estimate"].to_numpy() == pytest.approx(fit.varcorr["sdcor"].to_numpy()[[0, 2, 1]], rel=1e-12)
    assert vc["se_natural"].to_numpy() == pytest.approx(np.sqrt(np.diag(J @ cov @ J.T)), rel=1e-6)
    r, se = vc["estimate"].iloc[1], vc["se_natural"].iloc[1]
    assert vc["std_error"].iloc[1] == pytest.approx((1 - r * r) * se, rel=1e-12)


def test_varcomp_boundary_has_no_standard_error() -> None:
    """A correlation at 1 (L's second diagonal at its bound 0) is held fixed: no SE for it, the SDs
    keep theirs."""
    fit = hlm.fit("y ~ x + (1 + x | g)", slopes_data(4, groups=30, per=25), family="binomial")
    assert fit.singular
    vc = fit.varcomp()
    assert vc["estimate"].iloc[1] == pytest.approx(1.0, abs=1e-6) and np.isnan(vc["std_error"].iloc[1])
    assert np.all(np.isfinite(vc["std_error"].to_numpy()[[0, 2]]))


def test_caterpillar_plot(tmp_path) -> None:
    """One panel per grouping factor and term, the sorted conditional modes with +-1.96 conditional
    SDs (ranef()); saved as PNG; the linear fits' other kinds are refused with the way out named."""
    fit = hlm.fit("y ~ x + (1 + x | g)", slopes_data(), family="binomial")
    fig = fit.plot(file=tmp_path / "re.png")
    assert [ax.get_title() for ax in fig.axes] == ["g: (Intercept)", "g: x"]
    re = fit.ranef()
    modes = re[re["term"] == "x"]["estimate"].sort_values().to_numpy()
    assert np.asarray(fig.axes[1].collections[-1].get_offsets())[:, 0] == pytest.approx(modes, rel=1e-12)
    assert (tmp_path / "re.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(OptionError, match="icc"):
        fit.plot("variance")


# ---- ICC ----
def test_icc_two_level_logit_and_probit() -> None:
    fit = cbpp_fit()
    s = float(fit.varcorr["vcov"].iloc[0])
    table = fit.icc()
    assert list(table["level"]) == ["herd"]
    assert table["icc"].iloc[0] == pytest.approx(s / (s + math.pi**2 / 3), rel=1e-12)
    assert table["conf_low"].iloc[0] < table["icc"].iloc[0] < table["conf_high"].iloc[0]


def three_level(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    school = np.repeat(np.arange(30), 40)
    cls = np.repeat(np.arange(120), 10)  # 4 classes per school, ids unique
    eta = -0.2 + rng.normal(0, 0.8, 30)[school] + rng.normal(0, 0.6, 120)[cls]
    y = (rng.uniform(size=1200) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"school": school, "cls": cls, "y": y})


def test_icc_nested_levels_follow_stata() -> None:
    """Stata's estat icc: school = s_school / T, cls|school = (s_school + s_cls) / T, T with pi^2/3;
    probit uses 1.  The SE is the delta method checked against a numerical derivative of the ICC."""
    data = three_level()
    for link, c in (("logit", math.pi**2 / 3), ("probit", 1.0)):
        fit = hlm.fit("y ~ 1 + (1 | school) + (1 | cls)", data, family="binomial", link=link)
        v = dict(zip(fit.varcorr["group"], fit.varcorr["vcov"]))
        T = v["school"] + v["cls"] + c
        table = fit.icc().set_index("level")
        assert list(table.index) == ["school", "cls|school"]
        assert table.loc["school", "icc"] == pytest.approx(v["school"] / T, rel=1e-12)
        assert table.loc["cls|school", "icc"] == pytest.approx((v["school"] + v["cls"]) / T, rel=1e-12)
    cov = 2 * np.linalg.inv(fit.hessian)[:2, :2]  # theta = (SD cls, SD school)
    th = fit.theta.copy()

    def school_icc(t: np.ndarray) -> float:
        return t[1] ** 2 / (t[0] ** 2 + t[1] ** 2 + 1.0)

    g = np.array([(school_icc(th + h) - school_icc(th - h)) / 2e-6 for h in np.eye(2) * 1e-6])
    assert table.loc["school", "std_error"] == pytest.approx(math.sqrt(g @ cov @ g), rel=1e-5)


def test_icc_refused_for_counts_and_slopes() -> None:
    with pytest.raises(OptionError, match="r2"):
        grouse_fit().icc()
    rng = np.random.default_rng(1)
    data = pd.DataFrame({"g": np.repeat(np.arange(20), 20), "x": rng.normal(size=400)})
    data["y"] = (rng.uniform(size=400) < 1 / (1 + np.exp(-data["x"]))).astype(int)
    fit = hlm.fit("y ~ x + (1 + x | g)", data, family="binomial")
    with pytest.raises(OptionError, match="random slopes"):
        fit.icc()


# ---- likelihood-ratio tests between GLMMs ----
def test_lrtest_fixed_effects_matches_anova() -> None:
    """cbpp: period against the intercept-only model, R's anova(m0, m1) (both at tolPwrss = 1e-12)."""
    ref = results()["cbpp_anova"]
    m0 = hlm.fit("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", cbpp(), family="binomial")
    test = hlm.lrtest(m0, cbpp_fit())
    assert (test.loglik0, test.loglik1) == pytest.approx(ref["loglik"], abs=1e-4)
    assert test.statistic == pytest.approx(ref["chisq"], abs=2e-4) and test.df == ref["df"] == 3
    assert test.p_value == pytest.approx(ref["p"], rel=1e-3) and test.distribution == "chi2(3)"


def test_compare_adds_one_variance_with_chibar2() -> None:
    """grouseticks: (1 | LOCATION) inside (1 | LOCATION/BROOD): one variance on the boundary,
    p = P(chi2_1 > x) / 2; chi2 and naive p from R's anova."""
    ref = results()["grouse_anova"]
    small = grouse_fit("TICKS ~ YEAR + zHEIGHT + (1 | LOCATION)")
    table = hlm.compare(small, grouse_fit(), names=["loc", "nested"])
    assert list(table["loglik"]) == pytest.approx(ref["loglik"], abs=1e-4)
    assert table["chisq"].iloc[1] == pytest.approx(ref["chisq"], rel=1e-5)
    assert table["p_value_chibar2"].iloc[1] == pytest.approx(0.5 * ref["p"], rel=1e-3)
    test = hlm.lrtest(small, grouse_fit())
    assert "mixture" in test.distribution and test.p_value == pytest.approx(0.5 * ref["p"], rel=1e-3)


# ---- separation ----
def separated(seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(20), 20)
    x = rng.normal(size=400)
    y = (rng.uniform(size=400) < 1 / (1 + np.exp(-(0.3 + 0.8 * x + rng.normal(0, 0.7, 20)[g])))).astype(int)
    k = (rng.uniform(size=400) < 0.2).astype(int)
    c = rng.poisson(np.exp(0.5 + 0.3 * x))
    return pd.DataFrame({"g": g, "x": x, "k": k, "y": np.where(k == 1, 1, y), "c": np.where(k == 1, 0, c), "y0": y})


@pytest.mark.parametrize(
    ("model", "family", "terms"),
    [
        ("y ~ x + k + (1 | g)", "binomial", ("k",)),  # quasi-complete: k = 1 always succeeds
        ("c ~ x + k + (1 | g)", "poisson", ("k",)),  # k = 1 always counts 0: its log rate runs to -inf
        ("y0 ~ z + (1 | g)", "binomial", ("(Intercept)", "z")),  # complete: z > 0 exactly when y0 = 1
    ],
)
def test_separation_is_detected_and_named(model: str, family: str, terms: tuple[str, ...]) -> None:
    data = separated()
    data["z"] = np.where(data["y0"] == 1, 1.0, -1.0) * np.random.default_rng(2).uniform(0.1, 1, 400)
    with pytest.warns(hlm.errors.SeparationWarning, match="separation: the estimate") as caught:
        fit = hlm.fit(model, data, family=family)
    assert len(caught) == 1 and len(str(caught[0].message).splitlines()) == 1
    assert set(terms) >= set(fit.separation) and terms[-1] in fit.separation
    assert "separation" in fit.summary() and "separation" in fit.summary(style="stata")
    assert fit.to_dict()["separation"] == list(fit.separation)


def test_no_separation_no_warning() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = hlm.fit("y0 ~ x + k + (1 | g)", separated(), family="binomial")
    assert fit.separation == ()


# ---- confidence intervals ----
def test_confint_wald_and_profile_match_lme4() -> None:
    """cbpp: R's confint(fit, method="Wald") and confint(profile(fit)) of the tight-PIRLS glmer fit;
    lme4 interpolates its profile with splines, hence 5e-4."""
    fit = cbpp_fit()
    wald = results()["cbpp_confint_wald"]
    table = fit.confint()
    assert list(table["term"]) == wald["term"]
    assert table["conf_low"].to_numpy() == pytest.approx(wald["lower"], abs=2e-3)
    assert table["conf_high"].to_numpy() == pytest.approx(wald["upper"], abs=2e-3)
    prof = results()["cbpp_confint_profile"]
    table = fit.confint(method="profile")
    assert list(table["term"]) == prof["term"]
    assert table["conf_low"].to_numpy() == pytest.approx(prof["lower"], abs=5e-4)
    assert table["conf_high"].to_numpy() == pytest.approx(prof["upper"], abs=5e-4)
    with pytest.raises(OptionError, match="method"):
        fit.confint(method="boot")  # type: ignore[arg-type]


def test_profile_sd_on_the_boundary_has_lower_limit_zero() -> None:
    rng = np.random.default_rng(5)
    data = pd.DataFrame({"g": np.repeat(np.arange(10), 30), "x": rng.normal(size=300)})
    data["y"] = (rng.uniform(size=300) < 1 / (1 + np.exp(-data["x"]))).astype(int)  # no group variance
    fit = hlm.fit("y ~ x + (1 | g)", data, family="binomial")
    sd = fit.confint(method="profile").set_index("term").loc["sd_(Intercept)|g"]
    assert sd["conf_low"] == 0.0 and sd["conf_high"] > sd["estimate"]


# ---- residuals ----
@pytest.mark.parametrize(
    ("key", "fit"),
    [
        ("cbpp", cbpp_fit),
        ("grouse", grouse_fit),
        (
            "salamanders_nb",
            lambda: hlm.fit("count ~ mined + (1 | site)", dataset("Salamanders"), family="negative_binomial"),
        ),
    ],
)
def test_residuals_match_lme4_and_glmmtmb(key: str, fit) -> None:
    ref, model = results()["residuals"][key], fit()
    for kind in ("deviance", "pearson", "response"):
        if kind in ref:
            assert model.residuals(kind).to_numpy() == pytest.approx(ref[kind], abs=1e-3), kind


def test_to_dict_varcorr_is_the_varcorr_table() -> None:
    """One JSON row per variance / covariance (SDs and correlations in sdcor), as ``varcorr``."""
    fit = cbpp_fit()
    row = fit.to_dict()["varcorr"][0]
    assert row["group"] == "herd" and row["var1"] == "(Intercept)" and row["var2"] is None
    assert row["sdcor"] == pytest.approx(math.sqrt(row["vcov"]), rel=1e-12)


def test_ranef_modes_and_conditional_sds_match_lme4_condvar() -> None:
    """cbpp: lme4's ranef(condVar = TRUE) at its estimates (README trap 4: within 1e-3)."""
    block = reference("cbpp__glmm_binomial_laplace")["ranef"][0]
    re = cbpp_fit().ranef().set_index("level")
    assert re.loc[block["levels"], "estimate"].to_numpy() == pytest.approx(block["mode"]["(Intercept)"], abs=1e-3)
    assert re.loc[block["levels"], "std_error"].to_numpy() == pytest.approx(block["cond_sd"]["(Intercept)"], abs=1e-3)
