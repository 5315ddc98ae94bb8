"""Does hlm match R and Stata?  Every reference fit stored in tests/reference, refitted and compared.

Each :class:`Check` is one quantity of one fixture: R's value, hlm's value, their difference and
the tolerance the test suite allows for it (the rule is the one of the test named in ``test``).
A check passes when ``|hlm - R| <= max(rel * |R|, abs)`` (pytest's ``approx``); a one-sided
check (an optimum that may be lower than R's) passes when ``hlm - R <= tolerance``.

The documentation build runs :func:`checks` on the validation page and fails when one check
fails, so the page cannot drift from the tests.  ``python docs/validation.py`` prints the failures.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

import hlm  # noqa: E402
from hlm.inference.likelihood_ratio import lr_vs_linear  # noqa: E402
from support import DATA, MIXED, REFERENCE, dataset, reference  # noqa: E402  (tests/support.py: the fixtures)

FORMULA = [  # tests/spec/test_formula_reference.py and tests/lmm/test_weights.py
    "sleepstudyF__formula_Isq_REML",
    "sleepstudyF__formula_poly_ML",
    "sleepstudyF__formula_polyraw_REML",
    "sleepstudyF__formula_scale_log_REML",
    "sleepstudyF__formula_offset_ML",
    "sleepstudyF__formula_weights_REML",
    "sleepstudyF__formula_weights_ML",
    "litters__formula_named_REML",
    "litters__formula_interact_ML",
]
KB07 = ["kb07like__crossed_slopes_ML", "kb07like__crossed_zerocorr_REML", "kb07like__crossed_maximal_REML"]
GLMM = [
    "cbpp__glmm_binomial_laplace",
    "cbpp__glmm_binomial_agq25",
    "grouseticks__glmm_poisson_nested_laplace",
    "grouseticks__glmm_poisson_crossed3_laplace",
    "Salamanders__glmm_tmb_poisson_ri",
    "Salamanders__glmm_tmb_nbinom2_ri",
    "VerbAgg__glmm_crossed_laplace",
    "seed_D5__glmm_nested4_binary_laplace",
]
VARCOMP = ["Dyestuff__intercept_ML", "Dyestuff__intercept_REML", "Pastes__nested_ML", "Hsb82__ri_ML"]
VARCOMP += ["sleepstudy__uncorr_ML", "sleepstudy__slope_ML"]
PROFILE = ["Dyestuff__intercept_ML", "Pastes__nested_ML", "sleepstudy__slope_ML", "Hsb82__ri_ML"]
FAMILY = {"binomial": "binomial", "poisson": "poisson", "nbinom2": "negative_binomial"}


@dataclass(frozen=True)
class Check:
    """One compared quantity: |hlm - R| <= max(rel |R|, abs) (one-sided: hlm - R <= it)."""

    section: str
    fixture: str
    quantity: str
    r: float
    hlm: float
    rel: float
    abs: float
    test: str
    one_sided: bool = False

    @property
    def difference(self) -> float:
        return self.hlm - self.r

    @property
    def tolerance(self) -> float:
        return max(self.rel * abs(self.r), self.abs)

    @property
    def passed(self) -> bool:
        d = self.difference
        return math.isfinite(d) and (d if self.one_sided else abs(d)) <= self.tolerance

    @property
    def rule(self) -> str:
        parts = [f"rel {self.rel:g}"] if self.rel else []
        parts += [f"abs {self.abs:.3g}"] if self.abs else []
        return ("≤ R + " if self.one_sided else "") + ", ".join(parts)


def _quiet(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular-by-design fixtures; warnings have tests of their own
        return fn(*args, **kwargs)


def _r_frame(ref: dict) -> pd.DataFrame:
    """The fixture's CSV with R's factors as categoricals in R's level order."""
    name = ref["dataset"] if isinstance(ref["dataset"], str) else ref["dataset"]["name"]
    frame = dataset(name)
    levels = {} if isinstance(ref["dataset"], str) else ref["dataset"].get("factor_levels", {})
    for col, values in levels.items():
        frame[col] = frame[col].astype(str)
        if isinstance(values, list):
            frame[col] = pd.Categorical(frame[col], categories=[str(v) for v in values])
    return frame


def _lmer_fit(name: str) -> Any:
    ref = reference(name)
    kwargs = {"weights": ref["weights"]} if ref.get("weights") else {}
    return _quiet(hlm.fit, ref["formula"], _r_frame(ref), reml=ref["REML"], **kwargs)


