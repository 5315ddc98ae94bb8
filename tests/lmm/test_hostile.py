"""Hostile input, second round (issue 12): what cannot be estimated is refused with an
HLMError in the API and one ``error:`` line with exit status 2 in the CLI; every writer
checks its output (format by extension, folder exists and accepts files, an existing file
only with --force / overwrite=True) before any work; studies report failed grid points;
within-parent ids listed inner to outer are flagged as ambiguous.

Numbers are checked against R's stored lme4 fit of sleepstudy (tests/reference)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hlm
import support
from hlm.aggregate.sql.plan import Plan
from hlm.cli import run
from hlm.errors import (
    ComparisonError,
    DataError,
    FileError,
    HLMError,
    HLMWarning,
    IdentifiabilityError,
    StructureWarning,
)
from support import reference

DATA = support.DATA
SEED_TOML = str(support.ROOT / "examples" / "seed.toml")
SLOPES = "Reaction ~ Days + (Days|Subject)"
READ_ONLY = Path("/proc")  # no file can be created there, whoever runs the tests


def _sleep() -> pd.DataFrame:
    return pd.read_csv(DATA / "sleepstudy.csv")


def _fails(capsys, argv: list[str], *expected: str) -> str:
    """``argv`` exits 2 with one ``error:`` line on stderr (no traceback) and nothing on stdout."""
    assert run(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and len(err.rstrip("\n").splitlines()) == 1, err
    assert "Traceback" not in err and "internal error" not in err
    for text in expected:
        assert text in err, (text, err)
    return err


@pytest.fixture()
def const_csv(tmp_path) -> Path:
    path = tmp_path / "const.csv"
    _sleep().assign(Reaction=250.0).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def sleep_fit():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hlm.fit("Reaction ~ Days + (1|Subject)", _sleep())


# ---- what cannot be estimated ------------------------------------------------------------
def test_constant_response_refused(const_csv):
    with pytest.raises(IdentifiabilityError, match="'Reaction' is \\(numerically\\) constant"):
        hlm.fit("Reaction ~ Days + (1|Subject)", const_csv)
    rng = np.random.default_rng(0)
    near = _sleep().assign(Reaction=lambda d: 250.0 + 1e-9 * rng.normal(size=len(d)))
    with pytest.raises(IdentifiabilityError, match="constant"):
        hlm.fit("Reaction ~ Days + (1|Subject)", near)
    for estimator in ("fe", "re", "be", "pooled"):
        with pytest.raises(IdentifiabilityError, match="constant"):
            hlm.xtreg("Reaction Days", pd.read_csv(const_csv), panel="Subject", estimator=estimator)
    within = _sleep().assign(Reaction=lambda d: d["Subject"].astype(float))  # varies between panels only
    with pytest.raises(IdentifiabilityError, match="constant within every panel"):
        hlm.xtreg("Reaction Days", within, panel="Subject", estimator="fe")


def test_constant_response_cli(capsys, const_csv, tmp_path):
    _fails(capsys, ["fit", str(const_csv), "Reaction ~ Days + (1|Subject)"], "constant")
    _fails(capsys, ["xtreg", str(const_csv), "Reaction Days", "--panel", "Subject"], "constant")
    _fails(capsys, ["hausman", str(const_csv), "Reaction Days", "--panel", "Subject"], "constant")
    plot = tmp_path / "p.png"
    _fails(
        capsys,
        ["fit", str(const_csv), "Reaction ~ Days + (1|Subject)", "--plot-kind", "profile", "--plot", str(plot)],
        "constant",
    )
    assert not plot.exists()


@pytest.mark.parametrize("scale", [1e-7, 1e7])
def test_predictor_units_do_not_change_the_fit(scale):
    """Days x 1e7 gave three SDs of 24.28, a zero slope and 'converged'; now R's numbers
    come back once the units are undone."""
    ref = reference("sleepstudy__slope_REML")
    with warnings.catch_warnings():
        warnings.simplefilter("error", HLMWarning)  # no singular-fit or convergence warning either
        m = hlm.fit(SLOPES, _sleep().assign(Days=lambda d: d["Days"] * scale))
    assert m.converged and not m.singular
    beta = [f["estimate"] for f in ref["fixef"]]
    np.testing.assert_allclose(m.fixef.to_numpy() * [1, scale], beta, rtol=1e-5)
    sd = m.varcorr["sdcor"].to_numpy()
    group = ref["varcorr"]["groups"][0]
    np.testing.assert_allclose(sd[:2] * [1, scale], group["sd"], rtol=1e-4)
    np.testing.assert_allclose(sd[2], group["corr"]["values"][0][1], atol=1e-3)


def test_overflowing_scale_refused(capsys, tmp_path):
    days = _sleep().assign(Days=lambda d: d["Days"] * 1e300)
    with pytest.raises(DataError, match="'Days'.*too large.*rescale"):
        hlm.fit(SLOPES, days)
    path = tmp_path / "big.csv"
    days.to_csv(path, index=False)
    _fails(capsys, ["fit", str(path), SLOPES], "rescale 'Days'")
    with pytest.raises(DataError, match="'Reaction'"):
        hlm.fit(SLOPES, _sleep().assign(Reaction=lambda d: d["Reaction"] * 1e300))


# ---- model comparison --------------------------------------------------------------------
def test_non_nested_models_not_lr_tested():
    d = _sleep().assign(Days2=lambda d: d["Days"] ** 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HLMWarning)
        a = hlm.fit("Reaction ~ Days + (1|Subject)", d, reml=False)
        b = hlm.fit("Reaction ~ Days2 + (Days|Subject)", d, reml=False)
        c = hlm.fit("Reaction ~ Days + (0 + Days|Subject)", d, reml=False)
    with pytest.raises(ComparisonError, match="not nested.*fixed effect Days"):
        hlm.lrtest(a, b)
    with pytest.raises(ComparisonError, match="not nested.*random effect"):  # same df, different random part
        hlm.lrtest(a, c)
    with pytest.warns(HLMWarning, match="not nested"):
        table = hlm.compare(a, b)
    assert table["chisq"].isna().all() and table["p_value"].isna().all()
    assert table["aic"].notna().all() and "AIC and BIC only" in table.attrs["note"]


def test_lrtest_takes_fits_only(sleep_fit):
    with pytest.raises(ComparisonError, match="not int"):
        hlm.lrtest(sleep_fit, 3)
    with pytest.raises(ComparisonError):
        hlm.compare(sleep_fit, "m1")


# ---- resources ---------------------------------------------------------------------------
_HIGH_CARD = """
import resource, sys, time, numpy as np, pandas as pd, hlm
src = sys.argv[1]
data = pd.read_parquet(src) if sys.argv[2] == "memory" else src
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
fit = hlm.fit  # hlm loads hlm.api on first use: outside the timing
before, t = peak(), time.perf_counter()
try:
    fit("y ~ f + (1|g)", data)
    print("fitted")
