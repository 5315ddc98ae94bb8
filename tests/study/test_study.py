"""Monte Carlo studies: hlm.study, its summary, report, CLI (hlm.study, hlm.cli.study)."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hlm
import support
from hlm.errors import DataError, FormulaError, OptionError
from hlm.simulate import Covariate, Design, Level, Observations, simulate
from hlm.study import StudyModel, Truth, replicate_seed, study
from hlm.study.report import report_html
from hlm.study.result import SUMMARY_COLUMNS

ROOT = support.ROOT
SEED_TOML = ROOT / "examples" / "seed.toml"
MIXED = "perform ~ tutoring + (1|dist_id/school_id/student_id)"
STATA = "perform tutoring || dist_id: || school_id: || student_id:"


def small_design(districts: int = 6) -> Design:
    """The seed's design shrunk to three levels and a few hundred rows."""
    return Design(
        (
            Level("district", id="dist_id", n=districts, sd=2.0),
            Level("school", id="school_id", n=3, sd=3.0),
            Level("student", id="student_id", n=8, sd=5.0),
        ),
        observations=Observations(n=2, name="semester"),
        residual_sd=6.0,
        covariates=(Covariate("tutoring", "Bernoulli(0.2)"),),
        fixed={"intercept": 0.0, "tutoring": 2.0},
        response="perform",
    )


@pytest.fixture(scope="module")
def small_study():
    return study(small_design(), [MIXED, "xtreg fe student_id", "ols"], reps=6, seed=11, n_jobs=1, progress=False)


# ---- truth -------------------------------------------------------------------------------
def test_truth_of_full_model_is_the_design():
    t = Truth.from_design(small_design())
    full = [0, 1, 2]
    assert [t.sd(full, i) for i in full] == pytest.approx([2.0, 3.0, 5.0])
    assert t.residual_sd(full) == pytest.approx(6.0)
    total = 4 + 9 + 25 + 36
    assert t.icc(full, 2) == pytest.approx((4 + 9 + 25) / total)
    assert t.icc(full, 0) == pytest.approx(4 / total)


def test_truth_collapses_omitted_levels():
    t = Truth.from_design(small_design())
    assert t.sd([2], 2) == pytest.approx(math.sqrt(4 + 9 + 25))  # student-only model: all outer levels
    assert t.sd([0, 2], 2) == pytest.approx(math.sqrt(9 + 25))  # school omitted: into the student SD
    assert t.sd([1], 1) == pytest.approx(math.sqrt(4 + 9))  # school only: district into school ...
    assert t.residual_sd([1]) == pytest.approx(math.sqrt(36 + 25))  # ... students into the residual
    assert t.residual_sd([]) == pytest.approx(math.sqrt(4 + 9 + 25 + 36))  # OLS
    assert t.level_index("student_id:school_id:dist_id") == 2
    assert t.level_index("school_id") == 1
    assert t.level_index("semester") is None
    assert t.fixed_truth("(Intercept)") == 0.0 and t.fixed_truth("_cons") == 0.0
    assert t.fixed_truth("tutoring") == 2.0
    assert t.fixed_truth("semester") == 0.0  # a design variable without an effect
    assert t.fixed_truth("tutoring:semester") is None


# ---- models ------------------------------------------------------------------------------
def test_model_strings():
    d = small_design()
    assert StudyModel.parse(MIXED, d).kind == "mixed"
    assert StudyModel.parse(STATA, d).kind == "mixed"
    m = StudyModel.parse("xtreg fe student_id", d)
    assert (m.kind, m.estimator, m.panel, m.model) == ("xtreg", "fe", "student_id", "perform ~ tutoring")
    m = StudyModel.parse("xtreg re school_id: perform ~ tutoring + semester", d)
    assert (m.estimator, m.panel, m.model) == ("re", "school_id", "perform ~ tutoring + semester")
    assert StudyModel.parse("ols", d).kind == "ols"
    assert StudyModel.parse("perform ~ tutoring", d).kind == "ols"
    assert StudyModel.parse("perform tutoring", d).kind == "ols"
    with pytest.raises(FormulaError, match="does not simulate"):
        StudyModel.parse("perform ~ nope + (1|dist_id)", d)
    with pytest.raises(FormulaError, match="does not simulate"):
        StudyModel.parse("xtreg fe class_id", d)
    with pytest.raises(FormulaError, match="xtreg fe PANEL"):
        StudyModel.parse("xtreg student_id", d)


