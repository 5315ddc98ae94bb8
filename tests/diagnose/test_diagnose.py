"""Structure diagnosis: nesting report, level-order checks, implicit nesting, identifiability."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import support
from hlm.cli import run
from hlm.diagnose import (
    check_level_order,
    implicit_nesting,
    implicit_nesting_message,
    level_groups,
    lme4_nesting_order,
    nesting,
    reversed_order_message,
    same_partition,
    same_partition_message,
    singleton_levels,
    singleton_message,
    stata_level_order,
)
from hlm.errors import ColumnError, DataError, NestingError, StructureWarning

DATA = support.DATA
LEVELS = ["dist_id", "school_id", "teach_id", "student_id"]
REVERSED = LEVELS[::-1]


def seed_design(ids: str = "global", n_dist: int = 50) -> pd.DataFrame:
    """The seed's design: districts x 5 schools x 8 teachers x 20 students x 2 semesters.

    ids: "global" (the seed's ``gen x = _n``), "within" (school 1..5 in every district,
    teacher 1..8 in every school, student 1..20 in every class) or "mixed" (schools
    numbered within district, teachers and students globally)."""
    student = np.repeat(np.arange(n_dist * 5 * 8 * 20), 2)
    teacher, school = student // 20, student // 160
    dist = student // 800 + 1
    if ids == "within":
        school, teacher, student = school % 5 + 1, teacher % 8 + 1, student % 20 + 1
    elif ids == "mixed":
        school = school % 5 + 1
    rng = np.random.default_rng(7)
    order = rng.permutation(len(student))  # row order must not matter
    return pd.DataFrame(
        {"dist_id": dist[order], "school_id": school[order], "teach_id": teacher[order], "student_id": student[order]}
    )


@pytest.fixture(scope="module")
def seed_global() -> pd.DataFrame:
    return seed_design("global")


@pytest.fixture(scope="module")
def seed_within() -> pd.DataFrame:
    return seed_design("within")


@pytest.fixture(scope="module")
def pastes() -> pd.DataFrame:
    return pd.read_csv(DATA / "Pastes.csv")


@pytest.fixture(scope="module")
def penicillin() -> pd.DataFrame:
    return pd.read_csv(DATA / "Penicillin.csv")


# ---------------------------------------------------------------- nesting report


def test_report_global_ids(seed_global):
    rep = nesting(seed_global, REVERSED)
    assert rep.order == tuple(LEVELS)
    assert rep.nobs == 80_000 and rep.dropped == 0
    assert rep.ngroups == {"student_id": 40_000, "teach_id": 2_000, "school_id": 250, "dist_id": 50}
    assert [lev.within for lev in rep.levels] == [50, 250, 2_000, 40_000]
    assert rep.implicitly_nested == ()
    assert rep.is_nested("student_id", "dist_id") and not rep.is_nested("dist_id", "student_id")
    p = rep.relation("teach_id", "school_id")
    assert (p.outer, p.inner, p.relation) == ("school_id", "teach_id", "nested")
    assert all(p.relation == "nested" for p in rep.pairs)
    text = rep.summary()
    assert "dist_id > school_id > teach_id > student_id" in text
    assert "|| dist_id: || school_id: || teach_id: || student_id:" in text
    assert "(1|dist_id/school_id/teach_id/student_id)" in text


def test_report_within_parent_ids(seed_within):
    rep = nesting(seed_within, LEVELS)
    assert rep.order == tuple(LEVELS)
    assert rep.ngroups == {"dist_id": 50, "school_id": 5, "teach_id": 8, "student_id": 20}
    assert [lev.within for lev in rep.levels] == [50, 250, 2_000, 40_000]
    assert rep.implicitly_nested == ("school_id", "teach_id", "student_id")
    p = rep.relation("dist_id", "school_id")
    assert (p.outer, p.inner, p.relation, p.max_parents) == ("dist_id", "school_id", "implicit", 50)
    assert not rep.is_nested("school_id", "dist_id")
    assert "unique only within dist_id:school_id" in rep.summary()


def test_report_mixed_ids_listed_backwards():
    frame = seed_design("mixed")
    rep = nesting(frame, REVERSED)
    assert rep.order == tuple(LEVELS)  # raw nesting of teachers orders dist and school
    assert rep.implicitly_nested == ("school_id",)


def test_report_crossed_and_same(penicillin, pastes):
    rep = nesting(penicillin, ["plate", "sample"])
    assert rep.order is None and rep.levels is None
    assert rep.relation("plate", "sample").relation == "crossed"
    assert "single row" in rep.note
    rep = nesting(pastes, ["batch", "cask", "sample"])
    assert rep.order is None and "sample" in rep.note
    assert rep.relation("batch", "cask").relation == "implicit"
    assert rep.relation("sample", "batch").relation == "nested"
    rep = nesting(pastes, ["sample", "batch"])
    assert rep.order == ("batch", "sample")


def test_report_tables_and_dict(seed_within):
    rep = nesting(seed_within, LEVELS)
    pairs = rep.to_frame()
    assert list(pairs.columns) == ["outer", "inner", "relation", "outer_groups", "inner_groups", "cells", "max_parents"]
    assert len(pairs) == 6
    levels = rep.to_frame(table="levels")
    assert levels["within"].tolist() == [50, 250, 2_000, 40_000]
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["order"] == LEVELS and d["groups"]["school_id"] == 5
    with pytest.raises(Exception):  # noqa: B017  # any refusal to mutate
        rep.order = None  # type: ignore[misc]  # immutable


def test_report_missing_ids_and_sources(pastes):
    frame = pastes.copy()
    frame.loc[:3, "cask"] = None
    rep = nesting(frame, ["batch", "cask"])
    assert rep.dropped == 4 and rep.nobs == 56
    import polars as pl

    assert nesting(pl.from_pandas(pastes), ["batch", "sample"]).order == ("batch", "sample")
    with pytest.raises(ColumnError, match="did you mean 'batch'"):
        nesting(pastes, ["bacth", "cask"])
    with pytest.raises(DataError):
        nesting(pastes.iloc[:0], ["batch", "cask"])
    with pytest.raises(DataError, match="twice"):
        nesting(pastes, ["batch", "batch"])


# ---------------------------------------------------------------- level order


def test_seed_reversed_stata_order(seed_global):
    assert level_groups(seed_global, REVERSED) == [40_000] * 4
    assert stata_level_order(seed_global, REVERSED) == LEVELS
    assert lme4_nesting_order(seed_global, REVERSED) == LEVELS
    msg = reversed_order_message(seed_global, REVERSED, LEVELS)
    assert msg == (
        "levels are listed inner to outer: every level has 40,000 groups, as many as student_id. "
        "Stata lists levels outermost first: `|| dist_id: || school_id: || teach_id: || student_id:` "
        "(or pass reorder=True)"
    )
    msg = reversed_order_message(seed_global, REVERSED, LEVELS, syntax="lme4", option="--reorder")
    assert "(1|student_id/teach_id/school_id/dist_id)" in msg
    assert "(1|dist_id/school_id/teach_id/student_id) (or pass --reorder)" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("ids", ["global", "within", "mixed"])
def test_correct_order_never_flagged(ids):
    frame = seed_design(ids, n_dist=10)
    for k in range(1, 5):
        assert stata_level_order(frame, LEVELS[:k]) is None
        assert lme4_nesting_order(frame, LEVELS[:k]) is None
    assert check_level_order(frame, LEVELS) == LEVELS
    assert stata_level_order(frame, ["dist_id", "school_id", "student_id"]) is None  # skipping a level is fine


@pytest.mark.parametrize(
    "given",
    [
        REVERSED,
        ["dist_id", "student_id", "school_id", "teach_id"],
        ["school_id", "dist_id", "teach_id", "student_id"],
        ["dist_id", "school_id", "student_id", "teach_id"],
    ],
)
def test_wrong_orders_corrected_global_ids(seed_global, given):
    assert stata_level_order(seed_global, given) == LEVELS
    msg = reversed_order_message(seed_global, given, LEVELS)
    assert msg.endswith("`|| dist_id: || school_id: || teach_id: || student_id:` (or pass reorder=True)")


def test_reversed_mixed_ids_corrected():
    """Schools numbered within district, teachers and students global: the reversal shows
    (every level has 40,000 groups) and the correction reads school within district."""
    frame = seed_design("mixed", n_dist=10)
    assert level_groups(frame, REVERSED) == [8_000] * 4
    assert stata_level_order(frame, REVERSED) == LEVELS
    assert stata_level_order(frame, ["school_id", "dist_id", "teach_id", "student_id"]) is None  # valid reading


def test_within_parent_ids_reversed_is_undetectable(seed_within):
    """With every id numbered within its parent the labels form a full cross: any order is
    a valid hierarchy the data cannot tell from the intended one, so nothing is flagged."""
    assert level_groups(seed_within, REVERSED) == [20, 160, 800, 40_000]
    assert stata_level_order(seed_within, REVERSED) is None


def test_check_level_order_raises_or_reorders(seed_global):
    with pytest.raises(NestingError, match="inner to outer"):
        check_level_order(seed_global, REVERSED)
    with pytest.warns(StructureWarning, match="reordered outermost first"):
        assert check_level_order(seed_global, REVERSED, syntax="lme4", reorder=True) == LEVELS


def test_order_not_blamed_for_identifiability(pastes):
    frame = pastes.assign(batch2=pastes["batch"], one=1)
    assert stata_level_order(frame, ["batch", "batch2", "sample"]) is None  # same partition, no reorder helps
    assert stata_level_order(frame, ["batch", "one"]) is None  # a constant is not an outer level
    assert stata_level_order(frame, ["sample"]) is None


# ---------------------------------------------------------------- implicit nesting


def test_pastes_implicitly_nested(pastes):
    assert implicit_nesting(pastes, ["batch", "cask"]) == [("batch", "cask")]
    assert implicit_nesting(pastes, ["batch", "sample"]) == []  # sample ids are globally unique
    msg = implicit_nesting_message(pastes, [("batch", "cask")], ["batch", "cask"])
    assert msg == (  # a full cross: crossed with replicates and nested-numbered look the same
        "cask ids repeat across batch groups (every batch has the same 3 cask ids): the crossed terms "
        "(1|batch) + (1|cask) treat each cask id as one unit everywhere, which is right if every cask is "
        "measured in every batch (then consider (1|batch:cask) for the replicated cells); if cask ids are only "
        "unique within batch, write (1|batch/cask)"
    )


def test_penicillin_full_cross_not_flagged(penicillin):
    assert implicit_nesting(penicillin, ["plate", "sample"]) == []
    assert implicit_nesting(penicillin, ["sample", "plate"]) == []


def test_random_incomplete_cross_not_flagged():
    rng = np.random.default_rng(3)
    subjects = np.repeat(np.arange(200), 6)  # each subject: 3 random raters of 20, twice each
    raters = np.concatenate([np.repeat(rng.choice(20, 3, replace=False), 2) for _ in range(200)])
    frame = pd.DataFrame({"subject": subjects, "rater": raters})
    assert implicit_nesting(frame, ["subject", "rater"]) == []


def test_unbalanced_within_numbering_flagged():
    rng = np.random.default_rng(5)
    sizes = rng.integers(2, 12, size=30)  # district d has schools 1..n_d, 10 rows each
    dist = np.repeat(np.arange(30), sizes * 10)
    school = np.concatenate([np.repeat(np.arange(1, n + 1), 10) for n in sizes])
    frame = pd.DataFrame({"district": dist, "school": school})
    assert implicit_nesting(frame, ["district", "school"]) == [("district", "school")]


def test_seed_within_ids_crossed_terms(seed_within):
    pairs = implicit_nesting(seed_within, LEVELS)
    assert ("dist_id", "school_id") in pairs and len(pairs) == 6
    msg = implicit_nesting_message(seed_within, pairs, LEVELS)
    assert msg.endswith("write (1|dist_id/school_id/teach_id/student_id)")
    assert implicit_nesting(seed_design("global", n_dist=5), LEVELS) == []  # nested ids need no fix


# ---------------------------------------------------------------- identifiability


def test_same_partition(pastes, seed_global):
    assert same_partition(pastes, [("batch", "cask"), "sample", "batch"]) == [(("batch", "cask"), "sample")]
    assert same_partition(pastes, ["batch", "cask", "sample"]) == []
    frame = seed_global.assign(class_id=seed_global["teach_id"] * 3 + 1)
    assert same_partition(frame, ["school_id", "teach_id", "class_id"]) == [("teach_id", "class_id")]
    msg = same_partition_message(frame, [("teach_id", "class_id")])
    assert msg == (
        "teach_id and class_id define the same 2,000 groups, so their variances cannot be told apart; "
        "drop one of (1|teach_id) and (1|class_id)"
    )


def test_singletons(penicillin, seed_global):
    assert singleton_levels(penicillin, ["plate", "sample", ("plate", "sample")]) == [("plate", "sample")]
    assert singleton_levels(seed_global, LEVELS) == []
    one = seed_global.drop_duplicates("student_id")
    assert singleton_levels(one, LEVELS) == ["student_id"]
    msg = singleton_message(one, ["student_id"], syntax="stata")
    assert msg == (
        "every student_id group has exactly one observation (40,000 groups), so its variance cannot be "
        "told apart from the residual variance; drop `|| student_id:`"
    )


# ---------------------------------------------------------------- CLI


def test_cli_nesting_text_and_json(tmp_path, capsys, seed_within):
    path = tmp_path / "seed.csv"
    seed_within.to_csv(path, index=False)
    assert run(["nesting", str(path), *REVERSED]) == 0
    out = capsys.readouterr().out
    assert "Nesting of 4 grouping variables in 80,000 observations" in out
    assert run(["nesting", str(path), *LEVELS, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["order"] == LEVELS
    assert d["implicitly_nested"] == ["school_id", "teach_id", "student_id"]
    assert [lev["within"] for lev in d["levels"]] == [50, 250, 2_000, 40_000]


def test_cli_nesting_errors(tmp_path, capsys):
    assert run(["nesting", str(DATA / "Pastes.csv"), "batch", "caks"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: column 'caks' is not in the data; did you mean 'cask'")
    assert "Traceback" not in err
    assert run(["nesting", str(tmp_path / "missing.csv"), "a"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert run(["nesting", str(DATA / "Pastes.csv")]) == 2  # no variables
    assert capsys.readouterr().err.startswith("error:")
