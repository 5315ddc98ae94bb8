"""Bad input on the command line: one ``error: ...`` line (formula errors add the text and
a caret), exit status 2, never a traceback -- and no output file when a command fails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import support
from hlm.cli import run

ROOT = support.ROOT
DATA = support.DATA
SEED_TOML = str(ROOT / "examples" / "seed.toml")
MODEL = "Reaction ~ Days + (1|Subject)"


@pytest.fixture()
def sleep_csv(tmp_path) -> Path:
    path = tmp_path / "sleep.csv"
    path.write_text((DATA / "sleepstudy.csv").read_text())
    return path


def _frame() -> pd.DataFrame:
    return pd.read_csv(DATA / "sleepstudy.csv")


def _fails(capsys, argv: list[str], *expected: str, lines: int = 1) -> str:
    """Run ``argv``; it must exit 2 with ``lines`` lines on stderr, the first ``error: ...``,
    nothing on stdout and no traceback.  Returns stderr."""
    assert run(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: ") and "Traceback" not in err and "internal error" not in err
    assert len(err.rstrip("\n").splitlines()) == lines, err
    for text in expected:
        assert text in err, (text, err)
    return err


def test_missing_column(capsys, sleep_csv):
    _fails(capsys, ["fit", str(sleep_csv), "Reaction ~ Age + (1|Subject)"], "column 'Age'", "not in the data")


def test_misspelt_column(capsys, tmp_path):
    path = tmp_path / "sleep.dta"
    _frame().to_stata(path, write_index=False)
    _fails(capsys, ["fit", str(path), "Reaction ~ Days + (1|Subjet)"], "did you mean 'Subject'?")
    _fails(capsys, ["nesting", str(path), "Subjet"], "did you mean 'Subject'?")


def test_non_numeric_response(capsys, tmp_path):
    path = tmp_path / "d.csv"
    _frame().assign(Reaction=lambda d: d["Reaction"].astype(str) + "ms").to_csv(path, index=False)
    _fails(capsys, ["fit", str(path), MODEL], "the response 'Reaction' is not numeric")


def test_constant_and_collinear_predictors_noted(capsys, tmp_path):
    path = tmp_path / "d.csv"
    _frame().assign(site=1.0, hours=lambda d: 24 * d["Days"]).to_csv(path, index=False)
    assert run(["fit", str(path), "Reaction Days site hours || Subject:"]) == 0
    out = capsys.readouterr().out
    assert "omitted because of collinearity: site, hours" in out


def test_all_rows_missing(capsys, tmp_path):
    path = tmp_path / "d.parquet"
    _frame().assign(Reaction=np.nan).to_parquet(path)
    _fails(capsys, ["fit", str(path), MODEL], "every row")  # DuckDB path: "has no values: every row is missing"


def test_empty_data(capsys, tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("Reaction,Days,Subject\n")
    _fails(capsys, ["fit", str(path), MODEL], "the data has no rows")
    path.write_bytes(b"")
    _fails(capsys, ["fit", str(path), MODEL], "is empty (0 bytes)")


def test_infinite_values(capsys, tmp_path):
    path = tmp_path / "d.parquet"
    _frame().assign(Days=lambda d: d["Days"].replace(3, np.inf).astype(float)).to_parquet(path)
    _fails(capsys, ["fit", str(path), MODEL], "column 'Days' has infinite values")


def test_grouping_factor_with_one_level(capsys, tmp_path):
    path = tmp_path / "d.csv"
    _frame().query("Subject == 308").to_csv(path, index=False)
    _fails(capsys, ["fit", str(path), MODEL], "grouping factor 'Subject' has one group")


def test_identifiability(capsys, tmp_path):
    path = tmp_path / "d.csv"
    _frame().assign(obs=lambda d: np.arange(len(d))).to_csv(path, index=False)
    _fails(capsys, ["fit", str(path), "Reaction Days || obs:"], "exactly one observation", "drop `|| obs:`")


def test_formula_syntax_error_with_caret(capsys, sleep_csv):
    err = _fails(capsys, ["fit", str(sleep_csv), "Reaction ~ Days + (1|Subject"], "unclosed '('", lines=3)
    text_line, caret_line = err.splitlines()[1:]
    assert caret_line.index("^") == text_line.index("Reaction") + len("Reaction ~ Days + (1|Subject")


def test_binary_garbage_csv(capsys, tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(bytes(range(256)) * 8)
    _fails(capsys, ["fit", str(path), MODEL], "is not a text (CSV) file")
    _fails(capsys, ["nesting", str(path), "Subject"], "is not a text (CSV) file")


def test_text_named_parquet(capsys, tmp_path):
    path = tmp_path / "d.parquet"
    path.write_text("Reaction,Days,Subject\n1,2,3\n")
    _fails(capsys, ["fit", str(path), MODEL], "is not a Parquet file")


def test_unknown_extension_and_missing_file(capsys, tmp_path):
    _fails(capsys, ["fit", str(tmp_path / "d.xlsx"), MODEL], "unsupported file type '.xlsx'")
    _fails(capsys, ["fit", str(tmp_path / "none.csv"), MODEL], "does not exist")


def test_unknown_option(capsys, sleep_csv):
    _fails(capsys, ["fit", str(sleep_csv), MODEL, "--bogus"], "No such option: --bogus")
    _fails(capsys, ["fit", str(sleep_csv), MODEL, "--style", "spss"], "--style must be 'stata' or 'lme4'")
    _fails(capsys, ["frobnicate"], "No such command")


def test_fit_writes_no_plot_when_it_fails(capsys, sleep_csv, tmp_path):
    plot = tmp_path / "plot.png"
    _fails(capsys, ["fit", str(sleep_csv), "Reaction ~ Days + (1|Subjet)", "--plot", str(plot)], "Subjet")
    assert not plot.exists()
    _fails(capsys, ["fit", str(sleep_csv), MODEL, "--plot", str(tmp_path / "plot.xyz")], "unsupported image type")
    _fails(capsys, ["fit", str(sleep_csv), MODEL, "--plot", str(tmp_path / "no" / "plot.png")], "does not exist")
    assert list(tmp_path.iterdir()) == [sleep_csv]


def test_simulate_writes_nothing_when_it_fails(capsys, tmp_path):
    out = tmp_path / "sim.csv"
    _fails(
        capsys,
        ["simulate", SEED_TOML, "--seed", "1", "-o", str(out), "--set", "levels.district.n=-3"],
        "levels.district.n",
    )
    _fails(capsys, ["simulate", SEED_TOML, "--seed", "1", "-o", str(tmp_path / "sim.xlsx")], "unsupported extension")
    _fails(capsys, ["simulate", str(DATA / "sleepstudy.csv"), "--seed", "1", "-o", str(out)], "not valid TOML")
    assert list(tmp_path.iterdir()) == []


def test_study_writes_nothing_when_it_fails(capsys, tmp_path):
    csv, html = tmp_path / "reps.csv", tmp_path / "report.html"
    base = ["study", SEED_TOML, "--reps", "1", "--csv", str(csv), "--report", str(html), "--no-progress"]
    _fails(capsys, base + ["-m", "perform ~ tutoring + (1|dist_id"], "unclosed '('", lines=3)
    _fails(capsys, base + ["-m", "perform ~ tutoring + (1|dist_id)", "--set", "levels.nope.n=3"], "no level 'nope'")
    _fails(capsys, base + ["-m", "perform ~ tutoring + (1|dist_id)", "--grid", "levels.district.n"], "--grid needs")
    assert list(tmp_path.iterdir()) == []


def test_study_leaves_no_csv_when_the_report_fails(capsys, tmp_path, monkeypatch):
    from hlm.errors import FileError
    from hlm.study import StudyResult

    def broken(self, path, **kwargs):
        raise FileError(f"cannot write '{path}'")

    monkeypatch.setattr(StudyResult, "report", broken)
    csv, html = tmp_path / "reps.csv", tmp_path / "report.html"
    _fails(
        capsys,
        [
            "study",
            SEED_TOML,
            "--reps",
            "1",
            "--set",
            "levels.district.n=3",
            "--jobs",
            "1",
            "-m",
            "perform ~ tutoring + (1|dist_id)",
            "--csv",
            str(csv),
            "--report",
            str(html),
            "--no-progress",
        ],
        "cannot write",
    )
    assert list(tmp_path.iterdir()) == []
