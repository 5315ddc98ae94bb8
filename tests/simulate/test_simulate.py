"""Tests of hlm.simulate: designs, TOML, the simulator, chunked Parquet output and the CLI.

Tolerances: every statistical check uses a fixed seed and allows 4 standard errors of
the statistic's sampling distribution (computed from the true design), so a correct
simulator fails a given check for fewer than 1 in 10,000 seeds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import support
from hlm.cli import run
from hlm.errors import FileError, HLMError, OptionError
from hlm.simulate import (
    Bernoulli,
    Covariate,
    Design,
    Level,
    Normal,
    Observations,
    Poisson,
    UniformInt,
    parse_distribution,
    simulate,
    simulate_to_parquet,
    write_frame,
)

SEED_TOML = support.ROOT / "examples" / "seed.toml"
Z = 4.0  # standard errors allowed in statistical checks


@pytest.fixture(scope="module")
def seed_design() -> Design:
    return Design.from_toml(SEED_TOML)


def seed_in_python() -> Design:
    return Design(
        [
            Level("district", id="dist_id", n=50, sd=2),
            Level("school", id="school_id", n=5, sd=3),
            Level("teacher", id="teach_id", n=8, sd=4),
            Level("student", id="student_id", n=20, sd=5),
        ],
        observations=Observations(n=2, name="semester"),
        residual_sd=6,
        covariates=[Covariate("tutoring", Bernoulli(0.2))],
        fixed={"intercept": 0, "tutoring": 2},
        response="perform",
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- designs ---------------------------------------------------------------------------


def test_seed_toml_is_the_seed_design(seed_design):
    assert seed_design == seed_in_python()
    assert [lv.id for lv in seed_design.levels] == ["dist_id", "school_id", "teach_id", "student_id"]
    assert seed_design.expected_rows() == 80_000 and seed_design.is_balanced()


def test_toml_round_trip(tmp_path, seed_design):
    unbalanced = (
        seed_design.set("levels.school.n", "Poisson(5, min=1)")
        .set("levels.student.slopes.tutoring", 1.5)
        .set("levels.student.corr", -0.3)
        .set("covariates.coach", {"dist": "Bernoulli(0.5)", "level": "teacher"})
    )
    for design in (seed_design, unbalanced):
        path = tmp_path / "d.toml"
        design.to_toml(path)
        assert Design.from_toml(path) == design
        assert Design.from_dict(design.to_dict()) == design


def test_design_is_immutable_and_set_returns_a_copy(seed_design):
    with pytest.raises(dataclasses.FrozenInstanceError):
        seed_design.residual_sd = 1.0  # type: ignore[misc]
    changed = seed_design.set("levels.district.n", 7)
    assert changed.levels[0].n == 7 and seed_design.levels[0].n == 50
    assert hash(changed) != hash(seed_design)
    assert seed_design.set("fixed.tutoring", 0).fixed["tutoring"] == 0.0
    assert seed_design.set("residual_sd", 1).residual_sd == 1.0
    assert seed_design.set("covariates.tutoring", "Bernoulli(0.5)").covariates[0].dist == Bernoulli(0.5)
    assert seed_design.set("covariates.tutoring.level", "school").covariates[0].level == "school"
    assert seed_design.set("levels.school.n", "UniformInt(2, 4)").levels[1].n == UniformInt(2, 4)
    assert seed_design.set("levels.school.n", Poisson(4, min=1)).levels[1].n == Poisson(4, min=1)
    assert seed_design.set("covariates.tutoring", Bernoulli(0.3)).covariates[0].dist == Bernoulli(0.3)
    assert seed_design.set("observations.n", 3).observations == Observations(n=3, name="semester")
    assert seed_design.set("observations.name", "term").observations.name == "term"


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("levels.distrct.n", 5, "no level 'distrct'"),
        ("levels.district.sdd", 5, "did you mean 'sd'"),
        ("levels.district.sd", -1, "must be >= 0"),
        ("levels.school.n", 0, "must be at least 1"),
        ("levels.school.n", 2.5, "whole number"),
        ("levels.school.n", "Poisson(5)", "min=1"),
        ("levels.school.n", "Gamma(2)", "unknown distribution"),
        ("levels.district.n", "Poisson(5, min=1)", "outermost"),
        ("residual_sd", -6, "residual_sd must be >= 0"),
        ("fixed.tutor", 1, "'tutor' is not a covariate"),
        ("levels.student.slopes.age", 1, "'age' is not a covariate"),
        ("levels.student.corr", 0.5, "give levels.student.slopes first"),
        ("covariates.tutoring.level", "class", "not a level"),
        ("covariates.tutoring", "Bernoulli(1.2)", "[0, 1]"),
        ("levels.school.id", "dist_id", "used twice"),
        ("response", "my response", "column name"),
        ("colour", 1, "unknown key 'colour'"),
        ("levels", 3, "needs [[levels]] tables"),
    ],
)
def test_bad_values_are_one_line_option_errors(seed_design, path, value, message):
    with pytest.raises(OptionError) as info:
        seed_design.set(path, value)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_python_constructions():
    with pytest.raises(OptionError, match="at least one level"):
        Design([])
    with pytest.raises(OptionError, match="must be >= 0"):
        Level("a", n=3, sd=-1)
    with pytest.raises(OptionError, match="at least 1"):
        Level("a", n=0)
    with pytest.raises(OptionError, match="positive semi-definite"):
        Level("a", n=3, slopes={"x": 1, "w": 1}, corr=((1, 0.9, -0.9), (0.9, 1, 0.9), (-0.9, 0.9, 1)))
    with pytest.raises(OptionError, match="level names must differ"):
        Design([Level("a", id="a1", n=2), Level("a", id="a2", n=2)])


def test_distribution_text_round_trips():
    for dist in (Bernoulli(0.2), Normal(1, 2.5), Poisson(5, min=1), Poisson(3), UniformInt(3, 8)):
        assert parse_distribution(str(dist)) == dist
    assert parse_distribution("normal(0, 1)") == Normal(0, 1)
    for bad in ("Bernoulli", "Bernoulli(p)", "Poisson(5, max=3)", "os.system('x')", "Normal(0, -1)"):
        with pytest.raises(OptionError):
            parse_distribution(bad)


def test_bad_design_files(tmp_path):
    missing = tmp_path / "missing.toml"
    with pytest.raises(FileError, match="does not exist"):
        Design.from_toml(missing)
    bad = tmp_path / "bad.toml"
    bad.write_text("[[levels]\nname = 'a'\n")
    with pytest.raises(FileError, match="not valid TOML"):
        Design.from_toml(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[[levels]]\nname = 'a'\nn = 3\nsd = 1\nsdev = 2\n")
    with pytest.raises(OptionError, match="unknown key 'sdev' in levels.a; did you mean 'sd'"):
        Design.from_toml(unknown)


# -- the simulated structure -------------------------------------------------------------


def test_seed_design_counts_are_exact(seed_design):
    frame = simulate(seed_design, seed=1)
    assert list(frame.columns) == ["dist_id", "school_id", "teach_id", "student_id", "semester", "tutoring", "perform"]
    assert len(frame) == 80_000
    for col, n in {"dist_id": 50, "school_id": 250, "teach_id": 2_000, "student_id": 40_000}.items():
        ids = frame[col].to_numpy()
        assert np.array_equal(np.unique(ids), np.arange(1, n + 1)), col  # global, consecutive
        assert np.all(np.diff(ids) >= 0)  # sorted
    assert (frame.groupby("student_id").size() == 2).all()
    assert (frame.groupby("student_id")["semester"].apply(tuple) == (1, 2)).all()
    for child, parent, n in [("school_id", "dist_id", 5), ("teach_id", "school_id", 8), ("student_id", "teach_id", 20)]:
        assert (frame.groupby(child)[parent].nunique() == 1).all()  # nested: one parent each
        assert (frame.groupby(parent)[child].nunique() == n).all()
    assert set(frame["tutoring"].unique()) <= {0, 1}


def test_within_ids_are_statas_form(seed_design):
    both = simulate(seed_design, seed=3, ids="both")
    within = simulate(seed_design, seed=3, ids="within")
    glob = simulate(seed_design, seed=3)
    for lv in seed_design.levels:
        assert np.array_equal(within[lv.id], both[lv.id + "_within"])
        assert np.array_equal(glob[lv.id], both[lv.id])
    assert np.array_equal(within["perform"], glob["perform"])  # same draws, other labels
    assert within["school_id"].max() == 5 and within["teach_id"].max() == 8 and within["student_id"].max() == 20
    # the within id is the rank of the global id inside its parent
    for child, parent in [("school_id", "dist_id"), ("teach_id", "school_id"), ("student_id", "teach_id")]:
        rank = both.groupby(parent)[child].rank(method="dense").astype(int)
        assert np.array_equal(rank.to_numpy(), both[child + "_within"].to_numpy())


def test_unbalanced_structure():
    design = Design(
        [
            Level("district", n=300, sd=1),
            Level("school", n=Poisson(4, min=1), sd=1),
            Level("class", n=UniformInt(1, 5), sd=1),
        ],
        observations=Observations(n=Poisson(3, min=1), name="wave"),
        covariates=[Covariate("x", Normal())],
        fixed={"x": 1},
    )
    frame = simulate(design, seed=11, ids="both")
    schools = frame.groupby("district_id")["school_id"].nunique()
    classes = frame.groupby("school_id")["class_id"].nunique()
    waves = frame.groupby("class_id").size()
    assert schools.min() >= 1 and classes.between(1, 5).all() and waves.min() >= 1
    assert classes.max() == 5 and waves.nunique() > 3  # really unbalanced
    for counts, mean, var in [
        (schools, Poisson(4, min=1).expected(), 4.0),
        (classes, 3.0, 2.0),
        (waves, Poisson(3, min=1).expected(), 3.0),
    ]:
        assert abs(counts.mean() - mean) < Z * math.sqrt(var / len(counts))
    for col, counts in [("school_id", schools), ("class_id", classes)]:
        assert np.array_equal(np.unique(frame[col]), np.arange(1, counts.sum() + 1))
    assert (frame.groupby("class_id")["wave"].max() == waves).all()
    assert (frame.groupby("class_id")["wave"].min() == 1).all()
    inner = frame.groupby("school_id")["class_id_within"].max()
    assert np.array_equal(inner.to_numpy(), classes.to_numpy())


def test_covariate_assigned_at_a_level(seed_design):
    design = seed_design.set("covariates.tutoring.level", "teacher")
    frame = simulate(design, seed=5)
    per_teacher = frame.groupby("teach_id")["tutoring"]
    assert (per_teacher.nunique() == 1).all()
    share = per_teacher.first().mean()
    assert abs(share - 0.2) < Z * math.sqrt(0.2 * 0.8 / 2_000)


# -- the simulated values --------------------------------------------------------------


def test_response_is_the_sum_of_its_parts(seed_design):
    design = seed_design.set("fixed.intercept", 10).set("levels.teacher.slopes.tutoring", 1.0)
    f = simulate(design, seed=2, effects=True)
    parts = 10 + 2 * f["tutoring"] + f["u_district"] + f["u_school"] + f["u_teacher"] + f["u_student"]
    parts = parts + f["u_teacher_tutoring"] * f["tutoring"] + f["residual"]
    np.testing.assert_allclose(f["perform"], parts, rtol=0, atol=1e-10)
    plain = simulate(design, seed=2)
    assert np.array_equal(plain["perform"], f["perform"])  # effects=True changes no draws


def _sd_check(values: np.ndarray, sd: float) -> None:
    """Sample variance of n iid N(0, sd^2) effects: relative SE sqrt(2 / (n - 1))."""
    n = len(values)
    ratio = values.var(ddof=1) / sd**2
    assert abs(ratio - 1) < Z * math.sqrt(2 / (n - 1)), (ratio, n)


def test_effect_sds_within_sampling_error():
    design = Design(
        [
            Level("district", n=2_000, sd=2),
            Level("school", n=3, sd=3),
            Level("teacher", n=3, sd=4),
            Level("student", n=4, sd=5),
        ],
        observations=Observations(n=2),
        residual_sd=6,
    )
    f = simulate(design, seed=42, effects=True)
    for lv in design.levels:
        _sd_check(f.groupby(lv.id)[f"u_{lv.name}"].first().to_numpy(), lv.sd)
    _sd_check(f["residual"].to_numpy(), 6.0)


def test_variance_decomposition_of_the_response():
    """Balanced nested ANOVA of the response recovers each level's variance.

    With rows per unit r_l and mean squares MS_l (df_l = N_l - N_{l-1}), E[MS_l] =
    sigma_e^2 + sum_{j >= l} r_j sigma_j^2, so sigma_l^2 = (MS_l - MS_{l+1}) / r_l with
    Var ~ (2 E[MS_l]^2 / df_l + 2 E[MS_{l+1}]^2 / df_{l+1}) / r_l^2.
    """
    sds, ns, reps, sigma_e = [2.0, 3.0, 4.0, 5.0], [3_000, 3, 3, 3], 2, 6.0
    design = (
        Design.from_toml(SEED_TOML)
        .set("levels.district.n", ns[0])
        .set("levels.school.n", ns[1])
        .set("levels.teacher.n", ns[2])
        .set("levels.student.n", ns[3])
    )
    f = simulate(design, seed=7)
    z = f["perform"].to_numpy() - 2.0 * f["tutoring"].to_numpy()
    ids = ["dist_id", "school_id", "teach_id", "student_id"]
    units = np.cumprod(ns)
    rows = [int(units[-1] * reps // u) for u in units]  # rows per unit
    means = [z.reshape(u, -1).mean(axis=1) for u in units]
    ms, parent = [], np.array([z.mean()])
    for l in range(4):
        dev = means[l] - np.repeat(parent, len(means[l]) // len(parent))
        ms.append(rows[l] * np.sum(dev**2) / (units[l] - (units[l - 1] if l else 1)))
        parent = means[l]
    ms.append(np.sum((z - np.repeat(means[3], reps)) ** 2) / (len(z) - units[3]))
    df = [units[0] - 1, *(units[1:] - units[:-1]), len(z) - units[3]]
    expect = [sigma_e**2 + sum(rows[j] * sds[j] ** 2 for j in range(l, 4)) for l in range(4)] + [sigma_e**2]
    for l in range(4):
        est = (ms[l] - ms[l + 1]) / rows[l]
        se = math.sqrt(2 * expect[l] ** 2 / df[l] + 2 * expect[l + 1] ** 2 / df[l + 1]) / rows[l]
        assert abs(est - sds[l] ** 2) < Z * se, (ids[l], est, sds[l] ** 2, se)
    assert abs(ms[4] - sigma_e**2) < Z * sigma_e**2 * math.sqrt(2 / df[4])
    # tutoring: share and effect (OLS slope; tutoring is independent of every effect)
    t = f["tutoring"].to_numpy().astype(float)
    assert abs(t.mean() - 0.2) < Z * math.sqrt(0.16 / len(t))
    y = f["perform"].to_numpy()
    slope = np.cov(t, y)[0, 1] / t.var(ddof=1)
    total = sum(s**2 for s in sds) + sigma_e**2
    assert abs(slope - 2.0) < Z * math.sqrt(total / (len(t) * 0.16))


def test_random_slopes_sd_and_correlation():
    design = Design(
        [Level("group", n=4_000, sd=2, slopes={"x": 1.5}, corr=0.5)],
        observations=Observations(n=3, name="t"),
        covariates=[Covariate("x", Normal())],
        fixed={"x": 1.0},
    )
    f = simulate(design, seed=9, effects=True)
    per = f.groupby("group_id")[["u_group", "u_group_x"]].first().to_numpy()
    _sd_check(per[:, 0], 2.0)
    _sd_check(per[:, 1], 1.5)
    r = np.corrcoef(per.T)[0, 1]
    assert abs(np.arctanh(r) - np.arctanh(0.5)) < Z / math.sqrt(len(per) - 3)  # Fisher z


# -- reproducibility -------------------------------------------------------------------


def test_same_seed_same_data_and_files(tmp_path, seed_design):
    a, b = simulate(seed_design, seed=123), simulate(seed_design, seed=123)
    pd.testing.assert_frame_equal(a, b)
    assert a["perform"].to_numpy().tobytes() == b["perform"].to_numpy().tobytes()
    c = simulate(seed_design, seed=124)
    assert not np.array_equal(a["perform"], c["perform"]) and not np.array_equal(a["tutoring"], c["tutoring"])
    small = seed_design.set("levels.district.n", 3)
    for ext in ("csv", "parquet", "dta"):
        first, second, other = (tmp_path / f"{name}.{ext}" for name in ("first", "second", "other"))
        write_frame(simulate(small, seed=1), first)
        write_frame(simulate(small, seed=1), second)
        write_frame(simulate(small, seed=2), other)
        assert digest(first) == digest(second) and digest(first) != digest(other), ext
    back = pd.read_csv(tmp_path / "first.csv")
    pd.testing.assert_frame_equal(back, simulate(small, seed=1), check_dtype=False)


def test_chunked_parquet(tmp_path, seed_design):
    design = seed_design.set("levels.district.n", 7)
    files = simulate_to_parquet(design, tmp_path / "chunks", seed=4, chunk_rows=3_200)
    assert [p.name for p in files] == [f"part-0000{k}.parquet" for k in range(4)]  # 2 districts per file
    whole = pq.read_table(tmp_path / "chunks").to_pandas()
    assert len(whole) == 7 * 1_600
    for col, n in {"dist_id": 7, "school_id": 35, "teach_id": 280, "student_id": 5_600}.items():
        assert np.array_equal(whole[col].to_numpy(), np.sort(whole[col].to_numpy()))
        assert np.array_equal(np.unique(whole[col]), np.arange(1, n + 1))
    again = simulate_to_parquet(design, tmp_path / "again", seed=4, chunk_rows=3_200)
    assert [digest(p) for p in files] == [digest(p) for p in again]
    other = simulate_to_parquet(design, tmp_path / "other", seed=5, chunk_rows=3_200)
    assert digest(files[0]) != digest(other[0])
    # a single chunk is simulate()'s data
    one = simulate_to_parquet(design, tmp_path / "one", seed=4, chunk_rows=10**9)
    pd.testing.assert_frame_equal(pq.read_table(one[0]).to_pandas(), simulate(design, seed=4))
    with pytest.raises(FileError, match="not an empty folder"):
        simulate_to_parquet(design, tmp_path / "chunks", seed=4)


def test_chunked_parquet_unbalanced(tmp_path):
    design = Design(
        [Level("a", n=50, sd=1), Level("b", n=Poisson(3, min=1), sd=1)], observations=Observations(n=UniformInt(1, 3))
    )
    files = simulate_to_parquet(design, tmp_path / "u", seed=1, chunk_rows=40, ids="both")
    assert len(files) > 3
    whole = pq.read_table(tmp_path / "u").to_pandas()
    assert np.array_equal(np.unique(whole["b_id"]), np.arange(1, whole["b_id"].max() + 1))
    assert (whole.groupby("b_id")["a_id"].nunique() == 1).all()
    assert (whole.groupby("a_id")["b_id_within"].max() == whole.groupby("a_id")["b_id"].nunique()).all()


# -- the CLI ---------------------------------------------------------------------------


def test_cli_writes_each_format(tmp_path):
    for ext in ("csv", "parquet", "dta"):
        out = tmp_path / f"seed.{ext}"
        assert run(["simulate", str(SEED_TOML), "--seed", "1", "-o", str(out), "--set", "levels.district.n=2"]) == 0
        frame = {"csv": pd.read_csv, "parquet": pd.read_parquet, "dta": pd.read_stata}[ext](out)
        assert len(frame) == 3_200 and frame["dist_id"].max() == 2
    assert (
        run(
            [
                "simulate",
                str(SEED_TOML),
                "--seed",
                "1",
                "-o",
                str(tmp_path / "w.parquet"),
                "--ids",
                "within",
                "--set",
                "levels.district.n=2",
                "--set",
                "levels.school.n=Poisson(2, min=1)",
                "--set",
                "fixed.tutoring=0.5",
            ]
        )
        == 0
    )
    frame = pd.read_parquet(tmp_path / "w.parquet")
    assert frame["school_id"].min() == 1 and frame["teach_id"].max() == 8


def test_cli_same_seed_same_file(tmp_path):
    args = ["simulate", str(SEED_TOML), "--seed", "9", "--set", "levels.district.n=3", "-o"]
    assert run(args + [str(tmp_path / "a.parquet")]) == 0
    assert run(args + [str(tmp_path / "b.parquet")]) == 0
    assert digest(tmp_path / "a.parquet") == digest(tmp_path / "b.parquet")


def test_cli_rows_per_file(tmp_path):
    out = tmp_path / "big"
    assert run(["simulate", str(SEED_TOML), "--seed", "1", "-o", str(out), "--rows-per-file", "20000"]) == 0
    assert len(list(out.glob("part-*.parquet"))) == 5
    assert pq.read_table(out).num_rows == 80_000


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "levels.school.n=0"], "levels.school.n must be at least 1"),
        (["--set", "levels.district.sd=-2"], "must be >= 0"),
        (["--set", "levels.distrct.n=5"], "no level 'distrct'"),
        (["--set", "levels.district.n"], "--set needs KEY=VALUE"),
        (["--ids", "local"], "--ids must be global, within or both"),
        (["--rows-per-file", "0"], "--rows-per-file must be a whole number >= 1"),
    ],
)
def test_cli_errors_write_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / ("dir" if "--rows-per-file" in extra else "out.csv")
    assert run(["simulate", str(SEED_TOML), "--seed", "1", "-o", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_cli_file_errors(tmp_path, capsys):
    assert run(["simulate", str(tmp_path / "nope.toml"), "--seed", "1", "-o", str(tmp_path / "a.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("residual_sd = \n")
    assert run(["simulate", str(bad), "--seed", "1", "-o", str(tmp_path / "a.csv")]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert run(["simulate", str(SEED_TOML), "--seed", "1", "-o", str(tmp_path / "a.xlsx")]) == 2
    assert "use .csv, .parquet or .dta" in capsys.readouterr().err
    assert (
        run(
            [
                "simulate",
                str(SEED_TOML),
                "--seed",
                "1",
                "-o",
                str(tmp_path / "no" / "a.csv"),
                "--set",
                "levels.district.n=1",
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


def test_errors_are_hlm_errors(seed_design):
    with pytest.raises(HLMError):
        simulate(seed_design, seed=-1)
    with pytest.raises(OptionError, match="ids must be"):
        simulate(seed_design, seed=1, ids="local")  # type: ignore[arg-type]
    with pytest.raises(FileError, match="unsupported extension"):
        write_frame(pd.DataFrame({"a": [1]}), "x.xlsx")


def test_effect_columns_must_not_clash():
    design = Design([Level("g", n=3, sd=1)], covariates=[Covariate("residual", Normal())])
    assert "residual" in simulate(design, seed=1).columns
    with pytest.raises(OptionError, match="'residual'"):
        simulate(design, seed=1, effects=True)
