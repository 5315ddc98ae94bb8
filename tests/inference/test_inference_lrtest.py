"""LR tests against Stata's "LR test vs. linear model" and lme4's ``anova`` (lrtests_public.json
and the ``lr_test_vs_linear_model`` sections of ``*__varcomp_se.json``): statistics and
p-values within 1e-5 relative."""

from __future__ import annotations

import warnings

import pytest
from scipy import stats

import hlm
from hlm.errors import ComparisonError
from hlm.inference.likelihood_ratio import lr_vs_linear
from support import dataset, reference


def _fit(formula, data, reml):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hlm.fit(formula, dataset(data), reml=reml)


@pytest.mark.parametrize(
    "key,data",
    [
        ("dyestuff_ML_lr_vs_linear", "Dyestuff"),
        ("hsb82_ri_ML_lr_vs_linear", "Hsb82"),
        ("pastes_nested_ML_lr_vs_linear", "Pastes"),
    ],
)
def test_lr_vs_linear_model(key, data):
    ref = reference("lrtests_public")[key]
    test = lr_vs_linear(_fit(ref["formula"], data, ref["REML"]))
    assert test.loglik0 == pytest.approx(ref["logLik_linear"], rel=1e-8)
    if ref["n_variance_components"] == 1:
        assert test.distribution == "chibar2(01)"
        assert test.statistic == pytest.approx(ref["chibar2_01"], rel=1e-5)
    else:
        assert test.distribution == f"chi2({ref['df']})"
        assert test.statistic == pytest.approx(ref["chi2"], rel=1e-5)
        assert "conservative" in test.note
    assert test.p_value == pytest.approx(ref["p"], rel=1e-5)


@pytest.mark.parametrize("name", ["Dyestuff__intercept_REML", "sleepstudy__slope_ML"])
def test_lr_vs_linear_reml_and_several(name):
    ref = reference(f"{name}__varcomp_se")
    lr = ref["lr_test_vs_linear_model"]
    test = lr_vs_linear(_fit(ref["formula"], ref["dataset"], ref["REML"]))
    assert test.statistic == pytest.approx(lr["chi2"], rel=1e-5)
    assert test.df == lr["df"]
    expected = lr["p_chibar2_01"] if lr["p_chibar2_01"] is not None else lr["p_chi2_df"]
    assert test.p_value == pytest.approx(expected, rel=1e-5)


def test_anova_refits_reml_by_ml():
    ref = reference("lrtests_public")["hsb82_ri_vs_rs"]
    m0 = _fit(ref["formulas"]["m0"], "Hsb82", True)
    m1 = _fit(ref["formulas"]["m1"], "Hsb82", True)
    table = hlm.compare(m0, m1, refit_ml=True)
    for ours, theirs in zip(table.itertuples(), ref["table"]):
        assert ours.npar == theirs["npar"]
        assert ours.aic == pytest.approx(theirs["AIC"], rel=1e-5)
        assert ours.bic == pytest.approx(theirs["BIC"], rel=1e-5)
        assert ours.loglik == pytest.approx(theirs["logLik"], rel=1e-5)
        assert ours.deviance == pytest.approx(theirs["deviance"], rel=1e-5)
    assert table.chisq[1] == pytest.approx(ref["Chisq"], rel=1e-5)
    assert table.df[1] == ref["Df"]
    assert table.p_value[1] == pytest.approx(ref["p"], rel=1e-5)
    # one variance (plus its covariance) added: the boundary mixture 0.5 chi2_1 + 0.5 chi2_2
    mix = 0.5 * stats.chi2.sf(ref["Chisq"], 1) + 0.5 * stats.chi2.sf(ref["Chisq"], 2)
    assert table.p_value_chibar2[1] == pytest.approx(mix, rel=1e-5)
    test = hlm.lrtest(m0, m1, refit_ml=True)
    assert test.statistic == pytest.approx(ref["Chisq"], rel=1e-5)
    assert test.p_value == pytest.approx(mix, rel=1e-5)
    assert test.p_value_naive == pytest.approx(ref["p"], rel=1e-5)


def test_reml_fits_with_different_fixed_effects_are_refused():
    m0 = _fit("mAch ~ meanses + cses + (1 | school)", "Hsb82", True)
    m1 = _fit("mAch ~ meanses * cses + (1 | school)", "Hsb82", True)
    with pytest.raises(ComparisonError, match="compare mean structures using ML, not REML"):
        hlm.lrtest(m0, m1)
    assert hlm.lrtest(m0, m1, refit_ml=True).df == 1


def test_sleepstudy_intercept_vs_slope():
    """lme4: anova(lmer(Reaction ~ Days + (1|Subject)), lmer(... (Days|Subject))) gives 42.14 on 2 df."""
    m0 = _fit("Reaction ~ Days + (1 | Subject)", "sleepstudy", True)
    m1 = _fit("Reaction ~ Days + (Days | Subject)", "sleepstudy", True)
    test = hlm.lrtest(m0, m1, refit_ml=True)
    assert round(test.statistic, 2) == 42.14 and test.df == 2
    ml = hlm.lrtest(
        _fit("Reaction ~ Days + (1 | Subject)", "sleepstudy", False),
        _fit("Reaction ~ Days + (Days | Subject)", "sleepstudy", False),
    )
    assert ml.statistic == pytest.approx(test.statistic, rel=1e-6)
    # the ML deviances of the two lme4 reference fits
    dev1 = reference("sleepstudy__slope_ML")["deviance"]
    assert ml.loglik1 == pytest.approx(-dev1 / 2, rel=1e-7)
