"""Pseudo-ML from DuckDB's (and Spark's) weighted GROUP BY (hlm.survey.sql) against the in-memory
path: the pseudo-likelihood they define agrees to 1e-9 at any theta, so do the fits; from a
frame, a Parquet file, a CSV file and a Spark DataFrame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hlm
from hlm.errors import DataError, OptionError
from hlm.survey.pseudo import evaluate
from hlm.survey.result import PseudoFit
from support import DATA, reference

CASES = [
    "sleepstudy_wts__weighted_l12_rs",
    "sleepstudy_wts__weighted_l12_ri_cw",
    "pisa_sim__weighted_rs",
    "pisa_sim__weighted_ri_cw",
    "school3_sim__weighted_rs3",
    "sleepstudy_3lvl_wts__weighted_ri3",
]


def frame(r: dict) -> pd.DataFrame:
    df = pd.read_csv(DATA / r["dataset"]["csv"].split("/")[-1])
    for col in r["dataset"].get("factor_columns", []):
        df[col] = df[col].astype(str)
    return df


def same_fit(a: PseudoFit, b: PseudoFit) -> None:
    for theta in (a.theta, a.theta * 0.5 + 0.1, a.theta * 2.0):
        ea, eb = evaluate(a.rows, a.structure, theta), evaluate(b.rows, b.structure, theta)
        assert eb.m2loglik == pytest.approx(ea.m2loglik, rel=1e-9)
        assert eb.beta == pytest.approx(ea.beta, rel=1e-9, abs=1e-9)
    assert b.loglik == pytest.approx(a.loglik, rel=1e-9)
    assert b.beta == pytest.approx(a.beta, rel=1e-6, abs=1e-6)
    assert b.se.to_numpy() == pytest.approx(a.se.to_numpy(), rel=1e-6)
    assert (b.nobs, b.ngroups, b.nclusters) == (a.nobs, a.ngroups, a.nclusters)
    assert b.weight_sums == pytest.approx(a.weight_sums, rel=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_duckdb_equals_memory(name: str) -> None:
    r = reference(name)
    df = frame(r)
    kw = {"pweights": r["weights"], "cond_weights": r["cWeights"]}
    same_fit(hlm.fit(r["formula"], df, **kw), hlm.fit(r["formula"], df, backend="duckdb", **kw))


def test_parquet_and_csv_files_equal_memory(tmp_path: Path) -> None:
    r = reference("pisa_sim__weighted_ri_pwscale_size")
    df = frame(r)
    kw = {"pweights": ["w_stu_cond", "w_sch"], "cond_weights": True, "pwscale": "size"}
    memory = hlm.fit(r["formula"], df, **kw)
    assert memory.loglik == pytest.approx(r["wemix"]["lnl"], rel=1e-8)  # Stata's pwscale(size), emulated
    df.to_parquet(tmp_path / "pisa.parquet")
    df.to_csv(tmp_path / "pisa.csv", index=False)
    for path in ("pisa.parquet", "pisa.csv"):
        same_fit(memory, hlm.fit(r["formula"], tmp_path / path, **kw))


def test_zero_weights_dropped_and_bad_weights_refused() -> None:
    r = reference("sleepstudy_wts__weighted_l12_ri")
    df = frame(r)
    col = r["weights"][0]
    zero = df.assign(**{col: np.where(np.arange(len(df)) % 17 == 0, 0.0, df[col])})
    kw = {"pweights": r["weights"], "cond_weights": r["cWeights"]}
    a, b = hlm.fit(r["formula"], zero, **kw), hlm.fit(r["formula"], zero, backend="duckdb", **kw)
    same_fit(a, b)
    assert any("zero sampling weight" in n for n in b.notes)
    with pytest.raises(DataError, match="infinite or negative"):
        hlm.fit(r["formula"], df.assign(**{col: -df[col]}), backend="duckdb", **kw)
    with pytest.raises(DataError, match="varies within group"):
        w2 = r["weights"][1]
        hlm.fit(r["formula"], df.assign(**{w2: df[w2] + np.arange(len(df)) % 2}), backend="duckdb", **kw)
    with pytest.raises(OptionError, match="one column per level"):
        hlm.fit(r["formula"], df, backend="duckdb", pweights=r["weights"][:1])
    with pytest.raises(OptionError, match="in memory only"):
        hlm.fit(r["formula"], df, backend="duckdb", pwscale="gk", **kw)
