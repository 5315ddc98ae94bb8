"""Sampling weights through Spark (each deployment of conftest.py's ``spark``) equal the in-memory fit."""

from __future__ import annotations

from pathlib import Path

import pytest

import hlm
from support import reference
from survey.test_duckdb_pweights import frame, same_fit


@pytest.mark.slow
@pytest.mark.xdist_group("spark")
def test_spark_equals_memory(spark, tmp_path: Path) -> None:
    r = reference("school3_sim__weighted_rs3")
    df = frame(r)
    path = tmp_path / "d.parquet"
    df.to_parquet(path)
    kw = {"pweights": r["weights"], "cond_weights": r["cWeights"]}
    same_fit(hlm.fit(r["formula"], df, **kw), hlm.fit(r["formula"], spark.read.parquet(str(path)), **kw))