except hlm.errors.DataError as exc:
    print(f"{time.perf_counter() - t:.3f} {peak() - before:.0f} {exc}")
"""


@pytest.mark.parametrize("how", ["memory", "parquet"])
def test_high_cardinality_factor_refused_up_front(tmp_path, how):
    rng = np.random.default_rng(1)
    n = 200_000
    path = tmp_path / "card.parquet"
    pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "f": pd.Series(rng.permutation(n) % 100_000).map("L{}".format),
            "g": rng.integers(0, 50, n),
        }
    ).to_parquet(path)
    out = subprocess.run(
        [sys.executable, "-c", _HIGH_CARD, str(path), how], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    _seconds, rss_mb, message = out.split(" ", 2)  # rss_mb: growth of the peak memory during the fit
    assert "'f' has 100,000 levels" in message and "(1 | f)" in message
    assert float(rss_mb) < 500, out  # refused before the levels were coded (speed: make bench, not here)


def test_many_predictors_counted_and_refused_fast(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(rng.normal(size=(200, 300)), columns=[f"x{i}" for i in range(300)])
    frame = frame.assign(y=rng.normal(size=200), g=np.repeat(np.arange(20), 10))
    model = "y ~ " + " + ".join(f"x{i}" for i in range(300)) + " + (1|g)"
    with pytest.raises(DataError, match="200 observations cannot identify 301 fixed effects"):
        hlm.fit(model, frame)
    path = tmp_path / "wide.csv"
    frame.to_csv(path, index=False)

    def no_scan(*args, **kwargs):
        raise AssertionError("the K'K scan ran before the rows were counted")

    monkeypatch.setattr(Plan, "global_query", no_scan)  # refused from the count alone, before p^2 work
    _fails(capsys, ["fit", str(path), model], "cannot identify 301 fixed effects")


def test_repeated_random_intercepts_named_as_such():
    model = "Reaction ~ Days + " + " + ".join(["(1|Subject)"] * 50)
    with pytest.raises(IdentifiabilityError, match="appears 50 times") as info:
        hlm.fit(model, _sleep())
    assert "slope" not in str(info.value)


# ---- data objects ------------------------------------------------------------------------
def test_duplicate_columns_and_lazy_frames(sleep_fit):
    pl = pytest.importorskip("polars")
    dup = pd.concat([_sleep(), _sleep()[["Days"]]], axis=1)
    with pytest.raises(DataError, match="more than one column named 'Days'"):
        hlm.fit("Reaction ~ Days + (1|Subject)", dup)
    with pytest.raises(DataError, match="more than one column named 'Days'"):
        hlm.xtreg("Reaction Days", dup, panel="Subject")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HLMWarning)
        lazy = hlm.fit("Reaction ~ Days + (1|Subject)", pl.from_pandas(_sleep()).lazy())
    np.testing.assert_allclose(lazy.fixef.to_numpy(), sleep_fit.fixef.to_numpy(), rtol=1e-12)


# ---- output files ------------------------------------------------------------------------
def _writers(fit, source: Path):
    """Every API writer as path, overwrite -> call."""
    return {
        "plot": lambda p, o: fit.plot("caterpillar", file=p, overwrite=o),
        "write_predictions": lambda p, o: hlm.write_predictions(fit, source, p, overwrite=o),
        "write_ranef": lambda p, o: hlm.write_ranef(fit, source, p, overwrite=o),
        "write_frame": lambda p, o: hlm.simulate.write_frame(_sleep(), p, overwrite=o),
    }


@pytest.mark.parametrize("writer", ["plot", "write_predictions", "write_ranef", "write_frame"])
def test_api_writers_check_their_output(tmp_path, writer):
    source = tmp_path / "sleep.csv"
    _sleep().to_csv(source, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HLMWarning)
        fit = hlm.fit("Reaction ~ Days + (1|Subject)", source)
    write = _writers(fit, source)[writer]
    ext = ".png" if writer == "plot" else ".csv"
    with pytest.raises(FileError, match="does not exist"):
        write(tmp_path / "nodir" / f"x{ext}", False)
    with pytest.raises(FileError, match="not writable"):
        write(READ_ONLY / f"x{ext}", False)
    with pytest.raises(FileError, match="unsupported extension"):
        write(tmp_path / "x.xyz", False)
    target = tmp_path / f"x{ext}"
    target.write_text("old")
    with pytest.raises(FileError, match="already exists; pass overwrite=True"):
        write(target, False)
    assert target.read_text() == "old"
    write(target, True)
    assert target.stat().st_size > 3


def test_file_format_follows_the_extension(tmp_path):
    source = tmp_path / "sleep.csv"
    _sleep().to_csv(source, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HLMWarning)
        fit = hlm.fit("Reaction ~ Days + (1|Subject)", source)
    assert hlm.write_predictions(fit, source, tmp_path / "p.csv") == 180
    assert hlm.write_predictions(fit, source, tmp_path / "p.parquet") == 180
    as_csv, as_parquet = pd.read_csv(tmp_path / "p.csv"), pd.read_parquet(tmp_path / "p.parquet")
    np.testing.assert_allclose(as_csv["fitted"], as_parquet["fitted"], rtol=1e-12)
    np.testing.assert_allclose(as_csv["fitted"], fit.predict(), rtol=1e-6)


def test_cli_writers_check_before_working(capsys, tmp_path):
    sleep = tmp_path / "sleep.csv"
    _sleep().to_csv(sleep, index=False)
    fit = ["fit", str(sleep), "Reaction ~ Days + (1|Subject)", "--plot"]
    sim = ["simulate", SEED_TOML, "--seed", "1", "--set", "levels.district.n=2", "-o"]
    study = [
        "study",
        SEED_TOML,
        "-m",
        "perform ~ tutoring + (1|dist_id)",
        "-r",
        "1",
        "--no-progress",
        "--set",
        "levels.district.n=2",
    ]
    for argv in (fit, sim, [*study, "--csv"], [*study, "--report"]):
        ext = {"--plot": ".png", "-o": ".csv", "--csv": ".csv", "--report": ".html"}[argv[-1]]
        _fails(capsys, [*argv, str(tmp_path / "nodir" / f"x{ext}")], "does not exist")
        _fails(capsys, [*argv, str(READ_ONLY / f"x{ext}")], "not writable")
        existing = tmp_path / f"old{ext}"
        existing.write_text("old")
        _fails(capsys, [*argv, str(existing)], "already exists; pass --force")
        assert existing.read_text() == "old"
    _fails(capsys, [*sim[:-1], "--rows-per-file", "100", "-o", str(READ_ONLY / "parts")], "not writable")
    assert run([*sim, str(tmp_path / "old.csv"), "--force"]) == 0
    assert len(pd.read_csv(tmp_path / "old.csv")) > 1


def test_cli_messages_use_cli_option_names(capsys, tmp_path):
    sleep = tmp_path / "sleep.csv"
    _sleep().to_csv(sleep, index=False)
    err = _fails(capsys, ["xtreg", str(sleep), "Reaction Days", "--panel", "Subject", "--fe", "--sa"], "--sa", "--re")
    assert "sa=True" not in err and "estimator=" not in err
    err = _fails(
        capsys,
        ["simulate", SEED_TOML, "--seed", "1", "-o", str(tmp_path / "d"), "--rows-per-file", "0"],
        "--rows-per-file",
    )
    assert "chunk_rows" not in err


# ---- studies -----------------------------------------------------------------------------
def test_study_reports_points_where_every_fit_failed(tmp_path, capsys):
    csv = tmp_path / "s.csv"
    argv = [
        "study",
        SEED_TOML,
        "-m",
        "perform ~ tutoring + (1|dist_id/school_id)",
        "-r",
        "2",
        "--no-progress",
        "--no-intervals",
        "--set",
        "levels.teacher.n=2",
        "--set",
        "levels.student.n=3",
        "--grid",
        "levels.district.n=1,3",
        "--csv",
        str(csv),
        "-j",
        "1",
    ]
    assert run(argv) == 0
    out = capsys.readouterr().out
    assert "[levels.district.n=1]" in out and "failed 100.0%" in out and "most common failure: " in out
    assert "'dist_id' has one group" in out
    rows = pd.read_csv(csv)
    failed = rows[rows["levels.district.n"] == 1]
    assert len(failed) == 2 and failed["parameter"].isna().all() and failed["error"].str.contains("one group").all()


# ---- within-parent ids listed inner to outer ------------------------------------------------
def test_within_parent_ids_listed_inner_to_outer_are_flagged(tmp_path, capsys):
    path = tmp_path / "seed.parquet"
    assert run(["simulate", SEED_TOML, "--seed", "1", "--ids", "within", "-o", str(path)]) == 0  # the seed's design
    capsys.readouterr()
    reversed_ = "perform tutoring || student_id: || teach_id: || school_id: || dist_id:"
    with pytest.warns(StructureWarning) as caught:
        hlm.fit(reversed_, path)
    text = " ".join(str(w.message) for w in caught if issubclass(w.category, StructureWarning))
    assert "cannot tell the order" in text
    assert "student_id (20) > teach_id (160)" in text and "dist_id (50) > school_id (250)" in text
    with warnings.catch_warnings():
        warnings.simplefilter("error", StructureWarning)  # the intended order raises nothing
        warnings.simplefilter("ignore", hlm.errors.SingularFitWarning)
        hlm.fit("perform tutoring || dist_id: || school_id: || teach_id: || student_id:", path)
    report = hlm.nesting(path, ["student_id", "teach_id", "school_id", "dist_id"])
    assert "Tree, outermost first" not in report.summary() and "dist_id (50) > school_id" in report.ambiguity
    assert run(["nesting", str(path), "student_id", "teach_id", "school_id", "dist_id"]) == 0
    assert "Tree, outermost first" not in capsys.readouterr().out
    assert hlm.nesting(path, ["dist_id", "school_id", "teach_id", "student_id"]).ambiguity == ""


def test_every_error_here_is_an_hlm_error():
    for cls in (ComparisonError, DataError, FileError, IdentifiabilityError):
        assert issubclass(cls, HLMError)


@pytest.mark.parametrize("column, scale", [("Days", 1e300), ("Reaction", 1e300), ("Days", 1e-300), ("Days", 1e-120)])
def test_extreme_scales_refused_by_xtreg_and_fit(column, scale):
    """1e-300 underflows to a zero sum of squares (once silently dropped as collinear); 1e300 overflows."""
    data = _sleep().assign(**{column: lambda d: d[column] * scale})
    for estimator in ("fe", "re", "be", "pooled"):
        with pytest.raises(DataError, match=f"'{column}' are too (large|small)"):
            hlm.xtreg("Reaction Days", data, panel="Subject", estimator=estimator)
    with pytest.raises(DataError, match=f"rescale '{column}'"):
        hlm.fit(SLOPES, data)


@pytest.mark.parametrize(
    "frame_change, model, expected",
    [
        ({"Days": 1.0}, SLOPES, "'Days' of 'Subject' is a multiple of (Intercept)"),
        ({"D2": "2*Days"}, "Reaction ~ Days + (Days + D2|Subject)", "'D2' of 'Subject' is a linear combination"),
        ({"D0": 0.0}, "Reaction ~ Days + (0 + Days + D0|Subject)", "'D0' of 'Subject' is zero"),
    ],
)
def test_dependent_random_effect_columns_refused(frame_change, model, expected):
    """A slope on a constant column was fitted as 'converged' with SDs 13 and 36 and r = -0.2."""
    data = _sleep()
    data = data.assign(**{k: (2 * data["Days"] if v == "2*Days" else v) for k, v in frame_change.items()})
    with pytest.raises(IdentifiabilityError) as info:
        hlm.fit(model, data)
    assert expected in str(info.value)


def test_odd_arguments_are_hlm_errors(sleep_fit, tmp_path):
    with pytest.raises(FileError, match="named by a path, not int"):
        hlm.simulate.write_frame(_sleep(), 3)
    with pytest.raises(FileError, match="named by a path, not int"):
        sleep_fit.plot(file=3)
    with pytest.raises(DataError, match="named by strings"):
        hlm.nesting(_sleep(), [3])
    with pytest.raises(DataError, match="complex numbers"):
        hlm.fit("Reaction ~ Days + (1|Subject)", _sleep().assign(Days=lambda d: d["Days"] + 1j))