def lme4_checks(name: str) -> Iterator[Check]:
    """lmer fits (tests/lmm/test_fit_reference.py): objective and logLik within 1e-6 relative,
    fixed effects within 1e-3 SE, SEs within 1e-3 relative, SDs/correlations 1e-4 (relative or absolute)."""
    ref, fit = reference(name), _lmer_fit(name)
    test = "lmm/test_fit_reference.py" if name in MIXED else "spec/test_formula_reference.py"
    sd_rel, sd_abs, se_rel = 1e-4, 1e-4, 1e-3
    if ref.get("weights"):  # lme4 stops short on the flat REML surface (tests/lmm/test_weights.py says why)
        test, sd_rel, sd_abs, se_rel = "lmm/test_weights.py", 2e-4 if ref["REML"] else 1e-5, 0.0, 2e-4
    section = "lme4: linear mixed models"
    yield from _lme4_common(section, name, ref, fit, test, sd_tol=(sd_rel, sd_abs), se_rel=se_rel)
    yield Check(section, name, "logLik", ref["logLik"], fit.loglik, 1e-6, 0, test)
    if ref.get("AIC") is not None:
        yield Check(section, name, "AIC", ref["AIC"], fit.aic, 1e-6, 0, test)


def _lme4_common(
    section: str, name: str, ref: dict, fit: Any, test: str, *, sd_tol: tuple[float, float], se_rel: float
) -> Iterator[Check]:
    criterion = "REML criterion" if ref["REML"] else "deviance"
    ours = fit.reml_criterion if ref["REML"] else fit.deviance
    yield Check(section, name, criterion, ref["objective"], ours, 1e-6, 0, test)
    for row in ref["fixef"]:
        term = row["term"]
        yield Check(section, name, f"β {term}", row["estimate"], fit.fixef[term], 0, 1e-3 * row["se"], test)
        yield Check(section, name, f"SE {term}", row["se"], fit.se[term], se_rel, 0, test)
    vc = fit.varcorr
    for ours_row, theirs in zip(vc.itertuples(), ref["varcorr"]["table"]):
        what = "σ" if theirs["grp"] == "Residual" else ("corr" if theirs["var2"] else "sd")
        if what == "corr" and ref.get("weights"):
            continue  # test_weights.py compares the SDs only
        label = f"{what} {theirs['grp']}" + ("" if what == "σ" else f" {theirs['var1']}")
        label += f":{theirs['var2']}" if theirs["var2"] else ""
        yield Check(section, name, label, theirs["sdcor"], ours_row.sdcor, *sd_tol, test)


def kb07_checks(name: str) -> Iterator[Check]:
    """Crossed slopes (tests/lmm/test_engine_crossed.py): the optimum at or below lme4's, fixed effects
    within 0.02 SE, SEs within 1e-2 relative, sigma within 1e-3 relative."""
    ref = reference(name)
    fit = _quiet(hlm.fit, ref["formula"], dataset("kb07like"), reml=ref["REML"])
    section, test = "lme4: crossed random slopes", "lmm/test_engine_crossed.py"
    criterion = "REML criterion" if ref["REML"] else "deviance"
    ours = fit.reml_criterion if ref["REML"] else fit.deviance
    yield Check(section, name, criterion, ref["objective"], ours, 1e-6, 0, test, one_sided=True)
    for row in ref["fixef"]:
        term = row["term"]
        yield Check(section, name, f"β {term}", row["estimate"], fit.fixef[term], 0, 2e-2 * row["se"], test)
        yield Check(section, name, f"SE {term}", row["se"], fit.se[term], 1e-2, 0, test)
    yield Check(section, name, "σ", ref["sigma"], fit.sigma, 1e-3, 0, test)


def kb07_twenty_checks() -> Iterator[Check]:
    """The 20-theta kb07-like model fitted by lme4 here (tests/reference/scripts/kb07like_twenty.R):
    hlm's REML criterion and ML deviance at or below lme4's (1e-6 relative)."""
    name = "kb07like__crossed_twenty"
    ref = reference(name)
    section, test = "lme4: crossed random slopes", "lmm/test_engine_crossed.py"
    for reml, label in ((True, "REML"), (False, "ML")):
        fit = _quiet(hlm.fit, ref["formula"], dataset("kb07like"), reml=reml)
        ours = fit.reml_criterion if reml else fit.deviance
        yield Check(section, name, f"{label} criterion", ref[label]["objective"], ours, 1e-6, 0, test, one_sided=True)


