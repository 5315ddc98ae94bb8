"""Aggregation backends: one pass over the rows -> :class:`Aggregates`.

``memory`` (numpy, in-memory frames), ``duckdb`` (files, relations, SQL: rows stay in the
engine) and ``spark`` (Spark DataFrames) compute the same statistics; :func:`aggregate_any`
picks one.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from hlm.aggregate.stats import Aggregates, CrossBlock, FactorStats, nesting_chain

Backend = Literal["auto", "memory", "duckdb", "spark"]
_ENGINE_SUFFIXES = (".parquet", ".pq", ".csv", ".txt", ".tsv")

__all__ = ["Aggregates", "Backend", "CrossBlock", "FactorStats", "aggregate_any", "choose_backend", "nesting_chain"]


def _is_spark(data: Any) -> bool:
    return (type(data).__module__ or "").startswith("pyspark.sql") and hasattr(data, "createOrReplaceTempView")


def choose_backend(data: Any, backend: Backend = "auto", *, sql: str | None = None) -> str:
    """The backend ``backend="auto"`` means for ``data``.

    SQL text or a duckdb relation -> duckdb; a path or glob of Parquet/CSV files -> duckdb
    (the embedded default for files); a Spark DataFrame -> spark; anything else -> memory.
    """
    from hlm.aggregate.duckdb import is_relation
    from hlm.errors import OptionError

    if backend not in ("auto", "memory", "duckdb", "spark"):
        raise OptionError(f"unknown backend '{backend}'; use 'auto', 'memory', 'duckdb' or 'spark'")
    if backend != "auto":
        return backend
    if sql is not None or is_relation(data):
        return "duckdb"
    if _is_spark(data):
        return "spark"
    if isinstance(data, (str, os.PathLike)):
        text = str(data)
        if text.lower().endswith(_ENGINE_SUFFIXES) or any(ch in text for ch in "*?["):
            return "duckdb"
    return "memory"


def aggregate_any(
    spec: Any, data: Any, *, backend: Backend = "auto", sql: str | None = None, con: Any = None, weights: Any = None
) -> tuple[Aggregates, Any]:
    """Aggregates of ``data`` (or of ``sql`` on ``con``) by the chosen backend, and formulaic's
    fixed-part spec (``None`` when it cannot serve ``predict(newdata)``).  ``weights``:
    precision weights (:mod:`hlm.weights`), a column summed in the same GROUP BY; an array
    only for in-memory data."""
    from hlm.errors import OptionError
    from hlm.weights import ARRAY_NAME, weights_name

    which = choose_backend(data, backend, sql=sql)
    if sql is not None and which != "duckdb":
        raise OptionError("sql= runs on DuckDB; use backend='duckdb' (or 'auto') with sql=")
    if which == "memory":
        from hlm.aggregate.memory import aggregate_frame
        from hlm.modelframe import build_frame

        frame = build_frame(spec, data, weights)
        return aggregate_frame(frame), frame.x_model_spec
    wname = weights_name(weights)
    if which == "duckdb":
        from hlm.aggregate.duckdb import aggregate_duckdb, is_relation

        frame_data = sql is None and not is_relation(data) and not isinstance(data, (str, os.PathLike))
        if wname == ARRAY_NAME and not frame_data:
            raise OptionError(
                "weights given as an array need an in-memory data frame; for files, SQL and "
                "relations name the weights column (weights='w')"
            )
        if frame_data:
            import duckdb

            from hlm.modelframe import used_columns
            from hlm.source import categories_as_text, to_pandas
            from hlm.weights import as_array

            con = con if con is not None else duckdb.connect()
            frame = to_pandas(data, used_columns(spec) + ([weights] if isinstance(weights, str) else []))
            if wname == ARRAY_NAME:
                frame = frame.assign(**{ARRAY_NAME: as_array(weights, len(frame))})
            data = con.from_df(categories_as_text(frame, spec.group_columns))
        agg, plan = aggregate_duckdb(spec, data, con, sql=sql, return_plan=True, weights=wname)
        return agg, plan.x_model_spec
    from hlm.aggregate.spark import aggregate_spark

    if wname == ARRAY_NAME:
        raise OptionError(
            "weights given as an array need an in-memory data frame; for Spark name the weights column (weights='w')"
        )
    agg, plan = aggregate_spark(spec, data, return_plan=True, weights=wname)
    return agg, plan.x_model_spec