def test_random_slopes_and_omitted_levels():
    d = Design(
        (
            Level("school", id="school_id", n=12, sd=3.0, slopes={"tutoring": 1.5}, corr=0.4),
            Level("student", id="student_id", n=10, sd=2.0),
        ),
        observations=Observations(n=3),
        residual_sd=1.0,
        covariates=(Covariate("tutoring", "Bernoulli(0.5)"),),
        fixed={"tutoring": 2.0},
        response="y",
    )
    slope = "y ~ tutoring + (1 + tutoring | school_id) + (1 | student_id)"
    res = study(d, [slope, "y ~ tutoring + (1 | school_id)"], reps=2, seed=5, n_jobs=1, progress=False)
    r = res.replicates
    truth = r[r["model"] == slope].groupby("parameter", sort=False)["truth"].first()
    assert truth["sd[school:tutoring]"] == pytest.approx(1.5)
    assert truth["cor[school:(Intercept),tutoring]"] == pytest.approx(0.4)
    assert truth["sd[school]"] == pytest.approx(3.0) and truth["sd[student]"] == pytest.approx(2.0)
    small = r[r["model"] == "y ~ tutoring + (1 | school_id)"].groupby("parameter")["truth"].first()
    assert small["sd[residual]"] == pytest.approx(math.sqrt(1 + 4))  # students collapse into the residual
    assert "sd[student]" not in small


# ---- study -------------------------------------------------------------------------------
def test_same_seed_same_results_whatever_n_jobs():
    d = small_design()
    kw = dict(reps=5, seed=3, progress=False, intervals=True)
    one = study(d, [MIXED, "xtreg re student_id"], n_jobs=1, **kw)
    two = study(d, [MIXED, "xtreg re student_id"], n_jobs=2, chunk_size=2, **kw)
    pd.testing.assert_frame_equal(one.replicates, two.replicates)
    cols = ["point", "rep", "seed", "model", "converged", "singular", "error"]
    pd.testing.assert_frame_equal(one.fits[cols], two.fits[cols])
    other = study(d, [MIXED], n_jobs=1, reps=2, seed=4, progress=False, intervals=False)
    assert not np.array_equal(other.fits["seed"].to_numpy(), one.fits["seed"].to_numpy()[:2])


