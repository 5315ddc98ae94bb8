"""Predictions, fitted values and residuals.

Tolerances: fitted values within 1e-6 relative of lme4's ``fitted_head``; residuals within
1e-5 of the residual SD of lme4's ``residuals_head``; population predictions equal X beta
to 1e-10.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import hlm
from hlm.errors import DataError, OptionError
from support import dataset, reference

WITH_FITTED = [
    "sleepstudy__slope_REML",
    "sleepstudy__slope_ML",
    "sleepstudy__uncorr_REML",
    "Dyestuff__intercept_REML",
    "Dyestuff2__intercept_REML",
    "Pastes__nested_REML",
    "Penicillin__crossed_REML",
    "Hsb82__rs_REML",
    "Grunfeld__lmer_ri_REML",
]


@pytest.mark.parametrize("name", WITH_FITTED)
def test_fitted_and_residuals_match_lme4(name, fits):
    fit, ref = fits(name), reference(name)
    fitted, resid = fit.fitted(), fit.residuals()
    assert len(fitted) == len(resid) == fit.nobs
    np.testing.assert_allclose(fitted.to_numpy()[:10], ref["fitted_head"], rtol=1e-6)
    scale = np.std(ref["residuals_head"])
    np.testing.assert_allclose(resid.to_numpy()[:10], ref["residuals_head"], atol=1e-5 * scale)


def test_predict_default_is_fitted(fits):
    fit = fits("sleepstudy__slope_REML")
    np.testing.assert_allclose(fit.predict().to_numpy(), fit.fitted().to_numpy(), rtol=1e-12)


def test_population_prediction_is_x_beta(fits):
    fit = fits("sleepstudy__slope_REML")
    new = dataset("sleepstudy").head(7)
    pred = fit.predict(new, re=False)
    expected = fit.fixef["(Intercept)"] + fit.fixef["Days"] * new["Days"].to_numpy()
    np.testing.assert_allclose(pred.to_numpy(), expected, rtol=1e-10)
    assert list(pred.index) == list(new.index)


def test_new_levels_population_or_error(fits):
    fit = fits("sleepstudy__slope_REML")
    new = dataset("sleepstudy").head(3).copy()
    new["Subject"] = [308, 99999, 308]
    pred = fit.predict(new)
    pop = fit.predict(new, re=False)
    assert pred.iloc[1] == pytest.approx(pop.iloc[1], rel=1e-12)
    assert pred.iloc[0] == pytest.approx(fit.fitted().iloc[0], rel=1e-10)
    with pytest.raises(DataError, match="99999"):
        fit.predict(new, new_levels="error")
    with pytest.raises(OptionError):
        fit.predict(new, new_levels="zero")


def test_float_coded_levels_and_missing_rows(fits):
    """Subject stored as float (as after a NaN) finds the int-coded level; NaN rows -> NaN."""
    fit = fits("sleepstudy__slope_REML")
    new = dataset("sleepstudy").head(4).copy()
    new["Subject"] = new["Subject"].astype(float)
    new.loc[2, "Days"] = np.nan
    pred = fit.predict(new, new_levels="error")
    assert np.isnan(pred.iloc[2])
    np.testing.assert_allclose(pred.to_numpy()[[0, 1, 3]], fit.fitted().to_numpy()[[0, 1, 3]], rtol=1e-10)


def test_chunked_pass_is_identical(fits):
    from hlm.predict.memory import predict

    fit = fits("Pastes__nested_REML")
    whole = predict(fit, None)
    chunked = predict(fit, None, chunk_rows=7)
    np.testing.assert_allclose(chunked.to_numpy(), whole.to_numpy(), rtol=1e-13)


def test_stata_syntax_nested_prediction():
    ref = reference("Pastes__nested_REML")
    fit = hlm.fit("strength || batch: || cask:", dataset("Pastes"))
    np.testing.assert_allclose(fit.fitted().to_numpy()[:10], ref["fitted_head"], rtol=1e-6)


def test_categorical_fixed_effect_prediction():
    data = dataset("Hsb82")
    data["sector_c"] = np.where(data["meanses"] > 0, "high", "low")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hlm.fit("mAch ~ sector_c + cses + (1 | school)", data)
    one = data.iloc[[5]]  # a single row: only one level of sector_c present
    assert fit.predict(one).iloc[0] == pytest.approx(fit.fitted().iloc[5], rel=1e-10)
