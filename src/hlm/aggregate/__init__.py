"""Aggregation backends: one pass over the rows -> :class:`Aggregates`.

``memory`` (numpy, in-memory frames), ``duckdb`` (files, relations, SQL: rows stay in the
engine) and ``spark`` (Spark DataFrames) compute the same statistics; :func:`aggregate_any`
picks one.
"""

from __future__ import annotations

import os
from typing import Any

from hlm.aggregate.stats import Aggregates, CrossBlock, FactorStats, nesting_chain
from hlm.data.layout import build_layout
from hlm.data.source import Backend, check_file, choose_backend, is_relation

__all__ = ["Aggregates", "Backend", "CrossBlock", "FactorStats", "aggregate_any", "choose_backend", "nesting_chain"]


def aggregate_any(
    spec: Any, data: Any, *, backend: Backend = "auto", sql: str | None = None, con: Any = None, weights: Any = None
) -> tuple[Aggregates, Any]:
    """Aggregates of ``data`` (or of ``sql`` on ``con``) by the chosen backend, and formulaic's
    fixed-part spec (``None`` when it cannot serve ``predict(newdata)``).  ``weights``:
    precision weights (:mod:`hlm.weights`), a column summed in the same GROUP BY; an array
    only for in-memory data.

    The stages, each once: the source picks the backend (:func:`choose_backend`; a file for
    an engine is checked here, one read into memory by its reader), the model's
    :class:`~hlm.data.layout.Layout` is built, and the backend evaluates it on the rows."""
    from hlm.errors import OptionError
    from hlm.weights import ARRAY_NAME

    which = choose_backend(data, backend, sql=sql)
    if sql is not None and which != "duckdb":
        raise OptionError("sql= runs on DuckDB; use backend='duckdb' (or 'auto') with sql=")
    if which != "memory" and isinstance(data, (str, os.PathLike)):
        check_file(data)  # in memory, the reader checks it
    layout = build_layout(spec, weights)
    if which == "memory":
        from hlm.aggregate.memory import aggregate_frame
        from hlm.modelframe import build_frame

        frame = build_frame(layout, data, weights)
        return aggregate_frame(frame), frame.x_model_spec
    if which == "duckdb":
        from hlm.aggregate.duckdb import aggregate_duckdb

        frame_data = sql is None and not is_relation(data) and not isinstance(data, (str, os.PathLike))
        if layout.weights == ARRAY_NAME and not frame_data:
            raise OptionError(
                "weights given as an array need an in-memory data frame; for files, SQL and "
                "relations name the weights column (weights='w')"
            )
        if frame_data:
            import duckdb

            from hlm.data.source import categories_as_text, to_pandas
            from hlm.weights import as_array

            con = con if con is not None else duckdb.connect()
            table = to_pandas(data, [*layout.columns, *([weights] if isinstance(weights, str) else [])])
            if layout.weights == ARRAY_NAME:
                table = table.assign(**{ARRAY_NAME: as_array(weights, len(table))})
            data = con.from_df(categories_as_text(table, layout.group_columns))
        agg, plan = aggregate_duckdb(layout, data, con, sql=sql, return_plan=True)
        return agg, plan.x_model_spec
    from hlm.aggregate.spark import aggregate_spark

    if layout.weights == ARRAY_NAME:
        raise OptionError(
            "weights given as an array need an in-memory data frame; for Spark name the weights column (weights='w')"
        )
    agg, plan = aggregate_spark(layout, data, return_plan=True)
    return agg, plan.x_model_spec