def insteval_checks() -> Iterator[Check]:
    """InstEval's first 500 students fitted by lmer here (tests/reference/scripts/insteval_subset.R):
    REML criterion within 1e-9 relative, fixed effects and theta within 1e-4, sigma within 1e-6."""
    name = "insteval500__crossed_REML"
    ref = reference(name)
    frame = dataset("insteval500").astype({"s": str, "d": str, "dept": str, "service": str})
    fit = _quiet(hlm.fit, ref["formula"], frame)
    section, test = "lme4: crossed random intercepts", "lmm/test_crossed_scalar.py"
    yield Check(section, name, "REML criterion", ref["REMLcrit"], fit.reml_criterion, 1e-9, 0, test)
    for term, value in ref["fixef"].items():
        yield Check(section, name, f"β {term}", value, fit.fixef[term], 1e-4, 0, test)
    sds = dict(zip(fit.varcorr["group"], fit.varcorr["sdcor"]))
    for key, theta in ref["theta"].items():
        group = key.rsplit(".", 1)[0]
        yield Check(section, name, f"sd {group}", theta * ref["sigma"], sds[group], 1e-4, 0, test)
    yield Check(section, name, "σ", ref["sigma"], fit.sigma, 1e-6, 0, test)


def glmm_checks(name: str) -> Iterator[Check]:
    """GLMMs against the exact optimum (tests/glmm/test_glmm_reference.py): logLik within 1e-4,
    fixed effects within 0.01 SE, SDs within 1e-3 relative."""
    ref = reference(name)
    nagq = ref["nAGQ"] if isinstance(ref["nAGQ"], int) else 1
    fit = _quiet(hlm.fit, ref["formula"], _r_frame(ref), family=FAMILY[ref["family"]], nagq=nagq)
    section, test = "GLMMs: glmer and glmmTMB", "glmm/test_glmm_reference.py"
    checks = ref["checks"]
    se = {f["term"]: f["se"] for f in ref["fixef"]}
    sds = [sd for g in ref["varcorr"]["groups"] for sd in g["sd"]]
    if "glmmTMB" in checks:
        loglik, fixef, sds = (
            checks["glmmTMB"]["logLik"],
            checks["glmmTMB"]["fixef"],
            list(checks["glmmTMB"]["sd"].values()),
        )
    elif ref["nAGQ"] == 25:  # the exact integral at lme4's estimates; the tight refit's estimates
        loglik, fixef = checks["exact_scalar_ri"]["marginal_loglik_exact"], checks["tight_pirls_refit"]["fixef"]
    else:
        loglik, fixef = ref["logLik"], {f["term"]: f["estimate"] for f in ref["fixef"]}
    yield Check(section, name, "logLik", loglik, fit.loglik, 0, 1e-4, test)
    for term, value in fixef.items():
        yield Check(section, name, f"β {term}", value, fit.fixef[term], 0, 0.01 * se[term], test)
    for (group, term), ours, theirs in zip(zip(fit.varcorr["group"], fit.varcorr["var1"]), fit.varcorr["sdcor"], sds):
        yield Check(section, name, f"sd {group} {term}", theirs, ours, 1e-3, 0, test)


def glmm_results_checks() -> Iterator[Check]:
    """GLMM post-estimation on cbpp against R (tests/glmm/test_glmm_results.py and
    test_glmm_stata_table.py; tests/reference/scripts/glmm_results.R): Nakagawa R2 within 2e-4
    relative, the LR test's chi2 within 2e-4, Wald and profile limits within 2e-3 and 5e-4 (lme4
    interpolates its profile with splines), the GLM-only log-likelihood within 1e-6."""
    from hlm.glmm.glm import glm_loglik

    ref, name, section = reference("glmm_results"), "glmm_results", "GLMM results: lme4 and R"
    frame = dataset("cbpp")
    frame["herd"] = frame["herd"].astype(str)
    frame["period"] = pd.Categorical(frame["period"].astype(str), categories=list("1234"))
    model = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    fit = _quiet(hlm.fit, model, frame, family="binomial")
    test = "glmm/test_glmm_results.py"
    r2 = fit.r2()
    for key in ("marginal", "conditional"):
        yield Check(section, name, f"cbpp Nakagawa R2 {key}", ref["cbpp_r2"][key], r2[key], 2e-4, 0, test)
    m0 = _quiet(hlm.fit, model.replace("~ period", "~ 1"), frame, family="binomial")
    lr = hlm.lrtest(m0, fit)
    yield Check(section, name, "cbpp anova: Chisq", ref["cbpp_anova"]["chisq"], lr.statistic, 0, 2e-4, test)
    for method, tol in (("wald", 2e-3), ("profile", 5e-4)):
        limits = fit.confint(method=method).set_index("term")
        r = ref[f"cbpp_confint_{method}"]
        for term, lo, hi in zip(r["term"], r["lower"], r["upper"]):
            yield Check(section, name, f"cbpp {method} CI {term} lower", lo, limits.loc[term, "conf_low"], 0, tol, test)
            yield Check(
                section, name, f"cbpp {method} CI {term} upper", hi, limits.loc[term, "conf_high"], 0, tol, test
            )
    glm = ref["glm_loglik"]["cbpp"]
    yield Check(section, name, "cbpp GLM logLik", glm, glm_loglik(fit), 0, 1e-6, "glmm/test_glmm_stata_table.py")


