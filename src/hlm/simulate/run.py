"""Simulate a design into a DataFrame, a file, or a directory of Parquet chunks.

Seeding: block ``k`` of a simulation draws from ``PCG64(SeedSequence(seed, spawn_key=(k,)))``.
:func:`simulate` is block 0 holding every outermost unit; :func:`simulate_to_parquet`
splits the outermost units into consecutive blocks of about ``chunk_rows`` rows, block
``k`` going to ``part-{k:05d}.parquet`` with global ids continuing from the blocks before.
Both are reproducible bit for bit for the same seed (and, for chunks, the same
``chunk_rows``); a one-chunk directory holds exactly :func:`simulate`'s data.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hlm.errors import FileError, OptionError
from hlm.outputs import output_file, output_folder
from hlm.simulate.design import Design
from hlm.simulate.draw import Block, IdForm, draw_block
from hlm.simulate.sampling import draw_sample

WRITERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".dta": "dta"}
DTA_TIMESTAMP = _dt.datetime(2000, 1, 1)  # fixed, so .dta files are reproducible
DEFAULT_CHUNK_ROWS = 5_000_000


def rng_for(seed: int, block: int = 0) -> np.random.Generator:
    """The generator of block ``block`` of a simulation with ``seed``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(block,))))


def _check(design: Any, seed: Any, ids: Any) -> Design:
    if isinstance(design, (str, os.PathLike)):
        design = Design.from_toml(design)
    if not isinstance(design, Design):
        raise OptionError(f"design must be an hlm.Design or a path to a design file, not {type(design).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise OptionError(f"seed must be a whole number >= 0, got {seed!r}")
    if ids not in ("global", "within", "both"):
        raise OptionError(f"ids must be 'global', 'within' or 'both', got {ids!r}")
    return design


def _frame(block: Block) -> pd.DataFrame:
    return pd.DataFrame(block.columns, copy=False)


def simulate(
    design: Design | str | os.PathLike,
    *,
    seed: int,
    ids: IdForm = "global",
    effects: bool = False,
) -> pd.DataFrame:
    """Simulate one data set from ``design`` (a Design or a design file).

    Columns, in order: the level ids outermost first (``ids="global"``: 1..N over the
    data set; ``"within"``: 1..n inside each parent, Stata's form; ``"both"``: global ids
    plus ``<id>_within`` columns), the occasion column (if the design names one), the
    covariates, the response; with ``effects=True`` also the true effects ``u_<level>``,
    ``u_<level>_<covariate>`` and ``residual``.  Rows are sorted by the ids.  A design with
    ``sampling`` gives its two-stage sample with the weight columns (:mod:`hlm.simulate.sampling`).
    """
    d = _check(design, seed, ids)
    sampled = d.sampling is not None
    block = draw_block(d, rng_for(int(seed)), top_units=int(d.levels[0].n), ids=ids, effects=effects or sampled)  # type: ignore[arg-type]
    if d.sampling is None:
        return _frame(block)
    top = d.levels[0]
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=(0, 1))))
    frame = draw_sample(_frame(block), d.sampling, top.id_column, f"u_{top.name}", top.sd, d.residual_sd, rng)
    drawn = [c for c in frame.columns if c == "residual" or c.startswith(f"u_{top.name}")]
    return frame if effects else frame.drop(columns=drawn)


def write_frame(frame: pd.DataFrame, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a frame as CSV, Parquet or Stata .dta by the extension; an existing ``path`` is
    replaced whole only with ``overwrite=True`` (see :mod:`hlm.outputs`).

    The file appears only when writing succeeded (written to a temporary name first).
    """
    target, kind = output_file(path, WRITERS, overwrite=overwrite)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        if kind == "parquet":
            _write_parquet(frame, tmp)
        elif kind == "csv":
            import pyarrow as pa
            import pyarrow.csv as pcsv

            table = pa.Table.from_pandas(frame, preserve_index=False)
            with open(tmp, "wb") as fh:  # a plain header line (column names are identifiers)
                fh.write((",".join(map(str, frame.columns)) + "\n").encode())
                pcsv.write_csv(table, fh, pcsv.WriteOptions(include_header=False))
        else:
            frame.to_stata(tmp, write_index=False, time_stamp=DTA_TIMESTAMP, version=118)
        os.replace(tmp, target)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, FileError):
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FileError(f"cannot write '{path}' as {kind}: {first}") from None
    return target


def _write_parquet(frame_or_columns: pd.DataFrame | dict[str, np.ndarray], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(frame_or_columns, pd.DataFrame):
        table = pa.Table.from_pandas(frame_or_columns, preserve_index=False)
    else:
        table = pa.table(frame_or_columns)
    pq.write_table(table, path)


def simulate_to_parquet(
    design: Design | str | os.PathLike,
    path: str | os.PathLike,
    *,
    seed: int,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ids: IdForm = "global",
    effects: bool = False,
    overwrite: bool = False,
) -> list[Path]:
    """Simulate ``design`` into a new directory of Parquet files, one block at a time.

    Each file holds whole outermost units, about ``chunk_rows`` rows (at least one
    outermost unit), so memory stays bounded by one block whatever the total size.  The
    directory must not exist or be empty (``overwrite=True``: or hold only Parquet files,
    which are replaced); it is filled under a temporary name and renamed when every file
    is written.  Returns the files in order.
    """
    d = _check(design, seed, ids)
    if d.sampling is not None:
        raise OptionError("a design with sampling is drawn whole (PPS over the population): use simulate()")
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
        raise OptionError(f"chunk_rows must be a whole number >= 1, got {chunk_rows!r}")
    target = output_folder(path, overwrite=overwrite)
    rows_per_top = d.expected_rows() / d.levels[0].n  # type: ignore[operator]
    per_block = max(1, int(chunk_rows // max(rows_per_top, 1.0)))
    total = int(d.levels[0].n)  # type: ignore[arg-type]
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    names: list[str] = []
    try:
        offsets = (0,) * len(d.levels)
        for k in range(math.ceil(total / per_block)):
            top = min(per_block, total - k * per_block)
            block = draw_block(d, rng_for(int(seed), k), top_units=top, offsets=offsets, ids=ids, effects=effects)
            name = f"part-{k:05d}.parquet"
            _write_parquet(block.columns, tmp / name)
            names.append(name)
            offsets = tuple(o + u for o, u in zip(offsets, block.units))
            del block
        if target.exists():
            shutil.rmtree(target)  # empty, or only Parquet files (output_folder)
        os.replace(tmp, target)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, FileError):
            raise FileError(f"cannot write '{path}': {exc.strerror or exc}") from None
        raise
    return [target / n for n in names]
