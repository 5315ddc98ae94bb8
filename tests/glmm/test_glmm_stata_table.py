"""Stata's melogit / mepoisson / menbreg table: the numbers it shows against R's (lme4's fixed
effects and Hessian, the GLM log-likelihoods of ``glmm_results.R``), the or / irr transforms
as Stata's (exp(b), exp(b) se, exponentiated limits), and the CLI's --or / --irr."""

from __future__ import annotations

import math

import numpy as np
import pytest

import support
from glmm.test_glmm_results import cbpp_fit, grouse_fit, results
from hlm.cli import run
from hlm.errors import OptionError
from hlm.glmm.glm import glm_loglik, lr_vs_glm
from hlm.models import FittedModel
from hlm.report.stata_glmm import wald_chi2

CBPP = str(support.DATA / "cbpp.csv")
MODEL = "cbind(incidence, size - incidence) ~ factor(period) + (1 | herd)"


def _row(text: str, label: str) -> list[float]:
    line = next(ln for ln in text.splitlines() if ln.split("|")[0].strip() == label)
    return [float(v) for v in line.split("|")[1].split()]


def test_melogit_table_numbers() -> None:
    ref = support.reference("cbpp__glmm_binomial_laplace")
    fit = cbpp_fit()
    assert isinstance(fit, FittedModel)
    text = fit.summary(style="stata")
    assert text.splitlines()[0].startswith("Mixed-effects binomial regression")
    assert "Integration method: laplace" in text and "Group variable: herd" in text
    tmb = ref["checks"]["glmmTMB"]  # the exact Laplace optimum and its AD-Hessian SEs
    for term, value in tmb["fixef"].items():
        est, se, z, p, lo, hi = _row(text, term if term != "(Intercept)" else "_cons")
        assert est == pytest.approx(value, abs=2e-6 + 0.001 * tmb["se"][term])
        assert se == pytest.approx(tmb["se"][term], rel=1e-3) and z == pytest.approx(value / tmb["se"][term], abs=0.01)
        assert lo == pytest.approx(value - 1.959964 * tmb["se"][term], abs=0.002 * tmb["se"][term])
    # var(_cons): delta method 2 theta SE(theta), SE(theta) from glmer's finite-difference Hessian
    H = np.asarray(ref["optimizer"]["hessian"]["values"], dtype=float)
    theta = ref["theta"]["herd.(Intercept)"]
    se_var = 2 * theta * math.sqrt(2 * np.linalg.inv(H)[0, 0])
    var, se, lo, hi = _row(text, "var(_cons)")
    assert var == pytest.approx(theta**2, rel=2e-3) and se == pytest.approx(se_var, rel=1e-2)
    assert lo == pytest.approx(var * math.exp(-1.959964 * se / var), rel=1e-5)
    # Wald chi2 of the three period effects, and the LR test against R's glm
    chi2, df, _ = wald_chi2(fit)
    b = np.array(list(tmb["fixef"].values())[1:])  # at the exact optimum, with hlm's own vcov
    assert df == 3 and chi2 == pytest.approx(b @ np.linalg.solve(fit.vcov.to_numpy()[1:, 1:], b), rel=1e-4)
    b = np.array([f["estimate"] for f in ref["fixef"][1:]])  # glmer's, off by its PIRLS tolerance (README 4, 5)
    V = np.asarray(ref["vcov_fixef"]["values"], dtype=float)[1:, 1:]
    assert chi2 == pytest.approx(b @ np.linalg.solve(V, b), rel=3e-2)
    glm = results()["glm_loglik"]["cbpp"]
    assert glm_loglik(fit) == pytest.approx(glm, abs=1e-6)
    lr = lr_vs_glm(fit)
    assert lr.distribution == "chibar2(01)" and lr.statistic == pytest.approx(2 * (fit.loglik - glm), abs=1e-6)
    assert f"LR test vs. binomial model: chibar2(01) = {lr.statistic:.2f}" in text


