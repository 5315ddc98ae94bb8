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
from hlm.survey.logit import BinaryRows, group_loglik
from hlm.survey.logit_result import PseudoLogitFit
from support import DATA, reference

FORMULA = "y ~ x + zs + (1 | school)"
SQRT_2PI = np.sqrt(2 * np.pi)


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
    assert fit.variances["school"] == pytest.approx(r["var_school"], rel=1e-5)
    assert fit.varcorr.std_error[0] == pytest.approx(r["var_school_se"], rel=2e-3)


def test_integer_weights_are_glmer_on_duplicated_rows_and_groups() -> None:
    g, fit = reference("logit_wts__wlogit")["glmer_expanded"], fitted("integer")
    assert fit.loglik == pytest.approx(g["logLik"], rel=1e-9)
    assert fit.beta == pytest.approx(g["fixef"], abs=1e-6)
    assert fit.variances["school"] == pytest.approx(g["var_school"], rel=1e-5)


def test_log_pseudolikelihood_by_direct_integration() -> None:
    """sum_j w_j log Int prod_i p(y_ij | u)^(w_i|j) phi(u) du by scipy's adaptive quad."""
    fit, d = fitted("real"), data()
    eta0 = fit.beta[0] + fit.beta[1] * d.x.to_numpy() + fit.beta[2] * d.zs.to_numpy()
    tau, total = np.sqrt(fit.variances["school"]), 0.0
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
        ("y ~ x + (x | school)", {"family": "binomial"}, "nested random intercepts"),
        ("y ~ x + (1 | school)", {"family": "binomial", "nagq": 0}, "nagq must be"),
    ],
)
def test_refuses_what_is_not_a_two_level_weighted_logit(model: str, kw: dict, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        hlm.fit(model, data(), pweights=["w1", "w2"], **kw)


def test_refuses_a_response_that_is_not_binary() -> None:
    with pytest.raises(DataError, match="coded 0/1"):
        hlm.fit("w1 ~ x + (1 | school)", data(), family="binomial", pweights=["w1", "w2"])


def test_three_levels_by_nested_direct_integration() -> None:
    """Each school's w_k log Int [prod_j (Int prod_i p^(w_i|j) phi(u) du)^(w_j|k)] phi(v) dv by
    scipy's quad inside quad, at the fit's estimates (first two schools)."""
    d = pd.read_csv(DATA / "logit3_wts.csv")
    fit = hlm.fit("y ~ x + (1 | school/class)", d, family="binomial", pweights=["w1", "w2", "w3"])
    assert isinstance(fit, PseudoLogitFit) and fit.nclusters == 30 and fit.ngroups["class:school"] == 90
    t2, t3 = np.sqrt(fit.variances["class:school"]), np.sqrt(fit.variances["school"])
    eta0 = fit.beta[0] + fit.beta[1] * d.x.to_numpy()
    expect = []
    for k in range(1, 3):
        s = d.assign(eta0=eta0)[d.school == k]
        classes = [(c.w1c.to_numpy(), c.y.to_numpy(), c.eta0.to_numpy(), c.w2c.iloc[0]) for _, c in s.groupby("class")]

        def outer(v: float, classes: list = classes) -> float:
            total = 0.0
            for a, y, e0, w2c in classes:
                e = e0 + t3 * v

                def inner(u: float, a: np.ndarray = a, y: np.ndarray = y, e: np.ndarray = e) -> float:
                    p = special.expit(e + t2 * u)
                    return float(np.exp(np.sum(a * (y * np.log(p) + (1 - y) * np.log1p(-p))) - u * u / 2) / SQRT_2PI)

                total += w2c * np.log(integrate.quad(inner, -10, 10, epsabs=0, epsrel=1e-10)[0])
            return float(np.exp(total - v * v / 2) / SQRT_2PI)

        value = integrate.quad(outer, -10, 10, epsabs=0, epsrel=1e-9)[0]
        expect.append(s.w3.iloc[0] * np.log(value))
    school, cls = d.school.to_numpy() - 1, d["class"].to_numpy() - 1
    rows = BinaryRows(
        d.y.to_numpy(float), np.column_stack([np.ones(len(d)), d.x]), d.w1c.to_numpy(), cls,
        d.groupby("class").w2c.first().to_numpy(), school[np.unique(cls, return_index=True)[1]],
        d.groupby("school").w3.first().to_numpy(),
    )  # fmt: skip
    got = group_loglik(rows, fit.beta, np.array([t2, t3]), 13)
    assert got[:2] == pytest.approx(expect, rel=1e-7)
    assert fit.loglik == pytest.approx(float(got.sum()), rel=1e-12)
    assert fit.se.notna().all() and fit.varcorr.std_error.notna().all()
