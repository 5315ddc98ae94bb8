"""Refusals and checks of sampling weights (hlm.survey.weights, hlm.api)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hlm
from hlm.errors import DataError, NestingError, OptionError
from support import DATA

RI = "Reaction ~ Days + (1 | Subject)"


def sleep() -> pd.DataFrame:
    df = pd.read_csv(DATA / "sleepstudy_wts.csv")
    df["l1_w1"] = df["l1_w1"].astype(float)
    df["Subject"] = df["Subject"].astype(str)
    return df


@pytest.mark.parametrize(("value", "what"), [(-1.0, "negative"), (np.nan, "missing"), (np.inf, "infinite")])
def test_bad_weights_are_data_errors(value: float, what: str) -> None:
    df = sleep()
    df.loc[3, "l1_w1"] = value
    with pytest.raises(DataError, match=what):
        hlm.fit(RI, df, pweights=["l1_w1", "l1_w2"])


def test_zero_weight_drops_the_row() -> None:
    df = sleep()
    df.loc[3, "l1_w1"] = 0.0
    fit = hlm.fit(RI, df, pweights=["l1_w1", "l1_w2"])
    sub = hlm.fit(RI, df.drop(index=3), pweights=["l1_w1", "l1_w2"])
    assert fit.nobs == 179
    assert fit.loglik == pytest.approx(sub.loglik, rel=1e-12)
    assert any("zero sampling weight" in n for n in fit.notes)


def test_level2_weight_must_be_constant_within_its_group() -> None:
    df = sleep()
    df.loc[df.index[df.Subject == "330"][0], "l1_w2"] = 5.0
    with pytest.raises(DataError, match="varies within group '330'"):
        hlm.fit(RI, df, pweights=["l1_w1", "l1_w2"])


def test_weight_columns_must_match_the_levels() -> None:
    with pytest.raises(OptionError, match="3 columns but the model has 2 levels"):
        hlm.fit(RI, sleep(), pweights=["l1_w1", "l1_w2", "l2_w2"])
    with pytest.raises(OptionError, match="1 columns"):
        hlm.fit(RI, sleep(), pweights=["l1_w1"])


def test_refusals() -> None:
    df = sleep()
    with pytest.raises(OptionError, match="REML is not defined"):
        hlm.fit(RI, df, pweights=["l1_w1", "l1_w2"], reml=True)
    with pytest.raises(OptionError, match="cannot be combined"):
        hlm.fit(RI, df, pweights=["l1_w1", "l1_w2"], weights="l1_w1")
    df["slow"] = (df["Reaction"] > 300).astype(int)
    with pytest.raises(OptionError, match="logit only"):
        hlm.fit("slow ~ Days + (1 | Subject)", df, pweights=["l1_w1", "l1_w2"], family="binomial", link="probit")
    with pytest.raises(OptionError, match="logit only"):
        hlm.fit("meprobit slow Days [pw=l1_w1] || Subject:, pweight(l1_w2)", df)
    with pytest.raises(OptionError, match="two-level"):
        three = pd.read_csv(DATA / "sleepstudy_3lvl_wts.csv").astype({"Subject": str, "Group": str})
        hlm.fit("Reaction ~ Days + (1 | Subject) + (1 | Group)", three, pweights=["w1", "w2", "w3"], pwscale="size")
    df["Day_f"] = df["Days"].astype(str)
    df["one"] = 1.0
    with pytest.raises(NestingError, match="crossed"):
        hlm.fit("Reaction ~ Days + (1 | Subject) + (1 | Day_f)", df, pweights=["one", "one", "one"])
    fit = hlm.fit(RI, df, pweights=["l1_w1", "l1_w2"])
    with pytest.raises(OptionError, match="likelihood-ratio"):
        fit.lr_test_linear()


def test_output_carries_the_weights() -> None:
    fit = hlm.fit(RI, sleep(), pweights=["l12_c1", "l12_w2"], cond_weights=True)
    d = fit.to_dict()
    assert d["pweights"] == ["l12_c1", "l12_w2"] and d["cond_weights"] is True and d["pwscale"] == "none"
    text = fit.summary()
    assert "Log pseudolikelihood" in text
    assert "(Std. err. adjusted for 18 clusters in Subject)" in text


def test_scaling_options_need_pweights() -> None:
    with pytest.raises(OptionError, match="give the columns as pweights="):
        hlm.fit(RI, sleep(), pwscale="size")
