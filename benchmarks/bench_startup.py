"""Benchmark: start-up time of ``import hlm`` and ``hlm --help`` in fresh processes.

    python benchmarks/bench_startup.py [--runs 10] [--src PATH]

Each command runs ``--runs`` times in a new interpreter (this one, with ``PYTHONPATH`` set to
the checkout's ``src``, or ``--src`` to time another checkout); the median wall time is
reported, next to a bare ``python -c pass`` for the interpreter's own start.  ``hlm --help``
is run as the console script runs it (``from hlm.cli import main; main()``).  Also lists the
heavy libraries that ``import hlm`` loads (none is the aim).  Prints a Markdown section.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("numpy", "pandas", "scipy", "numba", "duckdb", "pyspark", "matplotlib", "formulaic", "pyarrow", "polars")
COMMANDS = {
    "python -c pass (interpreter only)": ["-c", "pass"],
    "import hlm": ["-c", "import hlm"],
    "hlm --help": ["-c", "import sys; from hlm.cli import main; sys.argv[0] = 'hlm'; main()", "--help"],
}


def median_seconds(args: list[str], env: dict[str, str], runs: int) -> float:
    """Median wall time of ``runs`` fresh ``python *args`` processes (output discarded)."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, *args], env=env, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def heavy_loaded(env: dict[str, str]) -> list[str]:
    """The libraries of HEAVY in sys.modules after ``import hlm``."""
    code = f"import sys, hlm; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return out.stdout.split()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(args.src.resolve())}
    median_seconds(COMMANDS["import hlm"], env, 1)  # warm the file cache and the bytecode
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = [(name, median_seconds(cmd, env, args.runs)) for name, cmd in COMMANDS.items()]
    heavy = heavy_loaded(env)
    print(f"## Start-up time (`benchmarks/bench_startup.py`, median of {args.runs} fresh processes)\n")
    print(f"Source: `{args.src}`; load average {load:.1f} at the start.\n")
    print("| command | median wall time |")
    print("| --- | ---: |")
    for name, seconds in rows:
        print(f"| `{name}` | {seconds:.3f} s |")
    print(f"\nHeavy libraries loaded by `import hlm`: {', '.join(heavy) if heavy else 'none'}.")


if __name__ == "__main__":
    main()
