"""Data sources: pandas / polars DataFrames, pyarrow Tables, or paths to CSV, Parquet, .dta.

Everything in memory becomes a pandas DataFrame holding only the columns a model uses;
files are read column-selectively.  (Out-of-core fitting of files goes through the DuckDB
aggregation backend instead, which never loads rows.)
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from hlm.errors import ColumnError, DataError, FileError

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
        raise FileError(f"'{path}' is not a Parquet file (it lacks Parquet's PAR1 markers); "
                        "check the file, or name a CSV file .csv")
    if kind in ("csv", "tsv") and b"\x00" in head:
        raise FileError(f"'{path}' is not a text (CSV) file: it holds binary data; check the file or its extension")
    if kind in ("csv", "tsv") and size <= len(head) and sum(1 for line in head.splitlines() if line.strip()) <= 1:
        raise DataError(f"the data has no rows: '{path}' holds at most a header line")


def read_file(path: str | os.PathLike, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """Read a CSV, Parquet or Stata file, only ``columns`` when given."""
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
            return pq.read_table(path, columns=cols).to_pandas()
        frame = pd.read_stata(path, convert_categoricals=False)
        if cols is not None:
            check_columns(cols, frame.columns)
            frame = frame[cols]
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
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else (
                f"; the data has {', '.join(have[:8])}{' ...' if len(have) > 8 else ''}"
            )
            raise ColumnError(f"column '{col}' is not in the data{hint}")


def to_pandas(data: Any, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """Any supported source as a pandas DataFrame restricted to ``columns`` (if given); a
    polars LazyFrame is collected (its model columns only).  A model column that appears
    more than once is a :class:`DataError`."""
    cols = None if columns is None else list(dict.fromkeys(columns))
    if isinstance(data, (str, os.PathLike)):
        return read_file(data, cols)
    if isinstance(data, pd.DataFrame):
        frame = data
    elif type(data).__module__.startswith("polars"):
        if hasattr(data, "collect"):  # a LazyFrame: run its query, for the model's columns only
            names = data.collect_schema().names()
            data = (data.select(cols) if cols is not None and _has(names, cols) else data).collect()
        frame = data.select(cols).to_pandas() if cols is not None and _has(data.columns, cols) else data.to_pandas()
    elif type(data).__module__.startswith("pyarrow"):
        frame = data.select(cols).to_pandas() if cols is not None and _has(data.column_names, cols) else data.to_pandas()
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
    return frame


def _has(available: Iterable[str], cols: list[str]) -> bool:
    have = set(available)
    return all(c in have for c in cols)
