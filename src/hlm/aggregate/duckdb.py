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
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hlm.aggregate import sql as q
from hlm.aggregate.stats import Aggregates
from hlm.data.source import is_relation, parquet_levels
from hlm.errors import DataError, FileError, HLMError, HLMWarning, OptionError
from hlm.outputs import output_file
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


def _duckdb():
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


def _reason(exc: Exception) -> str:
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


class _Source:
    """Where the rows are: a table expression on a connection, or a relation."""

    def __init__(self, source: Any = None, *, sql: str | None = None, con: Any = None, progress: bool | None = None):
        duckdb = _duckdb()
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
        duckdb = _duckdb()
        try:
            if stream:
                rel = self.rel.query("hlm_src", query) if self.rel is not None else self.con.sql(query)
                return _stream_numpy(rel)
            if self.rel is not None:
                return self.rel.query("hlm_src", query).fetchnumpy()
            return self.con.execute(query).fetchnumpy()
        except duckdb.IOException as exc:
            if self.path is not None:
                raise FileError(f"cannot read '{self.path}' as {self.kind}: {_reason(exc)}") from None
            raise FileError(f"DuckDB cannot read the data: {_reason(exc)}") from None
        except duckdb.InvalidInputException as exc:
            # on a file source these come from the reader (sniffing, encoding, ragged rows, corrupt Parquet)
            if self.path is not None:
                raise FileError(f"cannot read '{self.path}' as {self.kind}: {_reason(exc)}") from None
            raise DataError(f"DuckDB cannot evaluate the model on the data: {_reason(exc)}") from None
        except duckdb.ConversionException as exc:
            raise DataError(f"DuckDB cannot evaluate the model on the data: {_reason(exc)}") from None

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


def aggregate_duckdb(
    spec: ModelSpec,
    source: Any = None,
    con: Any = None,
    *,
    sql: str | None = None,
    progress: bool | None = None,
    return_plan: bool = False,
    weights: str | None = None,
) -> Aggregates:
    """Sufficient statistics of ``source`` computed by DuckDB.

    Parameters
    ----------
    spec : the parsed model.
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
    src = _Source(source, sql=sql, con=con, progress=progress)
    plan = q.plan(spec, src.schema(), q.DUCKDB, src.run, src.src, weights=weights, declared=src.declared_levels)
    agg = q.compute(plan, src.run, src.src, src.fetch)
    return (agg, plan) if return_plan else agg


def _writer_source(what: str, source: Any, sql: str | None, con: Any, progress: bool | None) -> _Source:
    """The source of a second pass that writes a file: a path or sql=, not a relation."""
    src = _Source(source, sql=sql, con=con, progress=progress)
    if src.rel is not None:
        raise OptionError(f"{what} needs a path or sql= (a relation has no connection to write from)")
    return src


OUTPUT_FORMATS = {".parquet": "PARQUET", ".pq": "PARQUET", ".csv": "CSV"}


def _copy_to_file(src: _Source, query: str, out_path: str | os.PathLike, overwrite: bool) -> int:
    """Write the query's rows to ``out_path`` in the format its extension names (Parquet or
    CSV), under a temporary name first; the number of rows written."""
    target, kind = output_file(out_path, OUTPUT_FORMATS, overwrite=overwrite)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    options = "FORMAT PARQUET" if kind == "PARQUET" else "FORMAT CSV, HEADER"
    try:
        res = src.con.execute(f"COPY ({query}) TO {q.DUCKDB.string(str(tmp))} ({options})").fetchall()
        os.replace(tmp, target)
    except (OSError, _duckdb().IOException) as exc:
        raise FileError(f"cannot write '{out_path}': {_reason(exc) if not isinstance(exc, OSError) else exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return int(res[0][0]) if res and res[0] else 0


def _fixed_part(fit: Any, plan: q.Plan) -> str:
    """offset + X beta as an SQL expression over the source's columns."""
    beta = fit.fixef
    xb = (
        " + ".join(
            f"({float(beta[name])!r}) * ({col.sql})" for name, col in zip(plan.xnames, plan.xcols) if name in beta.index
        )
        or "0.0"
    )
    return xb if plan.offset is None else f"{xb} + ({plan.offset})"