def wemix_checks(name: str) -> Iterator[Check]:
    """Sampling weights against WeMix (tests/survey/test_wemix_fixtures.py): log pseudo-likelihood within
    1e-8 relative, fixed effects and robust SEs within 1e-6 relative, variances within 1e-4 relative."""
    ref = reference(name)
    frame = dataset(Path(ref["dataset"]["csv"]).stem)
    for col in ref["dataset"].get("factor_columns", []):
        frame[col] = frame[col].astype(str)
    fit = _quiet(hlm.fit, ref["formula"], frame, pweights=ref["weights"], cond_weights=ref["cWeights"])
    section, test, w = "Sampling weights: WeMix", "survey/test_wemix_fixtures.py", ref["wemix"]
    yield Check(section, name, "log pseudo-likelihood", w["lnl"], fit.loglik, 1e-8, 0, test)
    tidy = fit.tidy().set_index("term")
    for f in w["fixef"]:
        term = f["term"]
        yield Check(section, name, f"β {term}", f["estimate"], tidy.loc[term, "estimate"], 1e-6, 1e-6 * f["se"], test)
        yield Check(section, name, f"robust SE {term}", f["se"], tidy.loc[term, "std_error"], 1e-6, 0, test)
    vc = fit.varcorr.astype(object).where(fit.varcorr.notna(), None)
    got = {(g, a, b): float(v) for g, a, b, v in zip(vc.group, vc.var1, vc.var2, vc.vcov)}
    for v in w["vars"]:
        label = f"var {v['grp']}" + (f" {v['var1']}" if v["var1"] else "") + (f":{v['var2']}" if v["var2"] else "")
        ours = got[(v["grp"], v["var1"], v["var2"])]
        yield Check(section, name, label, v["vcov"], ours, 1e-4, 1e-8 * fit.sigma**2, test)


def wlogit_checks() -> Iterator[Check]:
    """The weighted logit against WeMix 4.0 (13-point AGQ) and glmer on the expanded data
    (tests/survey/test_wlogit.py): log pseudo-likelihood within 1e-9 relative, fixed effects
    within 1e-6, robust SEs within 1e-3 relative, the school variance within 1e-5 relative."""
    name, ref, test = "logit_wts__wlogit", reference("logit_wts__wlogit"), "survey/test_wlogit.py"
    frame = pd.read_csv(DATA / "logit_wts.csv")
    for case, section in (("real", "WeMix"), ("real_cw", "WeMix"), ("integer", "WeMix")):
        r = ref[case]
        fit = _quiet(
            hlm.fit, ref["formula"], frame, family="binomial", pweights=r["weights"], cond_weights=r["cWeights"]
        )
        label, sect = f"{case}: ", f"Sampling weights: weighted logit ({section})"
        yield Check(sect, name, label + "log pseudo-likelihood", r["lnl"], fit.loglik, 1e-9, 0, test)
        for f, beta, se in zip(r["fixef"], fit.beta, fit.se.to_numpy()):
            yield Check(sect, name, f"{label}β {f['term']}", f["estimate"], float(beta), 0, 1e-6, test)
            yield Check(sect, name, f"{label}robust SE {f['term']}", f["se"], float(se), 1e-3, 0, test)
        yield Check(sect, name, label + "var school", r["var_school"], fit.variances["school"], 1e-5, 0, test)
    g = ref["glmer_expanded"]
    fit = _quiet(hlm.fit, ref["formula"], frame, family="binomial", pweights=ref["integer"]["weights"])
    sect = "Sampling weights: weighted logit (glmer, expanded data)"
    yield Check(sect, name, "integer weights = duplicated rows: logLik", g["logLik"], fit.loglik, 1e-9, 0, test)


