"""``hlm xtreg`` and ``hlm hausman`` through hlm.cli.run (reference numbers at 1e-6 relative)."""

from __future__ import annotations

import json

import pytest

from hlm.cli import run
from support import DATA, reference

UNB = str(DATA / "Grunfeld_unbalanced.csv")
BAL = str(DATA / "Grunfeld.csv")
KEYS = {
    "estimator",
    "nobs",
    "ngroups",
    "coef",
    "sigma_u",
    "sigma_e",
    "rho",
    "theta",
    "r2_within",
    "r2_between",
    "r2_overall",
}


def run_json(capsys, argv):
    assert run(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_xtreg_re_json_unbalanced(capsys):
    ref = reference("Grunfeld_unbalanced__xtreg")["random_effects"]["stata_default_reimpl"]
    out = run_json(capsys, ["xtreg", UNB, "inv value capital", "-i", "firm", "--re", "--json"])
    assert KEYS <= set(out) and out["estimator"] == "re" and out["nobs"] == 145 and out["ngroups"] == 10
    assert out["sigma_u"] == pytest.approx(ref["sigma_u"], rel=1e-6)
    assert out["theta"]["min"] == pytest.approx(ref["theta"]["min"], rel=1e-6)
    assert out["theta"]["p50"] == pytest.approx(ref["theta"]["median"], rel=1e-6)
    coef = {c["term"]: c for c in out["coef"]}
    assert coef["value"]["se"] == pytest.approx(ref["coefficients"][1]["se"], rel=1e-6)


def test_xtreg_without_estimator_is_re(capsys):
    ref = reference("Grunfeld_unbalanced__xtreg")["random_effects"]["stata_default_reimpl"]
    out = run_json(capsys, ["xtreg", UNB, "inv value capital", "-i", "firm", "--json"])
    assert out["estimator"] == "re" and out["sigma_u"] == pytest.approx(ref["sigma_u"], rel=1e-6)


def test_xtreg_sa_and_fe_cluster(capsys):
    ref = reference("Grunfeld_unbalanced__xtreg")["random_effects"]
    out = run_json(capsys, ["xtreg", UNB, "inv ~ value + capital", "-i", "firm", "--re", "--sa", "--json"])
    assert out["sigma_u"] == pytest.approx(ref["sigma_u"], rel=1e-6) and out["re_method"] == "baltagi-chang"
    out = run_json(
        capsys, ["xtreg", BAL, "inv value capital", "-i", "firm", "--fe", "--json", "--vce", "cluster", "firm"]
    )
    assert out["vce"] == "cluster" and out["n_clusters"] == 10 and out["estimator"] == "fe"
    out2 = run_json(
        capsys, ["xtreg", BAL, "inv value capital", "-i", "firm", "--fe", "--vce", "cluster firm", "--json"]
    )
    assert out2["coef"] == out["coef"]


def test_xtreg_table_be_pooled(capsys):
    assert run(["xtreg", UNB, "inv value capital", "-i", "firm", "--be"]) == 0
    assert "Between regression" in capsys.readouterr().out
    out = run_json(capsys, ["xtreg", UNB, "inv value capital", "-i", "firm", "--pooled", "--vce", "robust", "--json"])
    assert out["estimator"] == "pooled" and out["vce"] == "robust" and out["theta"] is None


def test_hausman_json(capsys):
    ref = reference("Grunfeld__panel")["random_effects"]["hausman"]
    out = run_json(capsys, ["hausman", BAL, "inv value capital", "-i", "firm", "--json"])
    assert out["chi2"] == pytest.approx(ref["chi2"], rel=1e-6) and out["df"] == ref["df"]
    assert out["p"] == pytest.approx(ref["p"], rel=1e-6)
    assert run(["hausman", BAL, "inv value capital", "-i", "firm"]) == 0
    assert "Prob > chi2" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["xtreg", UNB, "inv value capital", "-i", "firm", "--fe", "--re"], "choose one estimator"),
        (["xtreg", UNB, "inv valu capital", "-i", "firm"], "did you mean"),
        (["xtreg", UNB, "inv value capital", "-i", "firm", "--vce", "cluster"], "needs a variable"),
        (["xtreg", UNB, "inv value capital", "-i", "firm", "--vce", "hc3"], "unknown --vce"),
        (["xtreg", UNB, "inv", "value", "-i", "firm"], "quote the model"),
        (["xtreg", UNB, "inv value capital", "-i", "firm", "--be", "--vce", "robust"], "be has no robust"),
        (["xtreg", "missing.csv", "inv value", "-i", "firm"], "does not exist"),
        (["hausman", UNB, "inv value capital"], "panel"),
    ],
)
def test_cli_errors_exit_2(capsys, argv, message):
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and "Traceback" not in err