def _pooled_leaf_modes(fit: Any, f: int, fac: Any, body: str, y: str) -> str:
    """``body`` (rows with the ``fitted`` values of the other factors) with the pooled innermost
    factor's random intercepts added.  Its groups are only coupled with their ancestors, so
    given the ancestors' modes a group's own equation gives, with t = theta^2,

        b_g = t / (1 + t n_g) * sum over the group's rows of (y - X beta - ancestors' b),

    one GROUP BY over the rows, joined back on the factor's columns."""
    d = q.DUCKDB
    t = float(fit.structure.lambdas(fit.theta)[f][0, 0]) ** 2
    keys = [d.ident(c) for c in fac.columns]
    alias = [f"hlm_lk{i}" for i in range(len(keys))]
    modes = (
        f"SELECT {', '.join(f'{k} AS {a}' for k, a in zip(keys, alias))}, "
        f"{t!r} / (1.0 + {t!r} * COUNT(*)) * SUM({y} - fitted) AS hlm_bleaf "
        f"FROM hlm_rows WHERE fitted IS NOT NULL GROUP BY {', '.join(keys)}"
    )
    on = " AND ".join(f"hlm_rows.{k} = hlm_leaf.{a}" for k, a in zip(keys, alias))
    return (
        f"WITH hlm_rows AS ({body}), hlm_leaf AS ({modes}) "
        f"SELECT hlm_rows.* EXCLUDE (fitted), hlm_rows.fitted + COALESCE(hlm_leaf.hlm_bleaf, 0.0) AS fitted "
        f"FROM hlm_rows LEFT JOIN hlm_leaf ON {on}"
    )


def write_predictions(
    fit: Any,
    source: Any,
    out_path: str | os.PathLike,
    re: bool = True,
    *,
    con: Any = None,
    sql: str | None = None,
    progress: bool | None = None,
    overwrite: bool = False,
) -> int:
    """Second pass in DuckDB: every row of ``source`` with ``fitted`` (X beta, + Z b with
    ``re=True``) and ``residual`` (y - fitted) appended, written to ``out_path`` (Parquet,
    or CSV for a ``.csv`` name; an existing file only with ``overwrite=True``).

    The conditional modes b travel to DuckDB as one small table per grouping factor (one row
    per group) joined on the grouping columns; levels absent from the fit get b = 0.  The
    modes of a factor pooled in the database (:data:`hlm.aggregate.sql.chain.POOL_LEAF_GROUPS`) are
    computed there (:func:`_pooled_leaf_modes`).  Rows the model cannot use (a missing value
    in a model column) get NULL.  Rows keep the source's order for a single file, unless a
    factor is pooled (then DuckDB's order; every source column is written).  Returns the
    number of rows written.
    """
    output_file(out_path, OUTPUT_FORMATS, overwrite=overwrite)
    src = _writer_source("write_predictions", source, sql, con, progress)
    plan = q.plan(fit.spec, src.schema(), q.DUCKDB, src.run, src.src, declared=src.declared_levels)
    d = q.DUCKDB
    xb = _fixed_part(fit, plan)
    joins, zb = [], []
    pooled = None
    if re:
        modes = fit.conditional_modes.modes
        agg = fit.aggregates
        for f, fac in enumerate(agg.factors):
            cols = fit.structure.factor_cols[f]
            if fac.pooled is not None:
                pooled = (f, fac)
                continue
            table = {f"hlm_k{i}": np.asarray(key) for i, key in enumerate(fac.keys)}
            table.update({f"hlm_b{a}": modes[f][:, a] for a in range(len(cols))})
            name = f"hlm_re_{f}"
            src.con.register(name, pd.DataFrame(table))
            on = " AND ".join(f"hlm_src.{d.ident(c)} = r{f}.hlm_k{i}" for i, c in enumerate(fac.columns))
            joins.append(f"LEFT JOIN {name} r{f} ON {on}")
            for a, pool_index in enumerate(cols):
                zb.append(f"COALESCE(r{f}.hlm_b{a}, 0.0) * ({plan.zcols[pool_index].sql})")
    fitted = f"CASE WHEN {plan.where()} THEN {' + '.join([f'({xb})', *zb])} END"
    y = f"CAST({d.ident(fit.spec.response)} AS DOUBLE)"
    body = f"SELECT hlm_src.*, {fitted} AS fitted FROM {src.src} {' '.join(joins)}"
    if pooled is not None:
        body = _pooled_leaf_modes(fit, *pooled, body, y)
    return _copy_to_file(src, f"SELECT *, {y} - fitted AS residual FROM ({body}) hlm_out", out_path, overwrite)


