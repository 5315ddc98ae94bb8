"""GLMM data from files, SQL and DuckDB relations: the sufficient-statistics collapse of
:mod:`hlm.glmm.rows` as one GROUP BY in DuckDB, so only the collapsed table reaches Python.

Rows are grouped by every raw column the model reads except the response (group keys,
covariates -- a factor by its raw column --, offset and exposure columns): rows equal in those
are equal after any row-wise transform of the design.  Per group the query sums the successes
(counts), the trials and the rows, and the data-only log-likelihood term of each row
(log choose(n, y) for the binomial, -log y! for Poisson) so the full log-likelihood is kept.
The responses are checked row by row in the same pass (0/1, counts >= 0 and whole).

Where grouping is not exact the needed columns are read instead (projected, in one pass) and
the in-memory path fits them: nbinom2 (its likelihood in phi is not a function of the sums)
and transforms whose state is computed over all rows (``scale()``, orthogonal ``poly()``:
their value on a collapsed table would differ).  With continuous covariates the GROUP BY
collapses little; it is still the cheapest way to read the columns, and a note says how many
rows it kept.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pandas as pd

from hlm.aggregate import sql as q
from hlm.aggregate.duckdb import DuckDBSource
from hlm.data.source import check_columns
from hlm.design import random_rformulas, rformula
from hlm.errors import DataError, OptionError
from hlm.glmm.family import Family
from hlm.glmm.frame import CBIND, SUCCESSES, TRIALS, Aggregated, StataOffset, split_cbind
from hlm.modelframe import used_columns
from hlm.spec import ModelSpec, parse_model

ROWS, CONSTANT = "hlm_rows_", "hlm_constant_"
_ARITHMETIC = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\s*[-+*]\s*([A-Za-z_][A-Za-z0-9_]*|\d+(\.\d*)?))*$")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MOSTLY_KEPT = 0.5  # a GROUP BY keeping more than this share of the rows is worth a note


def _stateful(spec: ModelSpec) -> bool:
    parts = [rformula(spec), *(random_rformulas(spec) or [])]
    return any(atom.stateful for part in parts if part is not None for atom in part.atoms)


def _response_sql(spec: ModelSpec, family: Family, src: DuckDBSource, cbind: tuple[str, str] | None) -> tuple[str, ...]:
    """(successes, trials, row constant, bad-row condition, message) in SQL over one data row."""
    if cbind is not None:
        s, f = (f"CAST(({e}) AS DOUBLE)" for e in cbind)
        bad = f"({s} < 0 OR {f} < 0 OR {s} <> round({s}) OR {f} <> round({f}))"
        const = f"lgamma({s} + {f} + 1) - lgamma({s} + 1) - lgamma({f} + 1)"
        return s, f"({s} + {f})", const, bad, "cbind(): successes and failures must be whole numbers >= 0"
    col = q.DUCKDB.ident(spec.response)
    kind = src.schema().get(spec.response, "")
    if family.name == "binomial" and (kind == "VARCHAR" or kind.startswith("ENUM")):
        levels = sorted(str(v) for v in src.run(f"SELECT DISTINCT CAST({col} AS VARCHAR) AS v FROM {src.src} "
                                                  f"WHERE {col} IS NOT NULL")["v"])  # fmt: skip
        if len(levels) != 2:
            raise DataError(f"the binomial response '{spec.response}' has {len(levels)} levels; it needs exactly two")
        y = f"(CASE WHEN CAST({col} AS VARCHAR) = {q.DUCKDB.string(levels[1])} THEN 1.0 ELSE 0.0 END)"
        return y, "1.0", "0.0", "FALSE", ""
    y = f"CAST({col} AS DOUBLE)"
    if family.name == "binomial":
        return y, "1.0", "0.0", f"({y} <> 0 AND {y} <> 1)", f"the binomial response '{spec.response}' must be 0/1"
    bad = f"({y} < 0 OR {y} <> round({y}))"
    return y, "1.0", f"-lgamma({y} + 1)", bad, f"the count response '{spec.response}' must be whole numbers >= 0"


def _columns(text: str, available: set[str]) -> list[str]:
    return [c for c in dict.fromkeys(_NAME.findall(text)) if c in available]


def read_glmm_source(
    model: Any, data: Any, family: Family, *, offset: Any, sql: str | None, con: Any
) -> tuple[Any, pd.DataFrame, Aggregated | None, str | None]:
    """(model, frame, aggregation or None, note) for :func:`hlm.glmm.frame.glmm_frame` from a
    DuckDB source (module docstring)."""
    src = DuckDBSource(data, sql=sql, con=con)
    schema = src.schema()
    if offset is not None and not isinstance(offset, (str, StataOffset)):
        raise OptionError("offset= as an array needs in-memory data; for files and SQL name a column: offset='column'")
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
        cols = ", ".join(q.DUCKDB.ident(c) for c in dict.fromkeys([*response_cols, *keys]))
        return model, pd.DataFrame(src.run(f"SELECT {cols} FROM {src.src}")), None, None
    y, trials, const, bad, message = _response_sql(spec, family, src, cbind)
    complete = " AND ".join(f"{q.DUCKDB.ident(c)} IS NOT NULL" for c in [*response_cols, *keys])
    check = src.run(
        f"SELECT COUNT(*) AS total, COUNT(*) FILTER (WHERE {complete}) AS kept, "
        f"COUNT(*) FILTER (WHERE {complete} AND {bad}) AS bad FROM {src.src}"
    )
    if int(check["bad"][0]):
        raise DataError(message)
    total, kept = int(check["total"][0]), int(check["kept"][0])
    key_sql = ", ".join(q.DUCKDB.ident(c) for c in keys)
    out = q.DUCKDB.ident(spec.response)
    grouped = src.run(
        f"SELECT {key_sql + ', ' if keys else ''}SUM({y}) AS {out}, SUM({trials}) AS {TRIALS}, "
        f"COUNT(*) AS {ROWS}, SUM({const}) AS {CONSTANT} FROM {src.src} WHERE {complete}"
        + (f" GROUP BY {key_sql}" if keys else "")
    )
    frame = pd.DataFrame({k: v for k, v in grouped.items()})
    for col, levels in src.declared_levels([c for c in keys if schema.get(c) == "VARCHAR"]).items():
        frame[col] = pd.Categorical(frame[col], categories=levels)
    label = f"cbind({cbind[0]}, {cbind[1]})" if cbind else spec.response
    trials_col = TRIALS if family.name == "binomial" else None
    agg = Aggregated(trials_col, ROWS, float(frame[CONSTANT].sum()), total - kept, label)
    note = None
    if len(frame) > MOSTLY_KEPT * kept:
        note = f"the GROUP BY collapse kept {len(frame):,} of {kept:,} rows (continuous covariates); all were read"
    return replace(spec, text=model) if isinstance(model, str) else spec, frame, agg, note
