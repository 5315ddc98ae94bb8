"""GLMM fits against the exact optimum R recorded (README "GLMM fixtures"): glmmTMB's exact
Laplace (or glmer refitted with tolPwrss = 1e-12), and per-group exact integration for AGQ.
logLik (full) within 1e-4, fixed effects within 0.01 SE, SDs within 1e-3 relative."""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import pytest

import hlm
from hlm.glmm import GlmmResult
from support import dataset, reference

FAMILY = {"binomial": "binomial", "poisson": "poisson", "nbinom2": "negative_binomial"}
FAST = [
    "cbpp__glmm_binomial_laplace",
    "cbpp__glmm_binomial_agq25",
    "grouseticks__glmm_poisson_nested_laplace",
    "Salamanders__glmm_tmb_poisson_ri",
    "Salamanders__glmm_tmb_nbinom2_ri",
]
SLOW = [
    "VerbAgg__glmm_crossed_laplace",
    "grouseticks__glmm_poisson_crossed3_laplace",
    "seed_D5__glmm_nested4_binary_laplace",
]


def glmm_data(ref: dict) -> pd.DataFrame:
    """The CSV with R's factor columns as text (levels in R's order) and a binary factor as 0/1."""
    frame = dataset(ref["dataset"]["name"])
    for col, levels in ref["dataset"].get("factor_levels", {}).items():
        frame[col] = frame[col].astype(str)
        if isinstance(levels, list):
            frame[col] = pd.Categorical(frame[col], categories=[str(v) for v in levels])
    return frame


@cache
def fitted(name: str) -> GlmmResult:
    ref = reference(name)
    nagq = ref["nAGQ"] if isinstance(ref["nAGQ"], int) else 1
    return hlm.fit(ref["formula"], glmm_data(ref), family=FAMILY[ref["family"]], nagq=nagq)


def exact(ref: dict) -> tuple[float, dict[str, float], list[float]]:
    """logLik, fixed effects and SDs of the exact optimum."""
    checks = ref["checks"]
    sds = [sd for g in ref["varcorr"]["groups"] for sd in g["sd"]]
    if "glmmTMB" in checks:
        return checks["glmmTMB"]["logLik"], checks["glmmTMB"]["fixef"], list(checks["glmmTMB"]["sd"].values())
    if ref["nAGQ"] == 25:  # the exact integral at lme4's estimates; the tight refit's estimates
        tight = checks["tight_pirls_refit"]
        return checks["exact_scalar_ri"]["marginal_loglik_exact"], tight["fixef"], sds
    return ref["logLik"], {f["term"]: f["estimate"] for f in ref["fixef"]}, sds


def check(name: str) -> None:
    ref, fit = reference(name), fitted(name)
    loglik, fixef, sds = exact(ref)
    assert fit.loglik == pytest.approx(loglik, abs=1e-4)
    se = {f["term"]: f["se"] for f in ref["fixef"]}
    for term, value in fixef.items():
        assert abs(fit.fixef[term] - value) < 0.01 * se[term], term
    assert fit.varcorr["sdcor"].to_numpy() == pytest.approx(sds, rel=1e-3)
    names = [g["group"].replace("(", "").replace(")", "") for g in ref["varcorr"]["groups"]]  # hlm: a:b:c
    assert list(fit.varcorr["group"]) == names
    assert fit.nobs == ref["nobs"]
    assert fit.converged and not fit.singular
    if tmb_se := ref["checks"].get("glmmTMB", {}).get("se"):  # glmmTMB's SEs: the AD Hessian at the same optimum
        assert fit.se[list(tmb_se)].to_numpy() == pytest.approx(list(tmb_se.values()), rel=1e-3)


@pytest.mark.parametrize("name", FAST)
def test_exact_optimum(name: str) -> None:
    check(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_exact_optimum_large(name: str) -> None:
    check(name)


def test_nbinom2_dispersion_and_modes() -> None:
    """glmmTMB's phi and its conditional modes / SDs (lme4's definition) at the same optimum."""
    ref, fit = reference("Salamanders__glmm_tmb_nbinom2_ri"), fitted("Salamanders__glmm_tmb_nbinom2_ri")
    assert fit.dispersion == pytest.approx(ref["dispersion"]["sigma"], rel=1e-3)
    re = fit.ranef().set_index("level")
    block = ref["ranef"][0]
    assert re.loc[block["levels"], "estimate"].to_numpy() == pytest.approx(block["mode"]["(Intercept)"], abs=1e-3)
    assert re.loc[block["levels"], "std_error"].to_numpy() == pytest.approx(block["cond_sd"]["(Intercept)"], abs=1e-3)


def test_glmmtmb_standard_errors() -> None:
    """Wald SEs from the Hessian of -2 logLik over all parameters, as glmmTMB's sdreport."""
    ref, fit = reference("Salamanders__glmm_tmb_poisson_ri"), fitted("Salamanders__glmm_tmb_poisson_ri")
    assert fit.se.to_numpy() == pytest.approx([f["se"] for f in ref["fixef"]], rel=1e-3)


def test_laplace_is_agq_with_one_node() -> None:
    """cbpp: the deviance is continuous in the number of nodes' limit; 25 nodes give the exact
    integral and the Laplace fit lies below it by the recorded gap."""
    lap, agq = fitted("cbpp__glmm_binomial_laplace"), fitted("cbpp__glmm_binomial_agq25")
    ex = reference("cbpp__glmm_binomial_laplace")["checks"]["exact_scalar_ri"]
    gap = ex["marginal_loglik_exact"] - ex["laplace_loglik_exact"]
    assert agq.loglik - lap.loglik == pytest.approx(gap, abs=2e-3)
    assert np.isfinite(agq.se).all()
