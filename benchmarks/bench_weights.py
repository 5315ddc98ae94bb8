"""Sampling-weight benchmark (issue 16): a 3-level weighted design, hlm vs WeMix in the same run,
and the same model from Parquet through DuckDB at scale.

    python benchmarks/bench_weights.py [--quick] [--students 500_000] [--rows 50_000_000]
                                       [--no-wemix] [--wemix-timeout 3600] [--dir /tmp/hlm_wbench]

Data (numpy, seed 1): schools of 4 classes of 25 students; y = 500 + 20 x + u_school (SD 30)
+ u_class (SD 15) + e (SD 60); conditional weights: school 1/pi with pi PPS-like (lognormal
sizes, informative on u_school), class U(1, 3), student U(1, 2); the columns are WeMix's
unconditional ones w1 = student x class x school, w2 = class x school, w3 = school.

* ``hlm.fit("y ~ x + (1 | school/class)", frame, pweights=["w1", "w2", "w3"])`` in memory, and
  WeMix 4's ``mix(y ~ x + (1|school) + (1|class), weights = c("w1","w2","w3"))`` on the same
  CSV in an Rscript subprocess (only ``mix()`` timed; skipped when R or WeMix is missing);
* the same model from a directory of Parquet files of ``--rows`` rows through DuckDB, in a fresh
  subprocess whose peak RSS is its own.

``--quick``: at most 20,000 students and 200,000 Parquet rows.  Prints a Markdown section.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from memory import peak_rss_mb

BENCH_TIMEOUT_S = 7200
MODEL = "y ~ x + (1 | school/class)"
WEIGHTS = ["w1", "w2", "w3"]
PER_SCHOOL = 100  # 4 classes x 25 students
R_SCRIPT = r"""
args <- commandArgs(TRUE)
suppressMessages(library(WeMix))
d <- read.csv(args[1])
d$school <- factor(d$school); d$class <- factor(d$class)
t <- system.time(m <- mix(y ~ x + (1|school) + (1|class), data = d, weights = c("w1", "w2", "w3")))
out <- list(seconds = unname(t["elapsed"]), lnl = m$lnl, coef = unname(m$coef))
cat(jsonlite::toJSON(out, digits = NA, auto_unbox = TRUE))
"""


def design(schools: int, first_school: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``schools`` schools of the design in the module docstring (ids from ``first_school``)."""
    u3 = rng.normal(0, 30, schools)
    size = np.exp(rng.normal(0, 0.5, schools) + 0.5 * u3 / 30)
    w3 = np.maximum(1.0, 50.0 / size)
    classes = schools * 4
    u2 = rng.normal(0, 15, classes)
    w2c = rng.uniform(1, 3, classes)
    n = schools * PER_SCHOOL
    school = np.repeat(np.arange(schools), PER_SCHOOL)
    cls = np.repeat(np.arange(classes), 25)
    x = rng.normal(size=n)
    y = 500 + 20 * x + u3[school] + u2[cls] + rng.normal(0, 60, n)
    w1c = rng.uniform(1, 2, n)
    return {
        "school": school + first_school,
        "class": cls + 4 * first_school,
        "x": x,
        "y": y,
        "w1": w1c * w2c[cls] * w3[school],
        "w2": (w2c * np.repeat(w3, 4))[cls],
        "w3": w3[school],
    }


