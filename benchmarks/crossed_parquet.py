"""Crossed factors at scale through DuckDB: ``y ~ 1 + (1|u) + (1|i)`` from a Parquet file.

    python benchmarks/crossed_parquet.py [--rows N] [--users U] [--items I]

Writes ``--rows`` simulated ratings (default 10,000,000; users uniform, items Zipf-popular as
ratings are; U x I defaults to 60,000 x 20,000 at 10,000,000 rows and scales with the rows
below that, keeping the rows per user and per item) to Parquet in chunks of 1,000,000 rows,
then fits the model from the file in a fresh Python process (DuckDB computes the per-factor
and the (u, i) pair blocks; only those reach Python) and reports that process's wall time
and its own peak resident memory (``VmHWM``, :mod:`memory`).  :func:`crossed_parquet_row` is what
``bench_general.py`` calls; run alone, this prints the same numbers as one Markdown line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from memory import peak_rss_mb

FULL_ROWS, FULL_USERS, FULL_ITEMS = 10_000_000, 60_000, 20_000
CHUNK = 1_000_000
MODEL = "y ~ 1 + (1|u) + (1|i)"


def write_crossed(path: Path, n: int, n_u: int, n_i: int, seed: int = 5) -> None:
    """``n`` rows of y = 3 + b_u + b_i + e (SDs 0.5, 0.4, 1) written in chunks (bounded memory)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    b_u, b_i = rng.normal(0, 0.5, n_u), rng.normal(0, 0.4, n_i)
    with pq.ParquetWriter(path, pa.schema([("y", pa.float64()), ("u", pa.int64()), ("i", pa.int64())])) as out:
        for start in range(0, n, CHUNK):
            m = min(CHUNK, n - start)
            u = rng.integers(0, n_u, m)
            i = np.minimum(rng.zipf(1.3, m) - 1, n_i - 1)
            y = 3 + b_u[u] + b_i[i] + rng.normal(0, 1, m)
            out.write_table(pa.table({"y": y, "u": u, "i": i}))


def _fit(path: str) -> None:
    """In the child process: fit from the file, print seconds, criterion, convergence."""
    import warnings

    import hlm

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hlm.fit(MODEL, path)
    secs = time.perf_counter() - t0
    out = {"seconds": secs, "criterion": fit.reml_criterion, "converged": fit.converged or fit.singular}
    print(json.dumps({**out, "peak_mb": peak_rss_mb()}))


def crossed_parquet_row(n: int, n_u: int | None = None, n_i: int | None = None) -> dict[str, float | int | bool]:
    """Time and peak memory of the fit from Parquet at ``n`` rows (see the module docstring)."""
    n_u = n_u or max(1, round(FULL_USERS * n / FULL_ROWS))
    n_i = n_i or max(1, round(FULL_ITEMS * n / FULL_ROWS))
    with tempfile.TemporaryDirectory(prefix="hlm_crossed_") as tmp:
        path = Path(tmp) / "ratings.parquet"
        write_crossed(path, n, n_u, n_i)
        done = subprocess.run(
            [sys.executable, __file__, "--fit", str(path)], capture_output=True, text=True, check=True
        )
    res = json.loads(done.stdout.strip().splitlines()[-1])
    return {"rows": n, "users": n_u, "items": n_i, **res}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=FULL_ROWS)
    parser.add_argument("--users", type=int)
    parser.add_argument("--items", type=int)
    parser.add_argument("--fit", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fit:
        _fit(args.fit)
        return
    r = crossed_parquet_row(args.rows, args.users, args.items)
    print(
        f"| {MODEL} from Parquet via DuckDB, {r['users']:,} x {r['items']:,} | {r['rows']:,} | "
        f"{r['seconds']:.3g} s | peak RSS {r['peak_mb']:,.0f} MB | REML criterion {r['criterion']:.4f} | "
        f"converged {'yes' if r['converged'] else 'no'} |"
    )


if __name__ == "__main__":
    main()
