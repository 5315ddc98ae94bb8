"""A text column is a factor whatever its dtype (R's model.frame reads a character column as a
factor): object, pandas' ``"string"`` on Python or Arrow storage, Arrow's string types and a
categorical give the same dummies and estimates; a numeric column stays one slope.

Linear: sleepstudy is balanced (every subject on every day), so the GLS fixed effects of a
random-intercept model equal ordinary least squares on the same columns (V maps the span of X
into itself); the test computes those with numpy.  GLMM: cbpp's ``period`` (text "1".."4")
against lme4's ``glmer`` estimates."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import hlm
from hlm.errors import DataError
from support import dataset, reference

TEXT: dict[str, Callable[[pd.Series], pd.Series]] = {
    "object": lambda s: s.astype(str).astype(object),
    "string": lambda s: s.astype(str).astype("string"),
    "string[pyarrow]": lambda s: s.astype(str).astype("string[pyarrow]"),
    "arrow large_string": lambda s: s.astype(str).astype(pd.ArrowDtype(pa.large_string())),
    "category": lambda s: s.astype(str).astype("category"),
}


def _ols(frame: pd.DataFrame, dummies: bool) -> np.ndarray:
    """OLS of Reaction on an intercept and Days (one slope, or one dummy per day after day 0)."""
    days = frame["Days"].to_numpy()
    cols = [np.ones(len(frame))]
    cols += [(days == d).astype(float) for d in range(1, 10)] if dummies else [days.astype(float)]
    beta, *_ = np.linalg.lstsq(np.column_stack(cols), frame["Reaction"].to_numpy(), rcond=None)
    return beta


@pytest.mark.parametrize("kind", list(TEXT))
def test_linear_text_column_is_a_factor(kind: str) -> None:
    frame = dataset("sleepstudy")
    data = frame.assign(Days=TEXT[kind](frame["Days"]))
    fit = hlm.fit("Reaction ~ Days + (1 | Subject)", data)
    assert list(fit.fixef.index) == ["(Intercept)"] + [f"Days{d}" for d in range(1, 10)]
    assert fit.fixef.to_numpy() == pytest.approx(_ols(frame, dummies=True), rel=1e-8, abs=1e-8)


def test_linear_numeric_column_is_a_slope() -> None:
    frame = dataset("sleepstudy")
    fit = hlm.fit("Reaction ~ Days + (1 | Subject)", frame)
    assert list(fit.fixef.index) == ["(Intercept)", "Days"]
    assert fit.fixef.to_numpy() == pytest.approx(_ols(frame, dummies=False), rel=1e-8)


def test_polars_text_column_is_a_factor() -> None:
    pl = pytest.importorskip("polars")
    frame = dataset("sleepstudy")
    fit = hlm.fit("Reaction ~ Days + (1 | Subject)", pl.from_pandas(frame.assign(Days=frame["Days"].astype(str))))
    assert fit.fixef.to_numpy() == pytest.approx(_ols(frame, dummies=True), rel=1e-8, abs=1e-8)


def test_duckdb_agrees_on_a_string_column() -> None:
    pytest.importorskip("duckdb")
    frame = dataset("sleepstudy")
    data = frame.assign(Days=TEXT["string"](frame["Days"]))
    fit = hlm.fit("Reaction ~ Days + (1 | Subject)", data, backend="duckdb")
    assert fit.fixef.to_numpy() == pytest.approx(_ols(frame, dummies=True), rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("kind", list(TEXT))
def test_glmm_text_column_is_a_factor(kind: str) -> None:
    ref = reference("cbpp__glmm_binomial_laplace")
    frame = dataset("cbpp")
    data = frame.assign(period=TEXT[kind](frame["period"]), herd=frame["herd"].astype(str))
    fit = hlm.fit(ref["formula"], data, family="binomial")
    assert list(fit.fixef.index) == [f["term"] for f in ref["fixef"]]
    for f in ref["fixef"]:
        assert abs(fit.fixef[f["term"]] - f["estimate"]) < 0.01 * f["se"], f["term"]


def test_glmm_numeric_column_is_a_slope() -> None:
    frame = dataset("cbpp").assign(herd=lambda d: d["herd"].astype(str))
    fit = hlm.fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", frame, family="binomial")
    assert list(fit.fixef.index) == ["(Intercept)", "period"]


def test_predict_with_string_newdata_and_refusals() -> None:
    frame = dataset("sleepstudy")
    fit = hlm.fit("Reaction ~ Days + (1 | Subject)", frame.assign(Days=frame["Days"].astype(str)))
    expected = fit.predict(frame.assign(Days=frame["Days"].astype(str)))
    assert fit.predict(frame.assign(Days=TEXT["string"](frame["Days"]))).to_numpy() == pytest.approx(
        expected.to_numpy(), rel=1e-12
    )
    with pytest.raises(DataError, match="numeric in the new data but was text"):
        fit.predict(frame)  # numbers where the fit read text: refused, never coded as a slope
    slope = hlm.fit("Reaction ~ Days + (1 | Subject)", frame)
    with pytest.raises(DataError, match="was numeric in the fit"):
        slope.predict(frame.assign(Days=TEXT["string"](frame["Days"])))
    stata = hlm.fit("Reaction Days || Subject:", frame.assign(Days=TEXT["string"](frame["Days"])))
    assert stata.predict(frame.assign(Days=frame["Days"].astype(str))).to_numpy() == pytest.approx(
        expected.to_numpy(), rel=1e-12
    )
    with pytest.raises(DataError, match="numeric in the new data but was text"):
        stata.predict(frame)


@pytest.mark.parametrize("backend", ["memory", "duckdb"])
def test_parquet_string_column_is_a_factor(tmp_path: Path, backend: str) -> None:
    """A frame saved with a "string" column comes back with that dtype from pandas' metadata."""
    if backend == "duckdb":
        pytest.importorskip("duckdb")
    frame = dataset("sleepstudy")
    path = tmp_path / "sleepstudy.parquet"
    frame.assign(Days=TEXT["string"](frame["Days"])).to_parquet(path)
    fit = hlm.fit("Reaction ~ Days + (1 | Subject)", path, backend=backend)
    assert fit.fixef.to_numpy() == pytest.approx(_ols(frame, dummies=True), rel=1e-6, abs=1e-6)