def write_parquet(rows: int, folder: Path, chunk_schools: int = 20_000) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    schools = max(2, rows // PER_SCHOOL)
    for k, start in enumerate(range(0, schools, chunk_schools)):
        part = design(min(chunk_schools, schools - start), start, rng)
        pq.write_table(pa.table(part), folder / f"part-{k:05d}.parquet")


def child_fit(source: str) -> None:
    """In a subprocess: fit from ``source`` through DuckDB, print timing and peak RSS as JSON."""
    import hlm

    t0 = time.perf_counter()
    fit = hlm.fit(MODEL, source, pweights=WEIGHTS)
    out = {"seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb(), "nobs": fit.nobs, "lnl": fit.loglik}
    print(json.dumps(out))


def wemix_available() -> str | None:
    """None when Rscript with WeMix and jsonlite runs, else why not."""
    if shutil.which("Rscript") is None:
        return "Rscript not installed"
    check = "cat(all(sapply(c('WeMix','jsonlite'), requireNamespace, quietly=TRUE)))"
    res = subprocess.run(["Rscript", "-e", check], capture_output=True, text=True, timeout=120)
    return None if res.stdout.strip() == "TRUE" else "R package WeMix not installed"


def run_wemix(csv: Path, timeout: float) -> dict | str:
    script = csv.with_suffix(".R")
    script.write_text(R_SCRIPT)
    try:
        res = subprocess.run(["Rscript", str(script), str(csv)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"did not finish in {timeout:.0f} s"
    if res.returncode < 0:  # a signal: on Linux SIGKILL is usually the kernel's out-of-memory killer
        return f"killed by signal {-res.returncode} (SIGKILL: out of memory)" if res.returncode == -9 else "killed"
    if res.returncode != 0:
        return "failed: " + (res.stderr.strip().splitlines() or ["?"])[-1]
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="20,000 students, 200,000 Parquet rows")
    ap.add_argument("--students", type=int, default=500_000)
    ap.add_argument("--rows", type=int, default=50_000_000)
    ap.add_argument("--no-wemix", action="store_true")
    ap.add_argument("--wemix-timeout", type=float, default=3600.0)
    ap.add_argument("--dir", default=None, help="where the CSV and Parquet files go (default: a temporary folder)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child_fit(args.child)
    students, rows = (min(args.students, 20_000), 200_000) if args.quick else (args.students, args.rows)
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="hlm_wbench_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        report(students, rows, work, args)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


def report(students: int, rows: int, work: Path, args: argparse.Namespace) -> None:
    import pandas as pd

    import hlm

    frame = pd.DataFrame(design(students // PER_SCHOOL, 0, np.random.default_rng(1)))
    print(f"[weights] {len(frame):,} students: hlm in memory", file=sys.stderr, flush=True)
    hlm.fit(MODEL, frame.iloc[: max(len(frame) // 20, 1000)], pweights=WEIGHTS)  # imports and compiled kernels
    t0 = time.perf_counter()
    fit = hlm.fit(MODEL, frame, pweights=WEIGHTS)
    hlm_s = time.perf_counter() - t0
    lines = [
        "## Issue 16 — sampling weights: 3-level weighted design (`benchmarks/bench_weights.py`)",
        "",
        f"`{MODEL}` with pweights w1, w2, w3 (unconditional), pseudo-ML, robust SEs.",
        "",
        "| what | rows | seconds | peak RSS (MiB) | log pseudolikelihood |",
        "|---|---:|---:|---:|---:|",
        f"| hlm, in memory | {len(frame):,} | {hlm_s:.2f} | {peak_rss_mb():.0f} | {fit.loglik:.4f} |",
    ]
    why = "--no-wemix" if args.no_wemix else wemix_available()
    if why is None:
        csv = work / "weights.csv"
        frame.to_csv(csv, index=False)
        print("[weights] WeMix on the same data", file=sys.stderr, flush=True)
        wm = run_wemix(csv, args.wemix_timeout)
        if isinstance(wm, dict):
            ratio = wm["seconds"] / hlm_s
            lines.append(
                f"| WeMix mix() | {len(frame):,} | {wm['seconds']:.2f} ({ratio:.0f}x hlm) | | {wm['lnl']:.4f} |"
            )
        else:
            lines.append(f"| WeMix mix() | {len(frame):,} | {wm} | | |")
    else:
        lines.append(f"| WeMix mix() | | skipped: {why} | | |")
    folder = work / "parquet"
    print(f"[weights] writing {rows:,} rows of Parquet", file=sys.stderr, flush=True)
    write_parquet(rows, folder)
    print("[weights] hlm through DuckDB", file=sys.stderr, flush=True)
    cmd = [sys.executable, __file__, "--child", str(folder / "*.parquet")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src")])}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    duck = json.loads(res.stdout.strip().splitlines()[-1])
    lines.append(
        f"| hlm, Parquet through DuckDB | {duck['nobs']:,} | {duck['seconds']:.2f} | {duck['peak_rss_mb']:.0f} "
        f"| {duck['lnl']:.4f} |"
    )
    print("\n".join(lines + ["", f"Machine load and sharing apply (see the run's header); --quick: {args.quick}.", ""]))


if __name__ == "__main__":
    main()
