"""Data sources: pandas / polars DataFrames, pyarrow Tables, or paths to CSV, Parquet, .dta.

Everything in memory becomes a pandas DataFrame holding only the columns a model uses;
files are read column-selectively.  (Out-of-core fitting of files goes through the DuckDB
aggregation backend instead, which never loads rows.)

A categorical column keeps the level order its source declares, whatever the path: a
pandas categorical's categories, a polars Enum's categories, an Arrow dictionary (and a
Parquet file written from one), a Stata value label (levels in value order, so the base is
the lowest value, as Stata's).  What declares no order -- CSV, strings, polars
Categorical (which polars itself sorts lexically) -- has its levels sorted, as R does.
"""

from __future__ import annotations

import difflib
import glob
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from hlm.errors import ColumnError, DataError, FileError, HLMWarning, OptionError

READERS = {".csv": "csv", ".txt": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet", ".dta": "dta"}


def file_kind(path: str | os.PathLike) -> str:
    """The reader for a path by its extension, or a FileError naming the supported ones."""
    suffix = Path(str(path)).suffix.lower()
    if suffix not in READERS:
        raise FileError(
            f"cannot read '{path}': unsupported file type '{suffix or '(none)'}'; use .csv, .parquet or .dta"
        )
    return READERS[suffix]


def check_file(path: str | os.PathLike) -> None:
    """Cheap checks of a data file before any reader sees it (a few bytes are read): it
    exists, is not empty and its content fits its extension -- Parquet files begin and end
    with ``PAR1``; CSV files are text (no NUL bytes, valid UTF-8 or Latin-1 at the start).
    Globs and folders (of Parquet files) are left to the reader."""
    text = str(path)
    if any(ch in text for ch in "*?["):
        return
    kind = file_kind(path)
    p = Path(text)
    if not p.exists():
        raise FileError(f"data file '{path}' does not exist; check the path")
    if p.is_dir():
        return
    size = p.stat().st_size
    if size == 0:
        raise FileError(f"data file '{path}' is empty (0 bytes)")
    try:
        with open(p, "rb") as fh:
            head = fh.read(65536)
            if kind == "parquet":
                fh.seek(max(size - 4, 0))
                tail = fh.read(4)
    except OSError as exc:
        raise FileError(f"cannot read '{path}': {exc.strerror or exc}") from None
    if kind == "parquet" and (size < 12 or head[:4] != b"PAR1" or tail != b"PAR1"):
        raise FileError(
            f"'{path}' is not a Parquet file (it lacks Parquet's PAR1 markers); check the file, or name a CSV file .csv"
        )
    if kind in ("csv", "tsv") and b"\x00" in head:
        raise FileError(f"'{path}' is not a text (CSV) file: it holds binary data; check the file or its extension")
    if kind in ("csv", "tsv") and size <= len(head) and sum(1 for line in head.splitlines() if line.strip()) <= 1:
        raise DataError(f"the data has no rows: '{path}' holds at most a header line")


def read_file(
    path: str | os.PathLike, columns: Iterable[str] | None = None, *, value_labels: bool = True
) -> pd.DataFrame:
    """Read a CSV, Parquet or Stata file, only ``columns`` when given.

    ``value_labels``: a Stata variable whose every value is labelled becomes a categorical
    named by its labels (see :func:`stata_categoricals`); else its values are kept."""
    kind = file_kind(path)
    check_file(path)
    cols = None if columns is None else list(dict.fromkeys(columns))
    try:
        if kind in ("csv", "tsv"):
            if cols is not None:
                header = pd.read_csv(path, nrows=0, sep="\t" if kind == "tsv" else ",").columns
                check_columns(cols, header)
            return pd.read_csv(path, usecols=cols, sep="\t" if kind == "tsv" else ",")
        if kind == "parquet":
            import pyarrow.parquet as pq

            if cols is not None:
                check_columns(cols, pq.read_schema(path).names)
            return arrow_to_pandas(pq.read_table(path, columns=cols))
        frame = pd.read_stata(path, convert_categoricals=False)
        if cols is not None:
            check_columns(cols, frame.columns)
            frame = frame[cols]
        if value_labels:
            frame = stata_categoricals(frame, pd.read_stata(path, columns=cols))
        return frame
    except (ColumnError, FileError):
        raise
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FileError(f"cannot read '{path}' as {kind}: {first}") from None
    except Exception as exc:  # pyarrow raises its own error types for corrupt files
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FileError(f"cannot read '{path}' as {kind}: {first}") from None


def check_columns(needed: Iterable[str], available: Iterable[Any]) -> None:
    """Raise ColumnError for the first needed column not available, suggesting close names."""
    have = [str(c) for c in available]
    for col in needed:
        if col not in have:
            close = difflib.get_close_matches(col, have, n=3, cutoff=0.6)
            hint = (
                f"; did you mean {', '.join(repr(c) for c in close)}?"
                if close
                else (f"; the data has {', '.join(have[:8])}{' ...' if len(have) > 8 else ''}")
            )
            raise ColumnError(f"column '{col}' is not in the data{hint}")


def to_pandas(data: Any, columns: Iterable[str] | None = None, *, value_labels: bool = True) -> pd.DataFrame:
    """Any supported source as a pandas DataFrame restricted to ``columns`` (if given);
    ``value_labels`` as :func:`read_file`.  A polars LazyFrame is collected (its model
    columns only); a model column that appears more than once is a :class:`DataError`."""
    cols = None if columns is None else list(dict.fromkeys(columns))
    if isinstance(data, (str, os.PathLike)):
        return text_as_object(read_file(data, cols, value_labels=value_labels))
    if isinstance(data, pd.DataFrame):
        frame = data
    elif type(data).__module__.startswith("polars"):
        if hasattr(data, "collect"):  # a LazyFrame: run its query, for the model's columns only
            names = data.collect_schema().names()
            data = (data.select(cols) if cols is not None and _has(names, cols) else data).collect()
        picked = data.select(cols) if cols is not None and _has(data.columns, cols) else data
        frame = arrow_to_pandas(picked.to_arrow())
    elif type(data).__module__.startswith("pyarrow"):
        frame = arrow_to_pandas(data.select(cols) if cols is not None and _has(data.column_names, cols) else data)
    elif isinstance(data, dict):
        frame = pd.DataFrame(data)
    else:
        raise DataError(
            f"cannot use data of type {type(data).__name__}; pass a pandas or polars DataFrame, "
            "a pyarrow Table or a path to a .csv, .parquet or .dta file"
        )
    if cols is not None:
        check_columns(cols, frame.columns)
        twice = [c for c in cols if int((frame.columns == c).sum()) > 1]
        if twice:
            raise DataError(f"the data has more than one column named '{twice[0]}'; rename or drop the duplicates")
        frame = frame[cols]
    return text_as_object(frame)


def text_as_object(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns of a dtype other than ``object`` and pandas' default ``str`` (pandas'
    ``"string"`` with ``pd.NA``, on Python or Arrow storage, and Arrow's ``string`` and
    ``large_string``) as ``object``: a text column is a factor, as in R's model frame, and
    formulaic reads only those two dtypes as text (any other it would cast to numbers)."""
    text = {
        col: object
        for col, dtype in frame.dtypes.items()
        if pd.api.types.is_string_dtype(dtype) and not (dtype == "object" or dtype == "str")
    }
    return frame.astype(text) if text else frame


def _has(available: Iterable[str], cols: list[str]) -> bool:
    have = set(available)
    return all(c in have for c in cols)


def _lexical(field: Any) -> bool:
    """Whether an Arrow dictionary field is a polars Categorical, whose order is lexical (a
    polars Enum, like any other dictionary, declares its order)."""
    meta = field.metadata or {}
    return any(key.startswith(b"_PL_CATEGORICAL") for key in meta)


def arrow_to_pandas(table: Any) -> pd.DataFrame:
    """An Arrow table as pandas: dictionary columns become categoricals in dictionary order
    (pyarrow unifies the chunks' dictionaries), polars Categoricals with sorted levels."""
    frame = table.to_pandas()
    for field in table.schema:
        if _lexical(field) and isinstance(frame[field.name].dtype, pd.CategoricalDtype):
            frame[field.name] = frame[field.name].cat.reorder_categories(sorted(frame[field.name].cat.categories))
    return frame


def parquet_levels(path: str | os.PathLike, columns: Iterable[str] | None = None) -> dict[str, list]:
    """The level order a Parquet source declares for its dictionary columns among ``columns``
    (written from a pandas categorical or an Arrow dictionary): the stored Arrow dictionary
    of the first row group of the first file (a path, glob or folder); pandas writes every
    category, used or not, to every row group.  Columns declaring no order are absent; see
    :func:`warn_lost_categories` for the others."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = str(path)
    if Path(text).is_dir():
        files = sorted(glob.glob(os.path.join(text, "**", "*.parquet"), recursive=True))
    elif any(ch in text for ch in "*?["):
        files = sorted(glob.glob(text, recursive=True))
    else:
        files = [text]
    if not files:
        return {}
    wanted = None if columns is None else set(columns)
    try:
        pf = pq.ParquetFile(files[0])
        warn_lost_categories(pf.schema_arrow, list(wanted) if wanted is not None else pf.schema_arrow.names, path)
        names = [
            f.name
            for f in pf.schema_arrow
            if pa.types.is_dictionary(f.type) and not _lexical(f) and (wanted is None or f.name in wanted)
        ]
        if not names or pf.num_row_groups == 0:
            return {}
        table = pf.read_row_group(0, columns=names).unify_dictionaries()
    except Exception as exc:  # pyarrow raises its own error types for corrupt files
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FileError(f"cannot read '{files[0]}' as parquet: {first}") from None
    out = {}
    for name in names:
        col = table.column(name)
        if col.num_chunks:
            out[name] = col.chunk(0).dictionary.to_pylist()
    return out


def warn_lost_categories(schema: Any, columns: Iterable[str], path: Any) -> None:
    """Warn (:class:`~hlm.errors.HLMWarning`) about ``columns`` (predictors) that the Parquet
    file's pandas metadata says were categoricals but that are stored as plain values
    (pyarrow keeps only categoricals of strings as dictionaries): they are read as what
    they hold, numbers, as pandas reads them, where the frame written had a factor."""
    meta = (schema.pandas_metadata or {}) if schema.metadata and b"pandas" in schema.metadata else {}
    wanted = set(columns)
    for entry in meta.get("columns", []):
        name = entry.get("field_name")
        if entry.get("pandas_type") != "categorical" or name not in wanted or schema.get_field_index(name) < 0:
            continue
        if not str(schema.field(name).type).startswith("dictionary"):
            warnings.warn(
                f"column '{name}' of '{path}' was written from a pandas categorical of numbers, whose "
                f"categories Parquet does not keep: it is read as numbers; write C({name}) for a factor "
                "(levels in sorted order)",
                HLMWarning,
                stacklevel=4,
            )


def stata_categoricals(values: pd.DataFrame, labelled: pd.DataFrame) -> pd.DataFrame:
    """``values`` (a .dta file's raw values) with each variable whose every value carries a
    value label (``labelled``: the same rows with labels) as a categorical: levels in order of
    value, so the first (the reference) is the lowest value, Stata's base level, and named by
    the labels (a label shared by several values gets the value in brackets).  A partly
    labelled variable keeps its values."""
    out = values.copy()
    for col in labelled.columns:
        lab = labelled[col]
        if not isinstance(lab.dtype, pd.CategoricalDtype) or not all(isinstance(c, str) for c in lab.cat.categories):
            continue
        raw = values[col].to_numpy()
        present = lab.notna().to_numpy()
        levels, first = np.unique(raw[present], return_index=True)
        names = lab.to_numpy()[present][first].tolist()
        shared = {n for n in names if names.count(n) > 1}
        names = [f"{n} ({v:g})" if n in shared else n for n, v in zip(names, levels)]
        codes = np.full(len(raw), -1, dtype=np.int64)
        codes[present] = np.searchsorted(levels, raw[present])
        out[col] = pd.Categorical.from_codes(codes, categories=pd.Index(names))
    return out


def categories_as_text(frame: pd.DataFrame, skip: Iterable[str] = ()) -> pd.DataFrame:
    """``frame`` with its categoricals of numbers (except ``skip``) as categoricals of their
    text, in the same order: DuckDB keeps a categorical only as an ENUM, of strings (one of
    numbers becomes a plain number column), and the level names read the same either way."""
    out = frame
    for col in frame.columns:
        values = frame[col]
        if (
            col not in set(skip)
            and isinstance(values.dtype, pd.CategoricalDtype)
            and not all(isinstance(c, str) for c in values.cat.categories)
        ):
            out = out.copy() if out is frame else out
            out[col] = values.cat.rename_categories([str(c) for c in values.cat.categories])
    return out


Backend = Literal["auto", "memory", "duckdb", "spark"]
_ENGINE_SUFFIXES = (".parquet", ".pq", ".csv", ".txt", ".tsv")


def is_relation(obj: Any) -> bool:
    """Whether ``obj`` is a DuckDB relation."""
    mod = type(obj).__module__ or ""
    return mod.startswith("duckdb") and hasattr(obj, "sql_query") and hasattr(obj, "columns")


def _is_spark(data: Any) -> bool:
    return (type(data).__module__ or "").startswith("pyspark.sql") and hasattr(data, "createOrReplaceTempView")


def choose_backend(data: Any, backend: Backend = "auto", *, sql: str | None = None) -> str:
    """The backend ``backend="auto"`` means for ``data``.

    SQL text or a duckdb relation -> duckdb; a path or glob of Parquet/CSV files -> duckdb
    (the embedded default for files); a Spark DataFrame -> spark; anything else -> memory.
    """
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
