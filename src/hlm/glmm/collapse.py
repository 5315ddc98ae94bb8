"""GLMM data from files, SQL, DuckDB relations and Spark DataFrames: the sufficient-statistics
collapse of :mod:`hlm.glmm.rows` as one GROUP BY in DuckDB or Spark (the same SQL text in each
dialect), so only the collapsed table reaches Python.

Rows are grouped by every raw column the model reads except the response (group keys,
covariates -- a factor by its raw column --, offset and exposure columns): rows equal in those
are equal after any row-wise transform of the design.  Per group the query sums the successes
(counts), the trials and the rows.  A first pass checks the responses row by row (0/1, counts
>= 0 and whole) and counts the complete rows per distinct response value, from which the
data-only log-likelihood term (log choose(n, y) for the binomial, -log y! for Poisson) is
summed here, so the full log-likelihood is kept (Spark SQL has no log-gamma function).

Where grouping is not exact the needed columns are read instead (projected, in one pass) and
the in-memory path fits them: nbinom2 (its likelihood in phi is not a function of the sums)
and transforms whose state is computed over all rows (``scale()``, orthogonal ``poly()``:
their value on a collapsed table would differ).  With continuous covariates the GROUP BY
collapses little; it is still the cheapest way to read the columns, and a note says how many
rows it kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from hlm.aggregate import sql as q
from hlm.aggregate.duckdb import DuckDBSource
from hlm.aggregate.spark import SparkSource
from hlm.aggregate.sql.dialect import as_array, column_kind
from hlm.data.source import check_columns
from hlm.design import random_rformulas, rformula
from hlm.errors import DataError, OptionError
from hlm.glmm.family import Family
from hlm.glmm.frame import CBIND, SUCCESSES, TRIALS, Aggregated, StataOffset, split_cbind
from hlm.modelframe import used_columns
from hlm.spec import ModelSpec, parse_model

ROWS = "hlm_rows_"
_ARITHMETIC = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\s*[-+*]\s*([A-Za-z_][A-Za-z0-9_]*|\d+(\.\d*)?))*$")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ONE = "CAST(1 AS DOUBLE)"  # a plain 1.0 is a DECIMAL in Spark SQL
MOSTLY_KEPT = 0.5  # a GROUP BY keeping more than this share of the rows is worth a note


@dataclass(frozen=True)
class _Response:
    """The response in SQL over one data row: the successes (count), the trials, the values
    the data-only constant depends on (the successes and failures of cbind(), a count, none
    for 0/1), the condition of a bad row and its message."""

    y: str
    trials: str
    values: tuple[str, ...]
    bad: str
    message: str

    def constant(self, values: list[np.ndarray], rows: np.ndarray) -> float:
        """sum over rows of log choose(s + f, s) (cbind) or -log y! (counts), from the rows per value."""
        if not values:
            return 0.0
        if len(values) == 2:
            s, f = values
            return float(np.dot(rows, special.gammaln(s + f + 1) - special.gammaln(s + 1) - special.gammaln(f + 1)))
        return float(np.dot(rows, -special.gammaln(values[0] + 1)))


def _stateful(spec: ModelSpec) -> bool:
    parts = [rformula(spec), *(random_rformulas(spec) or [])]
    return any(atom.stateful for part in parts if part is not None for atom in part.atoms)


def _response_sql(
    spec: ModelSpec, family: Family, src: DuckDBSource | SparkSource, d: q.Dialect, cbind: tuple[str, str] | None
) -> _Response:
    if cbind is not None:
        s, f = (f"CAST(({e}) AS DOUBLE)" for e in cbind)
        bad = f"({s} < 0 OR {f} < 0 OR {s} <> round({s}) OR {f} <> round({f}))"
        return _Response(s, f"({s} + {f})", (s, f), bad, "cbind(): successes and failures must be whole numbers >= 0")
    col = d.ident(spec.response)
    kind = src.schema().get(spec.response, "")
    if family.name == "binomial" and (column_kind(kind) == "string" or kind.startswith("ENUM")):
        levels = sorted(str(v) for v in src.run(f"SELECT DISTINCT CAST({col} AS STRING) AS v FROM {src.src} "
                                                  f"WHERE {col} IS NOT NULL")["v"])  # fmt: skip
        if len(levels) != 2:
            raise DataError(f"the binomial response '{spec.response}' has {len(levels)} levels; it needs exactly two")
        y = f"CAST(CAST({col} AS STRING) = {d.string(levels[1])} AS DOUBLE)"
        return _Response(y, ONE, (), "FALSE", "")
    y = f"CAST({col} AS DOUBLE)"
    if family.name == "binomial":
        return _Response(y, ONE, (), f"({y} <> 0 AND {y} <> 1)", f"the binomial response '{spec.response}' must be 0/1")
    bad = f"({y} < 0 OR {y} <> round({y}))"
    return _Response(y, ONE, (y,), bad, f"the count response '{spec.response}' must be whole numbers >= 0")


def _columns(text: str, available: set[str]) -> list[str]:
    return [c for c in dict.fromkeys(_NAME.findall(text)) if c in available]


def _check_pass(
    src: DuckDBSource | SparkSource, r: _Response, complete: str
) -> tuple[int, int, list[np.ndarray], np.ndarray]:
    """(all rows, complete rows, distinct response values, complete rows per value) in one pass,
    refusing a bad response; rows with a missing value or a bad response fall in the NULL group."""
    good = f"{complete} AND NOT {r.bad}"
    values = [f"CASE WHEN {good} THEN {v} END AS hlm_v{i}" for i, v in enumerate(r.values)]
    keys = ", ".join(f"hlm_v{i}" for i in range(len(r.values)))
    out = src.run(
        f"SELECT {''.join(v + ', ' for v in values)}COUNT(*) AS hlm_n, COUNT(*) FILTER (WHERE {good}) AS hlm_kept, "
        f"COUNT(*) FILTER (WHERE {complete} AND {r.bad}) AS hlm_bad FROM {src.src}"
        + (f" GROUP BY {keys}" if keys else "")
    )
    if int(np.sum(as_array(out["hlm_bad"]))):
        raise DataError(r.message)
    kept = as_array(out["hlm_kept"]).astype(float)
    good_values = [as_array(out[f"hlm_v{i}"]).astype(float)[kept > 0] for i in range(len(r.values))]
    return int(np.sum(as_array(out["hlm_n"]))), int(kept.sum()), good_values, kept[kept > 0]


def _source(data: Any, engine: str, sql: str | None, con: Any) -> tuple[DuckDBSource | SparkSource, q.Dialect]:
    if engine == "spark":
        if sql is not None or con is not None:
            raise OptionError("sql= and con= are DuckDB's; a Spark DataFrame is given as data")
        return SparkSource(data), q.SPARK
    return DuckDBSource(data, sql=sql, con=con), q.DUCKDB


def read_glmm_source(
    model: Any, data: Any, family: Family, *, offset: Any, sql: str | None, con: Any, engine: str = "duckdb"
) -> tuple[Any, pd.DataFrame, Aggregated | None, str | None]:
    """(model, frame, aggregation or None, note) for :func:`hlm.glmm.frame.glmm_frame` from a
    DuckDB source or (``engine="spark"``) a Spark DataFrame (module docstring)."""
    src, d = _source(data, engine, sql, con)
    schema = src.schema()
    if offset is not None and not isinstance(offset, (str, StataOffset)):
        raise OptionError(
            "offset= as an array needs in-memory data; for files, SQL and Spark name a column: offset='column'"
        )
    cbind = None
    inner = model
    if isinstance(model, str) and (m := CBIND.match(model)):
        cbind = split_cbind(m.group(1))
        inner = f"{SUCCESSES} ~{m.group(2)}"
    spec = model if isinstance(model, ModelSpec) else parse_model(inner)
    offsets = [offset.column if isinstance(offset, StataOffset) else offset] if offset is not None else []
    keys = list(dict.fromkeys([*used_columns(spec)[1:], *offsets]))
    response_cols = _columns(" ".join(cbind), set(schema)) if cbind else [spec.response]
    check_columns([*response_cols, *keys], schema)
    exact = family.name != "negative_binomial" and not _stateful(spec)
    if not exact or (cbind is not None and not all(_ARITHMETIC.match(e.strip()) for e in cbind)):
        cols = ", ".join(d.ident(c) for c in dict.fromkeys([*response_cols, *keys]))
        return model, pd.DataFrame(src.run(f"SELECT {cols} FROM {src.src}")), None, None
    r = _response_sql(spec, family, src, d, cbind)
    complete = " AND ".join(f"{d.ident(c)} IS NOT NULL" for c in [*response_cols, *keys])
    total, kept, values, per_value = _check_pass(src, r, complete)
    key_sql = ", ".join(d.ident(c) for c in keys)
    grouped = src.run(
        f"SELECT {key_sql + ', ' if keys else ''}SUM({r.y}) AS {d.ident(spec.response)}, SUM({r.trials}) AS {TRIALS}, "
        f"COUNT(*) AS {ROWS} FROM {src.src} WHERE {complete}" + (f" GROUP BY {key_sql}" if keys else "")
    )
    frame = pd.DataFrame({k: v for k, v in grouped.items()})
    if isinstance(src, DuckDBSource):
        for col, levels in src.declared_levels([c for c in keys if schema.get(c) == "VARCHAR"]).items():
            frame[col] = pd.Categorical(frame[col], categories=levels)
    label = f"cbind({cbind[0]}, {cbind[1]})" if cbind else spec.response
    trials_col = TRIALS if family.name == "binomial" else None
    agg = Aggregated(trials_col, ROWS, r.constant(values, per_value), total - kept, label)
    note = None
    if len(frame) > MOSTLY_KEPT * kept:
        note = f"the GROUP BY collapse kept {len(frame):,} of {kept:,} rows (continuous covariates); all were read"
    return replace(spec, text=model) if isinstance(model, str) else spec, frame, agg, note
