"""Fixed-effect tests against lmerTest (Satterthwaite) and pbkrtest (Kenward-Roger).

Satterthwaite df and p within 1e-4 relative of lmerTest when evaluated at lme4's estimates
(theta from the reference: on flat optima our optimiser's theta differs from lme4's by up
to 1e-4 relative, which moves extreme p-values such as 1e-17 by more than 1e-4); at our own
optimum df within 1e-3.  Kenward-Roger df within 1e-3 relative and adjusted SEs within 1e-4.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import stats

from hlm.inference.ddf import fixed_effects_table, wald_slopes
from support import reference

REML = [
    "Dyestuff2__intercept_REML",
    "Dyestuff__intercept_REML",
    "Grunfeld__lmer_ri_REML",
    "Hsb82__ri_REML",
    "Hsb82__rs_REML",
    "Pastes__nested_REML",
    "Penicillin__crossed_REML",
    "sleepstudy__slope_REML",
    "sleepstudy__uncorr_REML",
]


def at_theta(fit, theta):
    """The same fit moved to another theta (to compare methods at identical estimates)."""
    theta = np.asarray(theta, dtype=float)
    opt = dataclasses.replace(fit.optsummary, theta=tuple(theta))
    return dataclasses.replace(fit, optsummary=opt, profiled=fit.devfun.profiled(theta))


@pytest.mark.parametrize("name", REML)
def test_satterthwaite_matches_lmertest(name, fits):
    ref = reference(name)
    fit = fits(name)
    own = fit.tidy(ddf="satterthwaite")
    same = fixed_effects_table(at_theta(fit, ref["theta_vector"]), ddf="satterthwaite")
    for i, row in enumerate(ref["satterthwaite"]):
        assert same.term[i] == row["term"]
        assert same.df[i] == pytest.approx(row["df"], rel=1e-4)
        assert same.statistic[i] == pytest.approx(row["t"], rel=1e-4)
        assert same.p_value[i] == pytest.approx(row["p"], rel=1e-4)
        assert own.df[i] == pytest.approx(row["df"], rel=1e-3)


@pytest.mark.parametrize("name", [n for n in REML if reference(n).get("kenward_roger")])
def test_kenward_roger_matches_pbkrtest(name, fits):
    ref = reference(name)
    fit = fits(name)
    table = fit.tidy(ddf="kenward-roger")
    for i, row in enumerate(ref["kenward_roger"]):
        assert table.df[i] == pytest.approx(row["df"], rel=1e-3)
        assert table.std_error[i] == pytest.approx(row["se"], rel=1e-4)


def test_z_tests_by_default(fits):
    fit = fits("Hsb82__ri_REML")
    table = fit.tidy()
    ref = reference("Hsb82__ri_REML")["fixef"]
    for i, row in enumerate(ref):
        assert table.statistic[i] == pytest.approx(row["t"], rel=1e-3)
        assert table.p_value[i] == pytest.approx(2 * stats.norm.sf(abs(row["t"])), rel=1e-2)


def test_wald_chi2_of_slopes(fits):
    """Stata's header: chi2 of all slopes, from lme4's estimates and vcov."""
    ref = reference("Hsb82__ri_ML")
    beta = np.array([r["estimate"] for r in ref["fixef"]])[1:]
    V = np.array(ref["vcov_fixef"]["values"] if isinstance(ref["vcov_fixef"], dict) else ref["vcov_fixef"])[1:, 1:]
    expected = float(beta @ np.linalg.solve(V, beta))
    chi2, df, p = wald_slopes(fits("Hsb82__ri_ML"))
    assert df == 2
    assert chi2 == pytest.approx(expected, rel=1e-3)
    assert p == pytest.approx(stats.chi2.sf(chi2, 2))


def test_unknown_options_are_refused(fits):
    from hlm.errors import OptionError

    fit = fits("Dyestuff__intercept_REML")
    with pytest.raises(OptionError):
        fit.tidy(ddf="containment")
    with pytest.raises(OptionError):
        fit.confint(method="bayes")
