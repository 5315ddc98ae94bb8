"""Every family's result satisfies the common protocol hlm.models.FittedModel."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hlm
from hlm.lmm.result import LmmResult
from hlm.models import FittedModel
from hlm.survey.result import PseudoFit
from support import DATA

RI = "Reaction ~ Days + (1 | Subject)"


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    df = pd.read_csv(DATA / "sleepstudy_wts.csv")
    df["l1_w1"] = df["l1_w1"].astype(float)
    df["Subject"] = df["Subject"].astype(str)
    return df


def _check_surface(fit: FittedModel) -> None:
    assert isinstance(fit, FittedModel)
    names = list(fit.fixef.index)
    assert names == ["(Intercept)", "Days"]
    V = np.asarray(fit.vcov, dtype=float)
    np.testing.assert_allclose(fit.se.to_numpy(), np.sqrt(np.diag(V)), rtol=1e-12)
    assert fit.nobs == 180 and fit.ngroups == {"Subject": 18}
    assert np.isfinite(fit.loglik)
    assert fit.varcorr.iloc[-1, 0] == "Residual" and (fit.varcorr["vcov"] > 0).all()
    np.testing.assert_allclose(fit.tidy(level=0.9)["estimate"].to_numpy(), fit.fixef.to_numpy())
    assert isinstance(fit.summary(style="stata"), str)
    assert isinstance(fit.to_dict(), dict)


def test_linear_mixed_model_fit_is_a_fitted_model(sleep: pd.DataFrame) -> None:
    fit = hlm.fit(RI, sleep)
    assert isinstance(fit, LmmResult)
    _check_surface(fit)


def test_pseudo_likelihood_fit_is_a_fitted_model(sleep: pd.DataFrame) -> None:
    fit = hlm.fit(RI, sleep, pweights=["l1_w1", "l1_w2"])
    assert isinstance(fit, PseudoFit)
    _check_surface(fit)


def test_an_object_without_the_surface_is_not_a_fitted_model() -> None:
    assert not isinstance(object(), FittedModel)


def test_glmm_result_is_a_fitted_model(sleep: pd.DataFrame) -> None:
    sleep = sleep.assign(slow=(sleep["Reaction"] > 300).astype(int))
    fit = hlm.fit("slow ~ Days + (1 | Subject)", sleep, family="binomial")
    assert isinstance(fit, FittedModel)
    assert list(fit.fixef.index) == ["(Intercept)", "Days"] and fit.nobs == 180
    np.testing.assert_allclose(fit.se.to_numpy(), np.sqrt(np.diag(np.asarray(fit.vcov, dtype=float))), rtol=1e-12)
    assert isinstance(fit.summary(style="lme4"), str) and isinstance(fit.to_dict(), dict)
    assert fit.summary(style="stata").startswith("Mixed-effects logistic regression")  # was refused before issue 15
    with pytest.raises(hlm.OptionError, match="style"):
        fit.summary(style="spss")  # type: ignore[arg-type]