def varcomp_checks(name: str) -> Iterator[Check]:
    """Stata's random-effects table (``mixed ..., stddeviations``, computed by glmmTMB's sdreport;
    tests/inference/test_inference_varcomp.py): SDs, SEs and CI limits within 1e-3 relative."""
    ref = reference(f"{name}__varcomp_se")
    fit = _quiet(hlm.fit, ref["formula"], dataset(ref["dataset"]), reml=ref["REML"])
    table = fit.varcomp()
    section, test = "Stata's variance-component table", "inference/test_inference_varcomp.py"
    rows: list[tuple[str, dict, Any]] = []
    for comp in ref["components"]:
        sds = table[(table.kind == "sd") & (table.var1 == comp["term"])]
        row = sds[sds.group.str.split(".").str[0] == comp["grouping_factor"]].iloc[0]
        rows.append((f"sd({comp['term']}) {comp['grouping_factor']}", comp, row))
    for cor in ref.get("correlations", []):
        rows.append(("corr", {**cor, "sd": cor["corr"], "se_sd": cor["se_corr"]}, table[table.kind == "cor"].iloc[0]))
    rows.append(("sd(Residual)", ref["residual"], table[table.kind == "sigma"].iloc[0]))
    for label, theirs, ours in rows:
        yield Check(section, f"{name}__varcomp_se", f"{label} estimate", theirs["sd"], ours.estimate, 1e-3, 0, test)
        yield Check(section, f"{name}__varcomp_se", f"{label} SE", theirs["se_sd"], ours.std_error, 1e-3, 0, test)
        yield Check(section, f"{name}__varcomp_se", f"{label} CI low", theirs["ci_low"], ours.conf_low, 1e-3, 0, test)
        yield Check(
            section, f"{name}__varcomp_se", f"{label} CI high", theirs["ci_high"], ours.conf_high, 1e-3, 0, test
        )
    lr = ref.get("lr_test_vs_linear_model")
    if lr and name in ("Dyestuff__intercept_REML", "sleepstudy__slope_ML"):  # test_inference_lrtest.py
        test = lr_vs_linear(fit)
        yield Check(section, f"{name}__varcomp_se", "LR test vs linear model", lr["chi2"], test.statistic, 1e-5, 0,
                    "inference/test_inference_lrtest.py")  # fmt: skip


def profile_checks(name: str) -> Iterator[Check]:
    """lme4's ``confint(profile(fit))`` (tests/inference/test_inference_profile.py): limits within 1e-3 relative."""
    ref = reference(f"{name}__profile_ci")
    table = _lmer_fit(name).confint(method="profile").set_index("parameter")
    section, test = "Profile-likelihood intervals", "inference/test_inference_profile.py"
    for row in ref["intervals"]:
        ours = table.loc[row["parameter"]]
        for side, mine, theirs in (("lower", ours.conf_low, row["lower"]), ("upper", ours.conf_high, row["upper"])):
            yield Check(section, f"{name}__profile_ci", f"{row['parameter']} {side}", theirs, mine, 1e-3, 1e-12, test)


def lrtest_checks() -> Iterator[Check]:
    """Stata's LR test vs the linear model and lme4's ``anova`` (tests/inference/test_inference_lrtest.py):
    statistics and p-values within 1e-5 relative."""
    refs = reference("lrtests_public")
    section, test, fixture = "Likelihood-ratio tests", "inference/test_inference_lrtest.py", "lrtests_public"
    for key, data in (("dyestuff_ML_lr_vs_linear", "Dyestuff"), ("hsb82_ri_ML_lr_vs_linear", "Hsb82")):
        ref = refs[key]
        lr = lr_vs_linear(_quiet(hlm.fit, ref["formula"], dataset(data), reml=False))
        yield Check(section, fixture, f"{key}: chibar2(01)", ref["chibar2_01"], lr.statistic, 1e-5, 0, test)
        yield Check(section, fixture, f"{key}: p", ref["p"], lr.p_value, 1e-5, 0, test)
    ref = refs["hsb82_ri_vs_rs"]
    m0, m1 = (_quiet(hlm.fit, ref["formulas"][m], dataset("Hsb82"), reml=True) for m in ("m0", "m1"))
    table = hlm.compare(m0, m1, refit_ml=True)
    for ours, theirs in zip(table.itertuples(), ref["table"]):
        yield Check(section, fixture, f"anova: logLik of {theirs['npar']} parameters", theirs["logLik"], ours.loglik,
                    1e-5, 0, test)  # fmt: skip
    yield Check(section, fixture, "anova: Chisq", ref["Chisq"], table.chisq[1], 1e-5, 0, test)
    yield Check(section, fixture, "anova: p (naive chi2)", ref["p"], table.p_value[1], 1e-5, 0, test)