def test_odds_ratios_are_stata_transforms() -> None:
    fit = cbpp_fit()
    plain, odds = fit.summary(style="stata"), fit.summary(style="stata", odds_ratios=True)
    assert "Odds Ratio" in odds
    b, se, z, p, lo, hi = _row(plain, "period2")
    ob, ose, oz, op, olo, ohi = _row(odds, "period2")
    assert ob == pytest.approx(math.exp(b), rel=1e-6) and ose == pytest.approx(math.exp(b) * se, rel=1e-5)
    assert (oz, op) == (z, p) and olo == pytest.approx(math.exp(lo), rel=1e-5)
    with pytest.raises(OptionError, match="irr"):
        fit.summary(style="stata", irr=True)
    with pytest.raises(OptionError, match="Stata layout"):
        fit.summary(odds_ratios=True)


def test_mepoisson_table_has_levels_outermost_first_and_conservative_lr() -> None:
    fit = grouse_fit()
    text = fit.summary(style="stata", irr=True)
    table = text[text.index("Group Variable") :]
    assert table.index("LOCATION") < table.index("BROOD")
    assert "LR test vs. Poisson model: chi2(2)" in text and "conservative" in text
    assert glm_loglik(fit) == pytest.approx(results()["glm_loglik"]["grouse"], abs=1e-6)


def test_menbreg_lnalpha_and_glm_nb() -> None:
    import hlm

    fit = hlm.fit("count ~ mined + (1 | site)", support.dataset("Salamanders"), family="negative_binomial")
    text = fit.summary(style="stata")
    assert _row(text, "/lnalpha")[0] == pytest.approx(-math.log(fit.dispersion), rel=1e-6)
    assert glm_loglik(fit) == pytest.approx(results()["glm_loglik"]["salamanders_nb"], abs=1e-5)


def test_cli_or_and_irr(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["fit", CBPP, MODEL, "--family", "binomial", "--or"]) == 0
    out = capsys.readouterr().out
    assert "Odds Ratio" in out and "Mixed-effects binomial regression" in out
    assert run(["fit", CBPP, MODEL, "--family", "binomial", "--irr"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert run(["fit", CBPP, "incidence ~ factor(period) + (1 | herd)", "--or"]) == 2
    assert "GLMMs" in capsys.readouterr().err


def test_lme4_layout_matches_glmer_summary() -> None:
    """summary(glmer): -2 logLik printed as deviance, df.resid, R's scaled-residual quantiles
    (pearson, glmm_results.R), Wald z with Pr(>|z|) and stars."""
    ref = support.reference("cbpp__glmm_binomial_laplace")
    fit = cbpp_fit()
    lines = fit.summary().splitlines()
    assert lines[0] == "Generalized linear mixed model fit by maximum likelihood (Laplace Approximation)"
    assert lines[1] == " Family: binomial  ( logit )"
    aic, bic, ll, dev, dfres = (
        float(v) for v in lines[lines.index(next(ln for ln in lines if "df.resid" in ln)) + 1].split()
    )
    assert (aic, bic, ll, dev) == pytest.approx((ref["AIC"], ref["BIC"], ref["logLik"], ref["minus2logLik"]), abs=0.051)
    assert dfres == ref["df_residual"]
    quant = [float(v) for v in lines[lines.index("Scaled residuals: ") + 2].split()]
    assert quant == pytest.approx(results()["residuals"]["cbpp"]["scaled_quantiles"], abs=2e-3)
    row = next(ln for ln in lines if ln.startswith("period4")).split()
    assert float(row[3]) == pytest.approx(fit.tidy()["statistic"].iloc[3], abs=1e-3) and row[-1] == "***"
    assert " herd " in "\n".join(lines) and "Number of obs: 56, groups:  herd, 15" in lines


def test_stata_command_or_irr_options_set_the_table() -> None:
    import hlm
    from glmm.test_glmm_input import frame

    data = frame()
    assert "Odds Ratio" in hlm.fit("melogit y x, or || g:", data).summary(style="stata")
    assert "IRR" in hlm.fit("mepoisson c x, exposure(t) irr || g:", data).summary(style="stata")
    assert "Coef." in hlm.fit("melogit y x || g:", data).summary(style="stata")
    with pytest.raises(OptionError, match="logit"):
        hlm.fit("mepoisson c x, or || g:", data)
    with pytest.raises(OptionError, match="Poisson"):
        hlm.fit("melogit y x, irr || g:", data)
