"""GLMMs from Parquet files and SQL through DuckDB: the GROUP BY collapse gives the in-memory
fit (loglik with every constant, estimates), only the collapsed rows reach Python, and the
cases where a collapse is not exact read the rows instead."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from test_glmm_engine import CBPP, binary_cbpp, cbpp

import hlm
from hlm.errors import DataError
from support import dataset


def grouseticks() -> pd.DataFrame:
    frame = dataset("grouseticks")
    frame["YEAR"] = frame["YEAR"].astype(str)
    return frame


def same(a: hlm.GlmmResult, b: hlm.GlmmResult) -> None:
    assert a.nobs == b.nobs
    assert a.loglik == pytest.approx(b.loglik, abs=1e-6)
    assert a.fixef.to_numpy() == pytest.approx(b.fixef.to_numpy(), abs=1e-4)  # the optimizer's tolerance
    assert a.theta == pytest.approx(b.theta, abs=1e-4)


@pytest.mark.parametrize(
    ("model", "family", "data", "rows"),
    [
        ("sick ~ period + (1 | herd)", "binomial", binary_cbpp, 56),  # 842 animals -> herd x period
        (CBPP, "binomial", cbpp, 56),
        ("TICKS ~ YEAR + (1 | LOCATION/BROOD)", "poisson", grouseticks, 118),  # 403 chicks -> broods
        ("TICKS ~ YEAR + scale(HEIGHT) + (1 | LOCATION/BROOD)", "poisson", grouseticks, 403),  # scale(): read
        ("count ~ mined + (1 | site)", "negative_binomial", lambda: dataset("Salamanders"), 644),  # nbinom2: read
    ],
)
def test_parquet_equals_memory(tmp_path: Path, model: str, family: str, data, rows: int) -> None:
    frame = data()
    path = tmp_path / "data.parquet"
    frame.to_parquet(path)
    on_disk, in_memory = hlm.fit(model, str(path), family=family), hlm.fit(model, frame, family=family)
    assert len(on_disk.frame.y) == rows
    same(on_disk, in_memory)
    if family == "binomial":  # Nakagawa's variances over the data rows, however many each summed row stands for
        assert on_disk.r2() == pytest.approx(in_memory.r2(), rel=1e-6)


def test_sql_text_response_and_missing_rows() -> None:
    """A two-level text response (first level 0, as R) and rows with a missing value dropped,
    counted as the in-memory frame counts them."""
    frame = binary_cbpp()
    frame["sick"] = np.where(frame["sick"] == 1, "yes", "no")
    frame.loc[[3, 100], "period"] = None
    con = duckdb.connect()
    con.register("animals", frame)
    on_sql = hlm.fit("sick ~ period + (1 | herd)", sql="SELECT * FROM animals", con=con, family="binomial")
    in_memory = hlm.fit("sick ~ period + (1 | herd)", frame, family="binomial")
    same(on_sql, in_memory)
    assert on_sql.frame.ndropped == in_memory.frame.ndropped == 2


def test_bad_responses_in_a_file(tmp_path: Path) -> None:
    frame = binary_cbpp()
    frame.loc[0, "sick"] = 2
    frame.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="must be 0/1"):
        hlm.fit("sick ~ period + (1 | herd)", str(tmp_path / "bad.parquet"), family="binomial")
    ticks = grouseticks()
    ticks.loc[0, "TICKS"] = -1
    ticks.to_parquet(tmp_path / "ticks.parquet")
    with pytest.raises(DataError, match=">= 0"):
        hlm.fit("TICKS ~ YEAR + (1 | LOCATION)", str(tmp_path / "ticks.parquet"), family="poisson")


def test_summed_rows_have_no_per_row_values(tmp_path: Path) -> None:
    """Rows summed by DuckDB have no per-row fitted values or residuals (and DuckDB's order):
    those are refused with the way out named, predictions on given rows still work, and the
    summary leaves the residual quantiles out."""
    frame = binary_cbpp()
    path = tmp_path / "animals.parquet"
    frame.to_parquet(path)
    fit = hlm.fit("sick ~ period + (1 | herd)", str(path), family="binomial")
    for call in (fit.fitted, fit.residuals):
        with pytest.raises(DataError, match="give the rows as newdata"):
            call()
    in_memory = hlm.fit("sick ~ period + (1 | herd)", frame, family="binomial")
    assert fit.predict(frame, type="response").to_numpy() == pytest.approx(in_memory.fitted().to_numpy(), abs=1e-4)
    assert "Scaled residuals" in fit.summary(style="lme4")