def panel_checks(name: str) -> Iterator[Check]:
    """Stata's xtreg (fe, re, be, pooled) as plm computes it (tests/panel/test_panel.py): every quantity
    within 1e-6 relative."""
    ref, data = reference(name), name.split("__")[0]
    section, test = "Panel estimators: xtreg", "panel/test_panel.py"
    runs = {"fe": "fixed_effects", "re": "random_effects", "pooled": "pooled_ols", "be": "between_effects"}
    for estimator, key in runs.items():
        if key not in ref:
            continue
        kwargs = {"sa": True} if estimator == "re" and data.endswith("unbalanced") else {}
        fit = hlm.xtreg("inv value capital", dataset(data), panel="firm", estimator=estimator, **kwargs)
        part = ref[key]
        for e in part["coefficients"]:
            term = "_cons" if e["term"] == "(Intercept)" else e["term"]
            yield Check(section, name, f"{estimator}: β {term}", e["estimate"], fit.coef[term], 1e-6, 0, test)
            yield Check(section, name, f"{estimator}: SE {term}", e["se"], fit.se[term], 1e-6, 0, test)
        for attr in ("sigma_u", "sigma_e", "rho", "sigma"):
            if attr in part:
                yield Check(section, name, f"{estimator}: {attr}", part[attr], getattr(fit, attr), 1e-6, 0, test)


def checks() -> list[Check]:
    """Every comparison, in the order of the page."""
    out: list[Check] = []
    for name in [*MIXED, *FORMULA]:
        out += lme4_checks(name)
    for name in KB07:
        out += kb07_checks(name)
    out += kb07_twenty_checks()
    out += insteval_checks()
    for name in GLMM:
        out += glmm_checks(name)
    out += glmm_results_checks()
    for name in sorted(p.stem for p in REFERENCE.glob("*__weighted_*.json")):
        out += wemix_checks(name)
    out += wlogit_checks()
    for name in VARCOMP:
        out += varcomp_checks(name)
    for name in PROFILE:
        out += profile_checks(name)
    out += lrtest_checks()
    for name in ("Grunfeld__panel", "Grunfeld_unbalanced__xtreg"):
        out += panel_checks(name)
    return out


def table(found: list[Check]) -> pd.DataFrame:
    """One row per check: section, fixture, quantity, R, hlm, difference, tolerance, rule, test, ok."""
    return pd.DataFrame(
        {
            "section": c.section,
            "fixture": c.fixture,
            "quantity": c.quantity,
            "R": c.r,
            "hlm": c.hlm,
            "difference": c.difference,
            "tolerance": c.tolerance,
            "rule": c.rule,
            "test": c.test,
            "ok": c.passed,
        }
        for c in found
    )


def unchecked(found: list[Check]) -> list[str]:
    """Reference files in tests/reference that no check compares."""
    covered = {c.fixture for c in found}
    stems = sorted(p.stem for p in REFERENCE.glob("*.json"))
    return [s for s in stems if s not in covered and not any(s.startswith(f"{v}__varcomp") for v in VARCOMP)]


def require_all_pass(found: list[Check]) -> None:
    """Raise AssertionError naming every check beyond its tolerance (this fails the docs build)."""
    bad = [c for c in found if not c.passed]
    if bad:
        lines = [f"{c.fixture}: {c.quantity}: R {c.r!r}, hlm {c.hlm!r}, tolerance {c.tolerance:.3g}" for c in bad]
        raise AssertionError(f"{len(bad)} reference checks fail:\n" + "\n".join(lines))


if __name__ == "__main__":
    result = checks()
    print(f"{len(result)} checks, {sum(not c.passed for c in result)} failing; unchecked files: {unchecked(result)}")
    require_all_pass(result)
