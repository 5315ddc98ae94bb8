"""SQL dialects (identifier quoting, string literals, the distinct-collection aggregate) and the
column kinds and values the SQL backends exchange with numpy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

Kind = Literal["numeric", "float", "bool", "string", "other"]
Runner = Callable[[str], Mapping[str, np.ndarray]]
"""Runs one query (with ``{src}`` already substituted) and returns its columns."""


@dataclass(frozen=True)
class Dialect:
    """The few places where DuckDB and Spark SQL differ."""

    name: Literal["duckdb", "spark"]

    def ident(self, name: str) -> str:
        if self.name == "spark":
            return "`" + name.replace("`", "``") + "`"
        return '"' + name.replace('"', '""') + '"'

    def string(self, text: str) -> str:
        if self.name == "spark":
            return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return "'" + text.replace("'", "''") + "'"

    def distinct_list(self, expr: str) -> str:
        return f"collect_set({expr})" if self.name == "spark" else f"list(DISTINCT {expr})"


DUCKDB = Dialect("duckdb")
SPARK = Dialect("spark")


def column_kind(sql_type: str) -> Kind:
    """DuckDB or Spark type name -> how the model uses the column."""
    t = sql_type.strip().upper()
    if t in ("FLOAT", "DOUBLE", "REAL", "FLOAT4", "FLOAT8"):
        return "float"
    if t.startswith("DECIMAL") or t in (
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "INT",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
        "UHUGEINT",
        "LONG",
        "SHORT",
        "BYTE",
    ):
        return "numeric"
    if t in ("BOOLEAN", "BOOL"):
        return "bool"
    if t in ("VARCHAR", "STRING", "TEXT") or t.startswith("VARCHAR") or t.startswith("CHAR"):
        return "string"
    return "other"


def ordered_levels(present: Any, declared: Sequence | None) -> list:
    """The levels present, in the order the source declares (a categorical's categories);
    sorted where it declares none, and any it does not declare after it, sorted."""
    values = sorted(v.item() if isinstance(v, np.generic) else v for v in present)
    if not declared:
        return values
    rank = {v: i for i, v in enumerate(declared)}
    return sorted(values, key=lambda v: (0, rank[v]) if v in rank else (1, 0))


def first_value(col: Any) -> Any:
    arr = col if not isinstance(col, pd.Series) else col.to_numpy()
    value = arr[0]
    if isinstance(value, np.ma.core.MaskedConstant):
        return None
    return value


def as_array(values: Any) -> np.ndarray:
    if isinstance(values, np.ma.MaskedArray):
        return values.filled(np.nan) if values.dtype.kind == "f" else np.asarray(values.data)
    if isinstance(values, pd.Series):
        return values.to_numpy()
    return np.asarray(values)
