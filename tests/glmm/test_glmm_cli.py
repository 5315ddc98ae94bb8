"""``hlm fit DATA MODEL --family ... --nagq ...``: the GLMM through the command line, its
numbers those of cbpp's exact 7-point adaptive quadrature fit, and its one-line refusals."""

from __future__ import annotations

import json

import pytest

import support
from hlm.cli import run

CBPP = str(support.DATA / "cbpp.csv")
MODEL = "cbind(incidence, size - incidence) ~ factor(period) + (1 | herd)"  # the CSV stores period as 1..4


def test_cli_glmm_json_matches_the_api(capsys: pytest.CaptureFixture[str]) -> None:
    import hlm

    assert run(["fit", CBPP, MODEL, "--family", "binomial", "--nagq", "7", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    api = hlm.fit(MODEL, CBPP, family="binomial", nagq=7)
    assert out["loglik"] == pytest.approx(api.loglik, abs=1e-8)
    # AGQ with 7 points is within 1e-3 of the exact integral R recorded (at lme4's estimates)
    exact = support.reference("cbpp__glmm_binomial_agq25")["checks"]["exact_scalar_ri"]["marginal_loglik_exact"]
    assert out["loglik"] == pytest.approx(exact, abs=1e-3)
    assert out["family"] == "binomial" and out["nagq"] == 7


def test_cli_glmm_summary_and_refusals(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["fit", CBPP, MODEL, "--family", "binomial"]) == 0
    assert "Laplace" in capsys.readouterr().out
    assert run(["fit", CBPP, MODEL, "--family", "binomial", "--ml"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert run(["fit", CBPP, "incidence ~ period + (1 | herd)", "--family", "binomial"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "0/1" in err and len(err.strip().splitlines()) == 1


def test_cli_glmm_caterpillar_plot(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """--plot draws a GLMM's caterpillar plot; the linear fits' other kinds are refused in one line."""
    target = tmp_path / "re.png"
    assert run(["fit", CBPP, MODEL, "--family", "binomial", "--plot", str(target)]) == 0
    assert target.read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    other = tmp_path / "v.png"
    assert run(["fit", CBPP, MODEL, "--family", "binomial", "--plot", str(other), "--plot-kind", "variance"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "caterpillar" in err and not other.exists()