def write_ranef(
    fit: Any,
    source: Any,
    out_path: str | os.PathLike,
    *,
    con: Any = None,
    sql: str | None = None,
    progress: bool | None = None,
    overwrite: bool = False,
) -> int:
    """``fit.ranef()`` written to ``out_path`` (Parquet, or CSV for a ``.csv`` name; an
    existing file only with ``overwrite=True``) (columns group, level, term,
    estimate, std_error), including the groups of a factor pooled in the database
    (:data:`hlm.aggregate.sql.chain.POOL_LEAF_GROUPS`), whose modes DuckDB computes from the rows
    of ``source`` (the fitted data) in one GROUP BY.

    A pooled group g is a random intercept nested in its parent p.  Given the ancestors, with
    t = theta^2, n_g its complete rows, r_g the sum of y - X beta over them, S_g = 1 + t n_g,
    and c_p, V_p the sum of p's and its ancestors' modes and its conditional variance over
    sigma^2 (the scalar recursion of :mod:`hlm.lmm.ranef`),

        b_g = t (r_g - n_g c_p) / S_g,    Var(b_g) = sigma^2 t (1 + t n_g^2 V_p / S_g) / S_g.

    Rows come in no particular order.  Returns the number of rows written."""
    from hlm.lmm.ranef import factor_columns

    output_file(out_path, OUTPUT_FORMATS, overwrite=overwrite)
    src = _writer_source("write_ranef", source, sql, con, progress)
    d = q.DUCKDB
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HLMWarning)  # the pooled level is what this adds
        src.con.register("hlm_ranef_kept", fit.ranef())
    parts = ['SELECT "group", level, term, estimate, std_error FROM hlm_ranef_kept']
    agg = fit.aggregates
    modes = fit.conditional_modes
    for f, fac in enumerate(agg.factors):
        if fac.pooled is None:
            continue
        assert agg.chain is not None and modes.pooled_parent is not None
        plan = q.plan(fit.spec, src.schema(), d, src.run, src.src, declared=src.declared_levels)
        parent = agg.factors[agg.chain[1]]
        table = {f"hlm_pk{i}": np.asarray(key) for i, key in enumerate(parent.keys)}
        table["hlm_c"], table["hlm_v"] = modes.pooled_parent
        src.con.register("hlm_ranef_parent", pd.DataFrame(table))
        t = float(fit.structure.lambdas(fit.theta)[f][0, 0]) ** 2
        keys = [d.ident(c) for c in fac.columns]
        y = f"CAST({d.ident(fit.spec.response)} AS DOUBLE)"
        groups = (
            f"SELECT {', '.join(keys)}, COUNT(*) AS n, SUM({y} - ({_fixed_part(fit, plan)})) AS r "
            f"FROM {src.src} WHERE {plan.where()} GROUP BY {', '.join(keys)}"
        )
        on = " AND ".join(f"g.{d.ident(c)} = p.hlm_pk{i}" for i, c in enumerate(parent.columns))
        label = "concat_ws(':', " + ", ".join(f"CAST(g.{k} AS VARCHAR)" for k in keys) + ")"
        S = f"(1.0 + {t!r} * g.n)"
        parts.append(
            f'SELECT {d.string(fac.name)} AS "group", {label} AS level, {d.string(factor_columns(fit, f)[0])} AS term, '
            f"{t!r} * (g.r - g.n * p.hlm_c) / {S} AS estimate, "
            f"{float(fit.sigma)!r} * sqrt({t!r} * (1.0 + {t!r} * g.n * g.n * p.hlm_v / {S}) / {S}) AS std_error "
            f"FROM ({groups}) g JOIN hlm_ranef_parent p ON {on}"
        )
    return _copy_to_file(src, " UNION ALL ".join(parts), out_path, overwrite)
