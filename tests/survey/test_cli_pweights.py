"""``hlm fit --pweights``: WeMix's numbers from the command line (Stata's pwscale(size) emulated)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import hlm
from hlm.cli import run
from support import DATA, reference


def test_cli_pwscale_size_matches_prescaled_fixture(capsys: pytest.CaptureFixture[str]) -> None:
    r = reference("pisa_sim__weighted_ri_pwscale_size")
    argv = ["fit", str(DATA / "pisa_sim.csv"), r["formula"], "--pweights", "w_stu_cond,w_sch", "--cond-weights"]
    assert run([*argv, "--pwscale", "size", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["log_pseudolikelihood"] == pytest.approx(r["wemix"]["lnl"], rel=1e-8)
    assert [f["se"] for f in out["fixef"]] == pytest.approx([f["se"] for f in r["wemix"]["fixef"]], rel=1e-4)
    assert out["pwscale"].startswith("stata_pwscale_size")


def test_cli_refuses_reml_with_pweights(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["fit", str(DATA / "pisa_sim.csv"), "score ses || school:, reml", "--pweights", "w_stu,w_sch"]
    assert run(argv) == 2
    assert capsys.readouterr().err.startswith("error: REML is not defined")


def test_stata_syntax_declares_conditional_weights() -> None:
    """``[pw=...] || school:, pweight(...) pwscale(size)`` is Stata's form of the same fit."""
    r = reference("pisa_sim__weighted_ri_pwscale_size")
    df = pd.read_csv(DATA / "pisa_sim.csv")
    fit = hlm.fit("score ses [pw=w_stu_cond] || school:, pweight(w_sch) pwscale(size)", df)
    assert fit.cond_weights and fit.pweights == ("w_stu_cond", "w_sch")
    assert fit.loglik == pytest.approx(r["wemix"]["lnl"], rel=1e-8)
    three = reference("school3_sim__weighted_ri3_cw")
    df3 = pd.read_csv(DATA / "school3_sim.csv")
    fit3 = hlm.fit("score ses [pw=c1] || school:, pweight(w3) || class:, pweight(c2)", df3)
    assert fit3.loglik == pytest.approx(three["wemix"]["lnl"], rel=1e-8)
