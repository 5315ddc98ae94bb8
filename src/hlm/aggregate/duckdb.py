"""The DuckDB backend: sufficient statistics of files, relations or SQL, computed in the engine.

``aggregate_duckdb(spec, "data/*.parquet")`` runs the queries of :mod:`hlm.aggregate.sql`
in DuckDB: rows never reach Python; what comes back is one row per group (memory is
bounded by the number of groups).  Sources: a path or glob of Parquet or CSV files, a
``duckdb`` relation, or SQL text run on a connection (``sql=..., con=...``).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np

from hlm.aggregate import sql as q
from hlm.aggregate.stats import Aggregates
from hlm.data.layout import Layout
from hlm.data.source import is_relation, parquet_levels
from hlm.errors import DataError, FileError, HLMError, OptionError
from hlm.spec.terms import ModelSpec


def _memory_limit() -> str:
    """2.5 GB, or half the machine's memory where that is less."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - no sysconf
        total = 0
    mib = 2560 if total <= 0 else max(256, min(2560, total // 2**21))
    return f"{mib}MB"


MEMORY_LIMIT = _memory_limit()
"""DuckDB's memory limit on the connections hlm opens itself (for paths, and for sql= without
con=): 2.5 GB, or half the machine's memory where that is less.  Its aggregation spills to
disk beyond it, so the process's peak memory is about this plus the grouped result in numpy
(small when the innermost groups are pooled in the database, :data:`hlm.aggregate.sql.
POOL_LEAF_GROUPS`).  At 100,000,000 rows in 50,000,000 innermost groups the hash table
needs about this much; 1 GB made DuckDB spill and took twice as long.  Pass your own
``con`` to choose another."""

_CSV_TYPES = "auto_type_candidates=['BIGINT', 'DOUBLE', 'VARCHAR']"  # as pandas reads: no dates, no yes/no booleans
_CSV_NULLS = "nullstr=['', 'NA', 'N/A', 'NaN', 'nan', 'NULL', 'null']"


def duckdb_module() -> Any:
    try:
        import duckdb
    except ImportError:  # pragma: no cover - duckdb is a dependency
        raise HLMError("the DuckDB backend needs the duckdb package: pip install duckdb") from None
    return duckdb


def table_function(path: str | os.PathLike) -> str:
    """The DuckDB table expression that scans a path or glob of Parquet or CSV files."""
    text = str(path)
    globbed = any(ch in text for ch in "*?[")
    if not globbed and not Path(text).exists():
        raise FileError(f"data file '{text}' does not exist; check the path")
    suffix = Path(text).suffix.lower()
    lit = q.DUCKDB.string(text)
    if suffix in (".parquet", ".pq") or (not globbed and Path(text).is_dir()):
        if not globbed and Path(text).is_dir():
            lit = q.DUCKDB.string(os.path.join(text, "**", "*.parquet"))
        return f"read_parquet({lit})"
    if suffix in (".csv", ".txt"):
        return f"read_csv({lit}, header=true, {_CSV_TYPES}, {_CSV_NULLS})"
    if suffix == ".tsv":
        return f"read_csv({lit}, header=true, delim='\\t', {_CSV_TYPES}, {_CSV_NULLS})"
    raise FileError(
        f"the DuckDB backend reads .parquet and .csv files, not '{suffix or text}'; "
        "use backend='memory' for other files"
    )


_ENUM_VALUE = re.compile(r"'((?:[^']|'')*)'")


def enum_levels(sql_type: str) -> list[str] | None:
    """The values of a DuckDB ``ENUM('a', 'b')`` type, in order; None for other types."""
    t = sql_type.strip()
    if not t.upper().startswith("ENUM("):
        return None
    return [v.replace("''", "'") for v in _ENUM_VALUE.findall(t)]


def duckdb_reason(exc: Exception) -> str:
    """One line from a DuckDB error: its first line and, for CSV reader errors ('CSV Error on
    Line: 2', 'Error when sniffing file'), the line that says what is wrong (the echoed row
    and the hints are left out)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    skip = (
        "Original Line",
        "Possible",
        "* ",
        "file=",
        "delimiter",
        "quote",
        "escape",
        "new_line",
        "header",
        "skip_rows",
        "comment",
        "strict_mode",
        "date_format",
        "timestamp_format",
        "null_padding",
        "sample_size",
        "ignore_errors",
        "all_varchar",
        "Parser options",
        "The Sniffer",
    )
    if "CSV Error" in lines[0] or "sniffing" in lines[0]:
        for ln in lines[1:]:
            if not ln.startswith(skip):
                return f"{lines[0].rstrip('.')}; {ln}"
    return lines[0]


def _stream_numpy(rel: Any, batch: int = 1 << 20) -> dict[str, np.ndarray]:
    """A relation's rows as numpy columns, read in Arrow batches: DuckDB never holds the
    whole result, and each column is joined from its pieces alone (peak: the result plus
    one column)."""
    parts: dict[str, list[np.ndarray]] = {}
    masks: dict[str, list[np.ndarray | None]] = {}
    names: list[str] = []
    sizes: list[int] = []
    for rb in rel.to_arrow_reader(batch):
        names = rb.schema.names
        sizes.append(rb.num_rows)
        for i, name in enumerate(names):
            values, mask = _column_numpy(rb.column(i))
            parts.setdefault(name, []).append(values)
            masks.setdefault(name, []).append(mask)
    if not names:  # no rows: the column names and types from an empty fetch
        return rel.limit(0).fetchnumpy()
    out = {}
    for name in names:
        pieces = parts.pop(name)
        values = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        del pieces
        mk = masks.pop(name)
        if any(m is not None for m in mk):  # NULLs (GROUPING SETS): a masked array, as fetchnumpy gives
            mask = np.concatenate([np.zeros(size, bool) if m is None else m for size, m in zip(sizes, mk)])
            values = np.ma.MaskedArray(values, mask=mask)
        out[name] = values
    return out


def _column_numpy(col: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """An Arrow column as numpy values (NULLs filled with a zero of the type) and its NULL mask."""
    if not col.null_count:
        return col.to_numpy(zero_copy_only=False), None
    import pyarrow as pa

    mask = col.is_null().to_numpy(zero_copy_only=False)
    t = col.type
    fill = (
        ""
        if pa.types.is_string(t) or pa.types.is_large_string(t)
        else False
        if pa.types.is_boolean(t)
        else 0
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
        else None
    )
    if fill is None:
        return col.to_numpy(zero_copy_only=False), mask
    return col.fill_null(pa.scalar(fill, type=t)).to_numpy(zero_copy_only=False), mask


class DuckDBSource:
    """Where the rows are: a table expression on a connection, or a relation."""

    def __init__(self, source: Any = None, *, sql: str | None = None, con: Any = None, progress: bool | None = None):
        duckdb = duckdb_module()
        self.rel = None
        self.path: str | None = None  # a file source: its read errors are FileErrors naming it
        if sql is not None:
            if source is not None:
                raise OptionError("give either data or sql=, not both")
            self.con = con if con is not None else duckdb.connect()
            self.src = f"({sql.strip().rstrip(';')}) AS hlm_src"
        elif is_relation(source):
            self.rel = source
            self.con = None
            self.src = "hlm_src"
        elif isinstance(source, (str, os.PathLike)):
            self.con = con if con is not None else duckdb.connect()
            self.src = f"{table_function(source)} AS hlm_src"
            self.path = str(source)
            self.kind = "parquet" if self.src.startswith("read_parquet") else "csv"
        else:
            raise OptionError(
                f"the DuckDB backend takes a path, a duckdb relation or sql=; got {type(source).__name__}"
            )
        if self.con is not None and con is None:  # our own connection: bound DuckDB's memory
            try:
                self.con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
                self.con.execute("SET preserve_insertion_order = false")
            except Exception:  # pragma: no cover - older duckdb
                pass
        self.enums = self._strings_for_enums()
        if self.con is not None:
            show = sys.stderr.isatty() if progress is None else progress
            try:
                self.con.execute(f"SET enable_progress_bar = {'true' if show else 'false'}")
            except Exception:  # pragma: no cover - older duckdb
                pass

    def run(self, query: str, stream: bool = False) -> Mapping[str, np.ndarray]:
        duckdb = duckdb_module()
        try:
            if stream:
                rel = self.rel.query("hlm_src", query) if self.rel is not None else self.con.sql(query)
                return _stream_numpy(rel)
            if self.rel is not None:
                return self.rel.query("hlm_src", query).fetchnumpy()
            return self.con.execute(query).fetchnumpy()
        except duckdb.IOException as exc:
            if self.path is not None:
                raise FileError(f"cannot read '{self.path}' as {self.kind}: {duckdb_reason(exc)}") from None
            raise FileError(f"DuckDB cannot read the data: {duckdb_reason(exc)}") from None
        except duckdb.InvalidInputException as exc:
            # on a file source these come from the reader (sniffing, encoding, ragged rows, corrupt Parquet)
            if self.path is not None:
                raise FileError(f"cannot read '{self.path}' as {self.kind}: {duckdb_reason(exc)}") from None
            raise DataError(f"DuckDB cannot evaluate the model on the data: {duckdb_reason(exc)}") from None
        except duckdb.ConversionException as exc:
            raise DataError(f"DuckDB cannot evaluate the model on the data: {duckdb_reason(exc)}") from None

    def fetch(self, query: str) -> Mapping[str, np.ndarray]:
        """A large result (one row per group), streamed to numpy in batches."""
        return self.run(query, stream=True)

    def _strings_for_enums(self) -> dict[str, list[str]]:
        """ENUM columns (a pandas categorical becomes one) are read as their labels (DuckDB
        returns an ENUM's codes in lists); their declared levels are returned."""
        if self.path is not None:  # files hold no ENUMs
            return {}
        enums = {c: levels for c, t in self.schema().items() if (levels := enum_levels(t)) is not None}
        if enums:
            casts = ", ".join(f"CAST({q.DUCKDB.ident(c)} AS VARCHAR) AS {q.DUCKDB.ident(c)}" for c in enums)
            if self.rel is not None:
                self.rel = self.rel.project(f"* REPLACE ({casts})")
            else:
                self.src = f"(SELECT * REPLACE ({casts}) FROM {self.src}) AS hlm_src"
        return enums

    def declared_levels(self, columns: Sequence[str]) -> dict[str, list]:
        """The level order the source declares for those of ``columns`` it declares one for:
        ENUM types' values, a Parquet file's stored dictionaries (DuckDB reads them as strings)."""
        if self.path is not None and self.kind == "parquet":
            return parquet_levels(self.path, columns)
        return {c: self.enums[c] for c in columns if c in self.enums}

    def schema(self) -> dict[str, str]:
        if self.rel is not None:
            return {c: str(t) for c, t in zip(self.rel.columns, self.rel.types)}
        res = self.run(f"DESCRIBE SELECT * FROM {self.src}")
        return {str(n): str(t) for n, t in zip(res["column_name"], res["column_type"])}


@overload
def aggregate_duckdb(
    spec: ModelSpec | Layout,
    source: Any = None,
    con: Any = None,
    *,
    sql: str | None = None,
    progress: bool | None = None,
    return_plan: Literal[False] = False,
    weights: str | None = None,
) -> Aggregates: ...
@overload
def aggregate_duckdb(
    spec: ModelSpec | Layout,
    source: Any = None,
    con: Any = None,
    *,
    sql: str | None = None,
    progress: bool | None = None,
    return_plan: Literal[True],
    weights: str | None = None,
) -> tuple[Aggregates, q.Plan]: ...
def aggregate_duckdb(
    spec: ModelSpec | Layout,
    source: Any = None,
    con: Any = None,
    *,
    sql: str | None = None,
    progress: bool | None = None,
    return_plan: bool = False,
    weights: str | None = None,
) -> Aggregates | tuple[Aggregates, q.Plan]:
    """Sufficient statistics of ``source`` computed by DuckDB.

    Parameters
    ----------
    spec : the parsed model, or its layout (:class:`~hlm.data.layout.Layout`, which carries the weights column).
    source : a path or glob of Parquet/CSV files, or a duckdb relation (ignored with ``sql``).
    con : a duckdb connection for paths and ``sql`` (a fresh in-memory one if omitted).
    sql : a query whose result is the data.
    progress : show DuckDB's progress bar (default: when stderr is a terminal).
    weights : a column of precision weights (:mod:`hlm.weights`); every sum is weighted.

    Queries: a prepass for categorical levels and ``center()`` means when the model needs
    them, a ``COUNT(*)`` of all rows, one global scan for ``[X y]'[X y]`` and one grouped
    scan for the per-group statistics: for a chain of random intercepts with at least
    :data:`~hlm.aggregate.sql.chain.POOL_LEAF_GROUPS` innermost groups, two nested ``GROUP BY``s
    that pool those groups by size (one row per parent group and size comes back); for other
    slash-nested factors ``(1|a/b/c)`` a plain ``GROUP BY`` of the innermost groups (the
    outer ones are derived from them); else
    ``GROUP BY GROUPING SETS`` over every factor.  The grouped rows stream to numpy in
    batches (DuckDB's aggregation spills to disk beyond its memory limit; connections hlm
    opens itself get :data:`MEMORY_LIMIT`).
    """
    src = DuckDBSource(source, sql=sql, con=con, progress=progress)
    plan = q.plan(spec, src.schema(), q.DUCKDB, src.run, src.src, weights=weights, declared=src.declared_levels)
    agg = q.compute(plan, src.run, src.src, src.fetch)
    return (agg, plan) if return_plan else agg
