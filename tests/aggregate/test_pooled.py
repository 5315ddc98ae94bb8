"""Innermost groups pooled in the database (hlm.aggregate.sql.chain.POOL_LEAF_GROUPS).

A chain of random intercepts with many innermost groups is aggregated by DuckDB (or Spark)
into size classes per parent group, so the innermost groups never reach Python.  These
tests lower the threshold to 0 and check, against the in-memory path: the pooled classes
equal those the core builds from the leaf groups (1e-8), the outer factors are identical,
the objective at the same theta agrees to 1e-8, the fit and its outputs agree, the modes of
the outer levels are those of the unpooled fit at the same parameters (1e-10), and
DuckDB's second pass gives the conditional fitted values including the pooled level.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

import hlm
from hlm.aggregate import sql as q
from hlm.aggregate.duckdb import aggregate_duckdb
from hlm.errors import DataError, HLMWarning, OptionError
from hlm.lmm.nested import leaf_classes
from hlm.lmm.objective import DevianceFunction
from hlm.lmm.pipeline import aggregate
from hlm.spec import parse_model

MODELS = ["y ~ x + (1 | d/s/t/st)", "y x || d: || s: || t: || st:"]


@pytest.fixture
def pooled(monkeypatch):
    monkeypatch.setattr(q.chain, "POOL_LEAF_GROUPS", 0)


def _design(ids: str, seed: int = 5) -> pd.DataFrame:
    """6 districts x 3 schools x 4 teachers x 10 students with 1-3 rows each (three size
    classes); ``ids`` picks how student ids are written."""
    rng = np.random.default_rng(seed)
    student = np.arange(6 * 3 * 4 * 10)
    teacher = student // 10
    reps = rng.integers(1, 4, len(student))
    st_row = np.repeat(student, reps)
    t = np.repeat(teacher, reps)
    df = pd.DataFrame({"d": t // 12, "s": t // 4, "t": t})
    if ids == "restart":  # only the full key names a student
        df["st"] = np.repeat(student % 10, reps)
    elif ids == "shuffled":
        df["st"] = rng.permutation(len(student))[st_row] + 500
    elif ids == "strings":
        df["st"] = np.array([f"s{v:04d}" for v in rng.permutation(len(student))[st_row]], dtype=object)
    else:
        df["st"] = st_row
    df["x"] = rng.normal(size=len(df))
    effects = (
        0.5 * rng.normal(size=6)[df["d"]]
        + 0.7 * rng.normal(size=18)[df["s"]]
        + rng.normal(size=72)[df["t"]]
        + 1.2 * rng.normal(size=len(student))[st_row]
    )
    df["y"] = 1.0 + 0.5 * df["x"] + effects + rng.normal(size=len(df))
    df.loc[[4, 40], "x"] = np.nan  # incomplete rows are dropped by both paths
    return df.sample(frac=1.0, random_state=1).reset_index(drop=True)


def _write(df: pd.DataFrame, tmp_path) -> str:
    path = tmp_path / "pooled.parquet"
    df.to_parquet(path)
    return str(path)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("ids", ["sorted", "restart", "shuffled", "strings"])
def test_pooled_aggregates_equal_the_classes_of_the_leaf_groups(ids, model, tmp_path, pooled):
    df = _design(ids)
    spec = parse_model(model)
    mem, _ = aggregate(spec, df)
    agg = aggregate_duckdb(spec, _write(df, tmp_path))
    assert agg.chain == mem.chain and agg.nobs == mem.nobs and agg.ndropped == mem.ndropped
    np.testing.assert_allclose(agg.ktk, mem.ktk, rtol=1e-10)
    leaf = agg.factors[agg.chain[0]]
    assert leaf.pooled is not None and leaf.keys == () and leaf.counts is None
    assert leaf.nlevels == mem.factors[mem.chain[0]].nlevels
    assert leaf.size_range() == mem.factors[mem.chain[0]].size_range()
    want = leaf_classes(mem)
    assert want is not None
    got = leaf.pooled
    np.testing.assert_array_equal(got.counts, want.counts)
    np.testing.assert_array_equal(got.ngroups, want.ngroups)
    np.testing.assert_array_equal(got.children, want.children)
    np.testing.assert_allclose(got.sums, want.sums, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got.sss, want.sss, rtol=1e-10)
    for f in agg.chain[1:]:  # the outer factors as the unpooled path builds them
        a, b = agg.factors[f], mem.factors[f]
        assert list(a.labels) == list(b.labels)
        np.testing.assert_array_equal(a.counts, b.counts)
    for p1, p2 in zip(agg.parents[1:], mem.parents[1:]):
        np.testing.assert_array_equal(p1, p2)


@pytest.mark.parametrize("model", MODELS)
def test_pooled_fit_matches_memory(model, tmp_path, pooled):
    df = _design("shuffled")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f_mem = hlm.fit(model, df)
        f_db = hlm.fit(model, _write(df, tmp_path))
    assert f_db.aggregates.factors[f_db.aggregates.chain[0]].pooled is not None
    at = np.asarray(f_mem.theta)
    p1, p2 = f_mem.devfun.profiled(at), f_db.devfun.profiled(at)
    np.testing.assert_allclose(p2.objective, p1.objective, rtol=1e-10)
    np.testing.assert_allclose(p2.beta, p1.beta, rtol=1e-9)
    np.testing.assert_allclose(f_db.deviance, f_mem.deviance, rtol=1e-8)
    np.testing.assert_allclose(f_db.theta, f_mem.theta, rtol=1e-4, atol=1e-6)
    assert f_db.ngroups == f_mem.ngroups
    # the Stata groups table reads the size classes
    table = [line for line in f_db.summary("stata").splitlines() if "|" in line and "," in line][:4]
    assert table == [line for line in f_mem.summary("stata").splitlines() if "|" in line and "," in line][:4]


def test_pooled_modes_equal_the_unpooled_ones(tmp_path, pooled):
    """At the same parameters the outer levels' modes and conditional SDs are those of the
    unpooled aggregates; the pooled level is left out with a warning."""
    model = MODELS[0]
    df = _design("sorted")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f_mem = hlm.fit(model, df)
        agg = aggregate_duckdb(parse_model(model), _write(df, tmp_path))
    devfun = DevianceFunction.build(agg, f_mem.structure, f_mem.reml)
    f_pool = dataclasses.replace(f_mem, aggregates=agg, devfun=devfun)
    with pytest.warns(HLMWarning, match="pooled by size in the database"):
        got = f_pool.ranef()
    want = f_mem.ranef()
    leaf_name = agg.factors[agg.chain[0]].name
    want = want[want["group"] != leaf_name].reset_index(drop=True)
    assert list(got["level"]) == list(want["level"]) and list(got["group"]) == list(want["group"])
    np.testing.assert_allclose(got["estimate"], want["estimate"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got["std_error"], want["std_error"], rtol=1e-10)


@pytest.mark.parametrize("model", MODELS)
def test_write_ranef_includes_the_pooled_level(model, tmp_path, pooled):
    """DuckDB's modes and conditional SDs of the pooled groups (one GROUP BY over the rows)
    equal the in-memory ones at the same parameters; the other levels are fit.ranef()'s."""
    df = _design("strings")
    path = _write(df, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f_mem = hlm.fit(model, df)
        agg = aggregate_duckdb(parse_model(model), path)
    f_pool = dataclasses.replace(f_mem, aggregates=agg, devfun=DevianceFunction.build(agg, f_mem.structure, f_mem.reml))
    out = tmp_path / "ranef.parquet"
    want = f_mem.ranef()
    assert hlm.write_ranef(f_pool, path, out) == len(want)
    got = pd.read_parquet(out)
    assert list(got.columns) == list(want.columns)
    key = ["group", "level", "term"]
    both = want.astype({c: str for c in key}).merge(got.astype({c: str for c in key}), on=key, suffixes=("", "_db"))
    assert len(both) == len(want)
    np.testing.assert_allclose(both["estimate_db"], both["estimate"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(both["std_error_db"], both["std_error"], rtol=1e-9)


def test_pooled_predictions_through_duckdb(tmp_path, pooled):
    model = MODELS[0]
    df = _design("restart")
    path = _write(df, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f_mem = hlm.fit(model, df)
        f_db = hlm.fit(model, path)
    out = tmp_path / "pred.parquet"
    assert hlm.write_predictions(f_db, path, out) == len(df)
    got = pd.read_parquet(out)
    assert sorted(got.columns) == sorted(list(df.columns) + ["fitted", "residual"])
    keys = ["d", "s", "t", "st", "y"]
    mine = df.assign(want=f_mem.predict(df)).merge(got, on=keys, suffixes=("", "_db"))
    assert len(mine) == len(df)
    ok = mine["x"].notna()
    assert mine.loc[~ok, "fitted"].isna().all()
    # the fits' thetas agree to the optimizer's tolerance, so the predictions to ~1e-6
    np.testing.assert_allclose(mine.loc[ok, "fitted"], mine.loc[ok, "want"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mine.loc[ok, "residual"], mine.loc[ok, "y"] - mine.loc[ok, "fitted"], atol=1e-12)


def test_pooled_fit_refuses_what_needs_the_groups(tmp_path, pooled):
    df = _design("sorted")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hlm.fit(MODELS[0], _write(df, tmp_path))
    with pytest.raises(DataError, match="write_predictions"):
        fit.predict(df)
    with pytest.raises(DataError, match="pooled by size"):
        fit.fitted()
    np.testing.assert_allclose(
        fit.predict(df, re=False).dropna(), fit.fixef["(Intercept)"] + fit.fixef["x"] * df["x"].dropna(), rtol=1e-12
    )
    with pytest.raises(OptionError, match="satterthwaite"):
        fit.tidy(ddf="kenward-roger")
    with pytest.raises(OptionError, match="profile"):
        fit.confint(method="boot", nsim=2)
    assert set(fit.tidy(ddf="satterthwaite")["df"].notna()) == {True}
    assert len(fit.varcomp()) == 5 and fit.varcomp()["std_error"].notna().all()


def test_few_leaf_groups_are_not_pooled(tmp_path, monkeypatch):
    """Above the row threshold the pooled query runs, but with fewer innermost groups than
    the threshold the leaf groups are fetched as usual."""
    df = _design("sorted")
    monkeypatch.setattr(q.chain, "POOL_LEAF_GROUPS", len(df) - 10)  # rows >= threshold > students
    spec = parse_model(MODELS[0])
    agg = aggregate_duckdb(spec, _write(df, tmp_path))
    leaf = agg.factors[agg.chain[0]]
    assert leaf.pooled is None and leaf.nlevels == 720
    mem, _ = aggregate(spec, df)
    np.testing.assert_array_equal(leaf.counts, mem.factors[mem.chain[0]].counts)


@pytest.mark.slow
@pytest.mark.xdist_group("spark")
def test_pooled_through_spark(tmp_path, pooled, spark):
    from hlm.aggregate import aggregate_any

    df = _design("strings")
    spec = parse_model(MODELS[0])
    agg, _ = aggregate_any(spec, spark.read.parquet(_write(df, tmp_path)))
    mem, _ = aggregate(spec, df)
    got, want = agg.factors[agg.chain[0]].pooled, leaf_classes(mem)
    assert got is not None
    np.testing.assert_array_equal(got.children, want.children)
    np.testing.assert_allclose(got.sss, want.sss, rtol=1e-10)
    np.testing.assert_allclose(got.sums, want.sums, rtol=1e-10, atol=1e-10)


def test_pooled_collinear_column_and_singleton_groups(tmp_path, pooled):
    """An aliased column is dropped from the pooled classes too; a leaf of one observation
    per group is refused with the same message as in memory."""
    df = _design("sorted")
    df["x2"] = 2.0 * df["x"]
    model = "y ~ x + x2 + (1 | d/s/t/st)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f_mem, f_db = hlm.fit(model, df), hlm.fit(model, _write(df, tmp_path))
    assert f_db.aggregates.factors[f_db.aggregates.chain[0]].pooled is not None
    assert f_db.notes == f_mem.notes and list(f_db.fixef.index) == ["(Intercept)", "x"]
    np.testing.assert_allclose(f_db.devfun(np.asarray(f_mem.theta)), f_mem.devfun(np.asarray(f_mem.theta)), rtol=1e-10)
    one = df.drop_duplicates(["st"]).reset_index(drop=True)
    path = tmp_path / "one.parquet"
    one.to_parquet(path)
    for model in MODELS:
        with pytest.raises(hlm.IdentifiabilityError) as mem_err:
            hlm.fit(model, one)
        with pytest.raises(hlm.IdentifiabilityError) as db_err:
            hlm.fit(model, str(path))
        assert str(db_err.value) == str(mem_err.value)
