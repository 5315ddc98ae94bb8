"""GLMMs from Spark DataFrames (each deployment of conftest.py's ``spark``): the GROUP BY collapse
runs in Spark and gives the in-memory fit -- the full log-likelihood with its data-only constant,
the estimates -- and nbinom2 reads the projected columns instead."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hlm
from glmm.test_glmm_engine import CBPP, binary_cbpp, cbpp
from hlm.errors import DataError
from support import dataset


def grouseticks() -> pd.DataFrame:
    frame = dataset("grouseticks")
    frame["YEAR"] = frame["YEAR"].astype(str)
    return frame


def text_response() -> pd.DataFrame:
    """A two-level text response (the second level in sorted order is 1, as R) with two rows
    missing a covariate."""
    frame = binary_cbpp()
    frame["sick"] = np.where(frame["sick"] == 1, "yes", "no")
    frame.loc[[3, 100], "period"] = None
    return frame


CASES = [  # model, family, data, rows reaching Python
    pytest.param("sick ~ period + (1 | herd)", "binomial", text_response, 56, id="binary-text"),
    pytest.param(CBPP, "binomial", cbpp, 56, id="cbind", marks=pytest.mark.spark_local_only),
    pytest.param(
        "TICKS ~ YEAR + (1 | LOCATION/BROOD)",
        "poisson",
        grouseticks,
        118,
        id="poisson",
        marks=pytest.mark.spark_local_only,
    ),
    pytest.param(
        "count ~ mined + (1 | site)",
        "negative_binomial",
        lambda: dataset("Salamanders"),
        644,  # nbinom2 is not collapsed: the projected columns are read
        id="nbinom2",
        marks=pytest.mark.spark_local_only,
    ),
]


@pytest.mark.slow
@pytest.mark.xdist_group("spark")
@pytest.mark.parametrize(("model", "family", "data", "rows"), CASES)
def test_spark_equals_memory(spark, tmp_path: Path, model: str, family: str, data, rows: int) -> None:
    frame = data()
    path = tmp_path / "d.parquet"
    frame.to_parquet(path)
    on_spark, in_memory = (
        hlm.fit(model, spark.read.parquet(str(path)), family=family),
        hlm.fit(model, frame, family=family),
    )
    assert len(on_spark.frame.y) == rows
    assert (on_spark.nobs, on_spark.frame.ndropped) == (in_memory.nobs, in_memory.frame.ndropped)
    assert on_spark.loglik == pytest.approx(in_memory.loglik, abs=1e-8)  # the constant summed from Spark's counts
    # the optimizer's stopping point moves with the rows' order (the sums' rounding): 1e-7 in its
    # whitened coordinates; measured differences are below 5e-9
    assert on_spark.fixef.to_numpy() == pytest.approx(in_memory.fixef.to_numpy(), abs=1e-7)
    assert on_spark.theta == pytest.approx(in_memory.theta, abs=1e-7)
    if family == "negative_binomial":
        assert on_spark.dispersion == pytest.approx(in_memory.dispersion, rel=1e-7)


@pytest.mark.slow
@pytest.mark.xdist_group("spark")
@pytest.mark.spark_local_only
def test_spark_bad_counts(spark) -> None:
    ticks = grouseticks()
    ticks["TICKS"] = ticks["TICKS"].astype(float)
    ticks.loc[0, "TICKS"] = 2.5
    with pytest.raises(DataError, match="whole numbers >= 0"):
        hlm.fit("TICKS ~ YEAR + (1 | LOCATION)", spark.createDataFrame(ticks), family="poisson")