def test_glmm_text_counts_are_refused_not_parsed() -> None:
    """Numbers written as text in cbind(), exposure() or a counted response are refused."""
    frame = dataset("cbpp").assign(herd=lambda d: d["herd"].astype(str), fail=lambda d: d["size"] - d["incidence"])
    text = TEXT["string"]
    with pytest.raises(DataError, match="cbind\\(\\): 'fail' is not numeric"):
        hlm.fit(
            "cbind(incidence, fail) ~ period + (1 | herd)", frame.assign(fail=text(frame["fail"])), family="binomial"
        )
    with pytest.raises(DataError, match="exposure\\(size\\): the column 'size' is not numeric"):
        hlm.fit("mepoisson incidence period, exposure(size) || herd:", frame.assign(size=text(frame["size"])))
    with pytest.raises(DataError, match="the response 'incidence' is not numeric"):
        hlm.fit("mepoisson incidence period, exposure(size) || herd:", frame.assign(incidence=text(frame["incidence"])))


def test_text_sampling_weights_are_refused_not_parsed() -> None:
    frame = dataset("sleepstudy_wts").assign(Subject=lambda d: d["Subject"].astype(str))
    with pytest.raises(DataError, match="sampling-weight column 'l1_w1' is not numeric"):
        hlm.fit(
            "Reaction ~ Days + (1 | Subject)",
            frame.assign(l1_w1=TEXT["string"](frame["l1_w1"])),
            pweights=["l1_w1", "l1_w2"],
        )
