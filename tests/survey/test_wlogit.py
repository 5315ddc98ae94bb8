"""The weighted random-intercept logit (pseudo-ML, 13-point adaptive Gauss-Hermite) against WeMix
4.0.4's binomial ``mix`` and, for integer weights, glmer nAGQ=13 on the expanded data
(reference/logit_wts__wlogit.json, written by reference/scripts/wlogit.R); the log
pseudolikelihood also against scipy's quad of the weighted integrals."""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special, stats

import hlm
from hlm.cli import run
from hlm.errors import DataError, OptionError
from hlm.models import FittedModel
from hlm.survey.logit_result import PseudoLogitFit
from support import DATA, reference

FORMULA = "y ~ x + zs + (1 | school)"


@cache
def data() -> pd.DataFrame:
    return pd.read_csv(DATA / "logit_wts.csv")


@cache
def fitted(case: str) -> PseudoLogitFit:
    r = reference("logit_wts__wlogit")[case]
    fit = hlm.fit(FORMULA, data(), family="binomial", pweights=r["weights"], cond_weights=r["cWeights"])
    assert isinstance(fit, PseudoLogitFit)
    return fit


@pytest.mark.parametrize("case", ["real", "real_cw", "integer"])
def test_matches_wemix(case: str) -> None:
    r, fit = reference("logit_wts__wlogit")[case], fitted(case)
    assert fit.loglik == pytest.approx(r["lnl"], rel=1e-9)
    assert fit.beta == pytest.approx([f["estimate"] for f in r["fixef"]], abs=1e-6)
    assert fit.se.to_numpy() == pytest.approx([f["se"] for f in r["fixef"]], rel=1e-3)  # WeMix: numDeriv
    assert fit.variance == pytest.approx(r["var_school"], rel=1e-5)
    assert fit.varcorr.std_error[0] == pytest.approx(r["var_school_se"], rel=2e-3)


def test_integer_weights_are_glmer_on_duplicated_rows_and_groups() -> None:
    g, fit = reference("logit_wts__wlogit")["glmer_expanded"], fitted("integer")
    assert fit.loglik == pytest.approx(g["logLik"], rel=1e-9)
    assert fit.beta == pytest.approx(g["fixef"], abs=1e-6)
    assert fit.variance == pytest.approx(g["var_school"], rel=1e-5)


def test_log_pseudolikelihood_by_direct_integration() -> None:
    """sum_j w_j log Int prod_i p(y_ij | u)^(w_i|j) phi(u) du by scipy's adaptive quad."""
    fit, d = fitted("real"), data()
    eta0 = fit.beta[0] + fit.beta[1] * d.x.to_numpy() + fit.beta[2] * d.zs.to_numpy()
    tau, total = np.sqrt(fit.variance), 0.0
    for _, rows in d.assign(eta0=eta0).groupby("school"):
        a, y, e = (rows.w1 / rows.w2).to_numpy(), rows.y.to_numpy(), rows.eta0.to_numpy()

        def integrand(u: float, a: np.ndarray = a, y: np.ndarray = y, e: np.ndarray = e) -> float:
            p = special.expit(e + tau * u)
            return float(np.exp(np.sum(a * (y * np.log(p) + (1 - y) * np.log1p(-p))) + stats.norm.logpdf(u)))

        total += rows.w2.iloc[0] * np.log(integrate.quad(integrand, -12, 12, epsabs=0, epsrel=1e-12, limit=200)[0])
    assert fit.loglik == pytest.approx(total, rel=1e-7)


def test_stata_melogit_syntax_is_the_same_fit() -> None:
    stata = hlm.fit("melogit y x zs [pw=w1c] || school:, pweight(w2)", data())
    assert isinstance(stata, PseudoLogitFit) and isinstance(stata, FittedModel)
    assert stata.loglik == pytest.approx(fitted("real").loglik, rel=1e-12)
    assert stata.beta == pytest.approx(fitted("real").beta, abs=1e-6)
    assert "Log pseudolikelihood" in stata.summary() and "adjusted for 60 clusters in school" in stata.summary()


def test_cli_weighted_logit(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["fit", str(DATA / "logit_wts.csv"), FORMULA, "--family", "binomial", "--pweights", "w1,w2", "--json"]
    assert run(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["log_pseudolikelihood"] == pytest.approx(reference("logit_wts__wlogit")["real"]["lnl"], rel=1e-9)
    assert out["nagq"] == 13


@pytest.mark.parametrize(
    ("model", "kw", "message"),
    [
        (FORMULA, {"family": "binomial", "link": "probit"}, "logit only"),
        (FORMULA, {"family": "poisson"}, "logit only"),
        ("y ~ x + (x | school)", {"family": "binomial"}, "one random intercept"),
        ("y ~ x + (1 | school)", {"family": "binomial", "nagq": 0}, "nagq must be"),
    ],
)
def test_refuses_what_is_not_a_two_level_weighted_logit(model: str, kw: dict, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        hlm.fit(model, data(), pweights=["w1", "w2"], **kw)


def test_refuses_a_response_that_is_not_binary() -> None:
    with pytest.raises(DataError, match="coded 0/1"):
        hlm.fit("w1 ~ x + (1 | school)", data(), family="binomial", pweights=["w1", "w2"])