def test_replicate_seed_reproduces_a_replicate(small_study):
    row = small_study.replicates.query("rep == 4 and parameter == 'tutoring' and model == @MIXED").iloc[0]
    assert row["seed"] == replicate_seed(11, 0, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hlm.fit(MIXED, simulate(small_design(), seed=int(row["seed"])))
    assert fit.fixef["tutoring"] == row["estimate"]
    assert fit.se["tutoring"] == pytest.approx(row["std_error"])


def test_replicates_are_tidy(small_study):
    r = small_study.replicates
    assert {
        "point",
        "rep",
        "seed",
        "model",
        "parameter",
        "kind",
        "term",
        "truth",
        "estimate",
        "std_error",
        "conf_low",
        "conf_high",
        "covered",
        "converged",
        "singular",
    } <= set(r.columns)
    mixed = r[r["model"] == MIXED]
    assert list(dict.fromkeys(mixed["parameter"])) == [
        "intercept",
        "tutoring",
        "sd[district]",
        "sd[school]",
        "sd[student]",
        "sd[residual]",
        "icc[district]",
        "icc[school]",
        "icc[student]",
    ]
    fe = set(r.loc[r["model"] == "xtreg fe student_id", "parameter"])
    assert fe == {"intercept", "tutoring", "sd[student]", "sd[residual]", "icc[student]"}
    assert set(r.loc[r["model"] == "ols", "parameter"]) == {"intercept", "tutoring", "sd[residual]"}
    sd = mixed[mixed["parameter"] == "sd[school]"]
    assert (sd["truth"] == 3.0).all()
    ok = sd["conf_low"].notna()
    assert ok.any() and (sd.loc[ok, "conf_low"] < sd.loc[ok, "estimate"]).all()
    assert (sd.loc[ok, "covered"] == ((sd["conf_low"] <= 3.0) & (3.0 <= sd["conf_high"]))[ok]).all()
    assert (r.loc[r["model"] == "xtreg fe student_id", "truth"].max()) == pytest.approx(math.sqrt(38))


def test_summary(small_study):
    s = small_study.summary()
    assert list(s.columns) == ["point", *SUMMARY_COLUMNS]
    assert list(dict.fromkeys(s["model"])) == [MIXED, "xtreg fe student_id", "ols"]
    r = small_study.replicates
    for _, row in s.iterrows():
        est = r[(r["model"] == row["model"]) & (r["parameter"] == row["parameter"])]["estimate"]
        assert row["n"] == 6
        assert row["mean"] == pytest.approx(est.mean())
        assert row["bias"] == pytest.approx(est.mean() - row["truth"])
        assert row["rmse"] == pytest.approx(math.sqrt(((est - row["truth"]) ** 2).mean()))
        assert row["sd"] == pytest.approx(est.std(ddof=1))
        assert math.isnan(row["coverage"]) or 0 <= row["coverage"] <= 1
        assert row["converged"] == 1.0 and row["failed"] == 0.0 and row["seconds"] > 0
    tut = s[(s["model"] == MIXED) & (s["parameter"] == "tutoring")].iloc[0]
    assert tut["rel_bias"] == pytest.approx(tut["bias"] / 2.0)
    assert tut["n_ci"] == 6 and not math.isnan(tut["mean_se"])
    f = small_study.fit_summary()
    assert list(f["n_fits"]) == [6, 6, 6]
    assert "Monte Carlo study" in str(small_study) and "sd[school]" in str(small_study)


def test_grid():
    res = study(
        small_design(),
        [MIXED],
        reps=3,
        seed=1,
        grid={"levels.district.n": [3, 5], "levels.school.sd": [3.0, 0.5]},
        n_jobs=1,
        progress=False,
        intervals=False,
    )
    assert res.grid == {"levels.district.n": [3, 5], "levels.school.sd": [3.0, 0.5]}
    f = res.fits
    assert list(f["levels.district.n"]) == [3] * 6 + [5] * 6
    assert list(f["levels.school.sd"].iloc[:6]) == [3.0] * 3 + [0.5] * 3
    s = res.summary()
    assert len(s[s["parameter"] == "sd[school]"]) == 4
    assert set(s.loc[s["parameter"] == "sd[school]", "truth"]) == {3.0, 0.5}
    nd = res.replicates.groupby("point")["levels.district.n"].first()
    assert list(nd) == [3, 3, 5, 5]
    assert res.summary()["coverage"].loc[s["kind"] == "sd"].isna().all()  # no intervals asked for
    with pytest.raises(OptionError):
        study(small_design(), [MIXED], reps=2, grid={"levels.district.n": 5})


def test_failed_fits_are_recorded(monkeypatch):
    real = hlm.fit
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] % 2 == 0:
            raise DataError("simulated failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(hlm.api, "fit", flaky)  # the study fits through hlm.api.fit
    res = study(small_design(), [MIXED], reps=4, seed=2, n_jobs=1, progress=False, intervals=False)
    assert res.fits["error"].notna().sum() == 2
    s = res.summary()
    row = s[s["parameter"] == "tutoring"].iloc[0]
    assert row["n"] == 2 and row["failed"] == 0.5 and row["converged"] == 0.5


def test_bad_arguments():
    d = small_design()
    for kw in ({"reps": 0}, {"reps": 2, "seed": -1}, {"reps": 2, "n_jobs": 0}, {"reps": 2, "level": 1.5}):
        with pytest.raises(OptionError):
            study(d, [MIXED], **kw)
    with pytest.raises(OptionError):
        study(d, [], reps=2)
    with pytest.raises(OptionError):
        study(d, [MIXED, MIXED], reps=2)


# ---- output ------------------------------------------------------------------------------
def test_csv_and_json(small_study, tmp_path):
    p = small_study.to_csv(tmp_path / "reps.csv")
    back = pd.read_csv(p)
    assert len(back) == len(small_study.replicates)
    small_study.to_csv(tmp_path / "summary.csv", table="summary")
    assert "coverage" in pd.read_csv(tmp_path / "summary.csv").columns
    data = json.loads(small_study.to_json(tmp_path / "s.json"))
    assert json.loads((tmp_path / "s.json").read_text()) == data
    assert data["settings"]["reps"] == 6 and data["settings"]["models"][0] == MIXED
    assert {r["parameter"] for r in data["summary"]} >= {"tutoring", "sd[school]", "icc[student]"}
    assert "replicates" not in data
    assert len(small_study.to_dict(replicates=True)["replicates"]) == len(small_study.replicates)


def test_plots(small_study):
    grid = study(
        small_design(),
        [MIXED, "xtreg re student_id"],
        reps=2,
        seed=1,
        grid={"levels.district.n": [3, 30]},
        n_jobs=1,
        progress=False,
    )
    for res, params in ((small_study, None), (grid, ["tutoring", "sd[student]"])):
        for kind in ("distributions", "coverage", "rmse"):
            fig = res.plot(kind, parameters=params)
            assert fig.axes and any(ax.has_data() for ax in fig.axes)
    fig = grid.plot("rmse", parameters=["tutoring", "sd[student]"])
    assert len(fig.axes) == 2 and fig.axes[0].get_xscale() == "log"
    assert len(fig.axes[0].get_lines()) >= 2  # a line per model
    with pytest.raises(OptionError):
        small_study.plot("nope")


@pytest.fixture(scope="module")
def report_path(small_study, tmp_path_factory):
    return small_study.report(tmp_path_factory.mktemp("report") / "study.html")


def test_report_is_self_contained(report_path):
    text = report_path.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert text.count("<img alt=") == 3 and text.count("data:image/png;base64,") == 3
    markup = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    assert "http://" not in markup and "https://" not in markup and "<script" not in markup
    assert "sd[school]" in text and "coverage" in text


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_report_renders_in_chromium(report_path, tmp_path):
    from PIL import Image

    html_path = report_path
    png = tmp_path / "shot.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--hide-scrollbars",
            "--window-size=1200,2400",
            f"--screenshot={png}",
            html_path.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert png.stat().st_size > 50_000
    img = np.asarray(Image.open(png).convert("RGB"), dtype=float)
    assert img.shape == (2400, 1200, 3)
    assert img.std() > 10  # not a blank page
    coloured = (img.max(axis=2) - img.min(axis=2)) > 60  # the plots' blue and orange; text is grey
    assert coloured.sum() > 2000
    assert coloured.any(axis=1).sum() > 300  # over many rows: the images were decoded and drawn


# ---- CLI ---------------------------------------------------------------------------------
def _toml(tmp_path: Path) -> Path:
    path = tmp_path / "small.toml"
    small_design(4).to_toml(path)
    return path


def test_cli_study(tmp_path, capsys):
    from hlm.cli import run

    design = _toml(tmp_path)
    code = run(
        [
            "study",
            str(design),
            "--model",
            MIXED,
            "--reps",
            "3",
            "--seed",
            "5",
            "--grid",
            "levels.district.n=3,4",
            "--set",
            "levels.school.sd=2.5",
            "--jobs",
            "1",
            "--json",
            "--report",
            str(tmp_path / "r.html"),
            "--csv",
            str(tmp_path / "r.csv"),
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    data = json.loads(out)
    assert data["settings"]["grid"] == {"levels.district.n": [3, 4]}
    assert data["settings"]["design"]["levels"][1]["sd"] == 2.5
    sch = [r for r in data["summary"] if r["parameter"] == "sd[school]"]
    assert len(sch) == 2 and all(r["truth"] == 2.5 for r in sch)
    assert (tmp_path / "r.html").read_text().count("data:image/png;base64,") == 3
    assert len(pd.read_csv(tmp_path / "r.csv")) > 0

    code = run(
        [
            "study",
            str(design),
            "-m",
            STATA,
            "-m",
            "xtreg fe student_id",
            "--reps",
            "2",
            "--jobs",
            "1",
            "--no-intervals",
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "sd[district]" in out and "Monte Carlo study" in out and "xtreg fe student_id" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "perform ~ nope + (1|dist_id)", "--reps", "2"], "does not simulate"),
        (["--model", "xtreg zz", "--reps", "2"], "xtreg fe PANEL"),
        (["--model", "ols", "--reps", "0"], "--reps"),
        (["--model", "ols", "--reps", "2", "--grid", "levels.district.n"], "--grid needs"),
        (["--model", "ols", "--reps", "2", "--grid", "levels.nope.n=1,2"], "no level 'nope'"),
        (["--model", "ols", "--reps", "2", "--report", "out.txt"], ".html"),
    ],
)
def test_cli_errors(tmp_path, capsys, args, message):
    from hlm.cli import run

    code = run(["study", str(_toml(tmp_path)), *args, "--jobs", "1"])
    assert code == 2
    assert message in capsys.readouterr().err


def test_cli_grid_values():
    from hlm.cli.study import parse_grid

    assert parse_grid(["levels.district.n=5,10,50", "levels.school.n=Poisson(5, min=1),8"]) == {
        "levels.district.n": [5, 10, 50],
        "levels.school.n": ["Poisson(5, min=1)", 8],
    }


# ---- acceptance --------------------------------------------------------------------------
def test_acceptance_seed_design_at_50_districts():
    """Issue 6: 200 replicates of the seed's design at 50 districts (80,000 rows each): 95% CI
    coverage of the tutoring effect within [0.92, 0.98]; mean SD estimates within 5% of the
    truth for school, teacher and student.  About 12 CPU-seconds (7 s on two idle cores)."""
    design = Design.from_toml(SEED_TOML).set("levels.district.n", 50)
    res = study(
        design,
        ["perform ~ tutoring + (1|dist_id/school_id/teach_id/student_id)"],
        reps=200,
        seed=2024,
        intervals=False,
        progress=False,
    )  # the fixed effects' CIs need no variance-component intervals
    s = res.summary().set_index("parameter")
    assert res.fits["error"].isna().all()
    assert 0.92 <= s.loc["tutoring", "coverage"] <= 0.98
    for level, truth in (("school", 3.0), ("teacher", 4.0), ("student", 5.0)):
        assert s.loc[f"sd[{level}]", "truth"] == truth
        assert abs(s.loc[f"sd[{level}]", "mean"] / truth - 1) < 0.05


def test_stata_command_sets_the_criterion_of_a_study():
    """`mixed` means ML (Stata 13+): a study without reml= follows the string, and its fits are
    the ML fits of the same data; an explicit reml=True that contradicts the string is refused."""
    d = small_design()
    res = study(d, ["mixed " + STATA], reps=2, seed=3, n_jobs=1, progress=False, intervals=False)
    assert res.reml is None and "each model's own criterion" in report_html(res)
    row = res.replicates.query("rep == 0 and parameter == 'tutoring'").iloc[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = hlm.fit(STATA, simulate(d, seed=replicate_seed(3, 0, 0)), reml=False).fixef["tutoring"]
    got = row["estimate"]
    assert got == pytest.approx(want, rel=1e-10)
    bad = study(d, ["mixed " + STATA], reps=1, seed=3, n_jobs=1, progress=False, intervals=False, reml=True)
    assert bad.replicates["error"].str.contains("asks for ML").all()
