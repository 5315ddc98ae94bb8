"""Benchmark hlm.simulate on the seed's design scaled up, against numpy's own floor.

    .venv/bin/python benchmarks/bench_simulate.py [--districts 5000] [--repeats 5]
                                                  [--parquet-districts 62500]

Prints rows per second of

* the floor: ``rng.standard_normal(n)`` (one draw per row, nothing else) -- no simulator
  that draws a residual per row can beat it;
* ``simulate(design, seed=...)`` of the seed's design (examples/seed.toml; 1,600 rows per
  district: 5 schools x 8 teachers x 20 students x 2 semesters) with ``--districts``
  districts, the first call of the process (cold memory) and the best and median of the
  repeats;
* optionally ``simulate_to_parquet`` of ``--parquet-districts`` districts (62,500 are
  100,000,000 rows) into a temporary folder, in blocks of ``--chunk-rows`` rows.

Exit status 1 when the best in-memory rate is below ``--floor-rate`` (10 million rows/s).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hlm.simulate import Design, simulate, simulate_to_parquet

SEED_TOML = Path(__file__).resolve().parents[1] / "examples" / "seed.toml"


def timed(fn) -> float:
    start = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - start
    del result
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--districts", type=int, default=5_000, help="districts in memory (1,600 rows each)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--parquet-districts", type=int, default=0, help="also write this many districts to Parquet")
    parser.add_argument("--chunk-rows", type=int, default=5_000_000)
    parser.add_argument("--floor-rate", type=float, default=10e6, help="required rows/s (best of the repeats)")
    args = parser.parse_args(argv)

    design = Design.from_toml(SEED_TOML).set("levels.district.n", args.districts)
    n = int(design.expected_rows())
    print(
        f"seed design, {args.districts:,} districts: {n:,} rows; numpy {np.__version__}; best/median of {args.repeats}"
    )

    cold = timed(lambda: simulate(design, seed=0))
    warm = [timed(lambda i=i: simulate(design, seed=i + 1)) for i in range(args.repeats)]
    floor = [timed(lambda i=i: np.random.default_rng(i).standard_normal(n)) for i in range(args.repeats)]

    def line(label: str, secs: list[float]) -> None:
        best, med = min(secs), statistics.median(secs)
        print(
            f"  {label:34s} best {best:6.3f} s  {n / best / 1e6:6.1f} M rows/s   "
            f"median {med:6.3f} s  {n / med / 1e6:6.1f} M rows/s"
        )

    line("floor: rng.standard_normal(n)", floor)
    line("simulate (warm)", warm)
    print(f"  {'simulate (first call, cold)':34s}      {cold:6.3f} s  {n / cold / 1e6:6.1f} M rows/s")
    print(f"  simulate / floor (best): {min(warm) / min(floor):.2f}x the time of one normal draw per row")

    if args.parquet_districts:
        big = design.set("levels.district.n", args.parquet_districts)
        rows = int(big.expected_rows())
        with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
            start = time.perf_counter()
            files = simulate_to_parquet(big, Path(tmp) / "data", seed=0, chunk_rows=args.chunk_rows)
            secs = time.perf_counter() - start
            size = sum(p.stat().st_size for p in files)
        print(
            f"  simulate_to_parquet: {rows:,} rows in {len(files)} files ({size / 2**30:.2f} GiB) "
            f"in {secs:.1f} s, {rows / secs / 1e6:.1f} M rows/s"
        )

    rate = n / min(warm)
    ok = rate >= args.floor_rate
    print(
        f"{'PASS' if ok else 'FAIL'}: {rate / 1e6:.1f} M rows/s "
        f"{'>=' if ok else '<'} {args.floor_rate / 1e6:.0f} M rows/s"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
