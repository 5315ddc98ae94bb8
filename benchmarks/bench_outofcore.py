"""Out-of-core benchmark: the seed's 4-level design in Parquet, REML through DuckDB.

    python benchmarks/bench_outofcore.py --rows 100_000_000 [--dir /tmp/hlm_bench] [--keep]
    python benchmarks/bench_outofcore.py --data /tmp/ooc100m     # files from hlm simulate
    python benchmarks/bench_outofcore.py --rows 10_000_000 --spark  # and Spark local mode

Writes the seed design (districts scaled to the row count; 5 schools per district, 8
teachers per school, 20 students per teacher, 2 observations per student; SDs 2/3/4/5,
residual 6, tutoring ~ Bernoulli(0.2), perform = 2 tutoring + effects) in Parquet chunks
with ``hlm.simulate`` (a small numpy writer if that is unavailable), then times, each in a
fresh subprocess so peak RSS is its own:

* DuckDB's own ``SELECT student_id, count(*), sum(perform), sum(tutoring) ... GROUP BY
  student_id`` over the same files (fetched to numpy, as hlm fetches its groups), twice;
* ``hlm.fit("perform ~ tutoring + (1 | dist_id/school_id/teach_id/student_id)", glob)``,
  REML through the DuckDB backend (aggregation and optimisation timed apart).

Prints a JSON line per phase and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from memory import peak_rss_mb

MODEL = "perform ~ tutoring + (1 | dist_id/school_id/teach_id/student_id)"
ROWS_PER_DISTRICT = 5 * 8 * 20 * 2


def write_data(rows: int, folder: Path, chunk_rows: int = 5_000_000) -> str:
    """``hlm simulate examples/seed.toml --seed 1 --set levels.district.n=N -o folder --rows-per-file R``."""
    districts = max(1, round(rows / ROWS_PER_DISTRICT))
    seed = Path(__file__).resolve().parents[1] / "examples" / "seed.toml"
    cmd = [
        sys.executable,
        "-c",
        "import sys; from hlm.cli import main; sys.exit(main())",
        "simulate",
        str(seed),
        "--seed",
        "1",
        "--set",
        f"levels.district.n={districts}",
        "-o",
        str(folder),
        "--rows-per-file",
        str(chunk_rows),
    ]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        return "hlm simulate"
    except (subprocess.CalledProcessError, FileNotFoundError):
        _numpy_writer(districts, folder, chunk_rows)
        return "numpy writer"


def _numpy_writer(districts: int, folder: Path, chunk_rows: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    per = max(1, chunk_rows // ROWS_PER_DISTRICT)
    for part, start in enumerate(range(0, districts, per)):
        nd = min(per, districts - start)
        d = np.repeat(np.arange(start, start + nd) + 1, ROWS_PER_DISTRICT)
        s = np.repeat(np.arange(start * 5, (start + nd) * 5) + 1, ROWS_PER_DISTRICT // 5)
        t = np.repeat(np.arange(start * 40, (start + nd) * 40) + 1, ROWS_PER_DISTRICT // 40)
        st = np.repeat(np.arange(start * 800, (start + nd) * 800) + 1, 2)
        tut = (rng.random(len(d)) < 0.2).astype(np.int8)
        eff = (
            2 * rng.standard_normal(nd)[d - d[0]]
            + 3 * rng.standard_normal(nd * 5)[s - s[0]]
            + 4 * rng.standard_normal(nd * 40)[t - t[0]]
            + 5 * rng.standard_normal(nd * 800)[st - st[0]]
        )
        y = 2.0 * tut + eff + 6 * rng.standard_normal(len(d))
        table = pa.table(
            {
                "dist_id": d.astype(np.int32),
                "school_id": s.astype(np.int32),
                "teach_id": t.astype(np.int32),
                "student_id": st.astype(np.int32),
                "tutoring": tut,
                "perform": y,
            }
        )
        pq.write_table(table, folder / f"part-{part:05d}.parquet")


def phase_baseline(glob: str, threads: int | None) -> dict:
    import duckdb

    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {threads}")
    t = time.perf_counter()
    res = con.execute(
        f"SELECT student_id, count(*) AS n, sum(perform) AS sp, sum(tutoring) AS st "
        f"FROM read_parquet('{glob}') GROUP BY student_id"
    ).fetchnumpy()
    return {
        "phase": "duckdb_groupby",
        "seconds": time.perf_counter() - t,
        "groups": len(res["n"]),
        "peak_rss_mb": peak_rss_mb(),
    }


def phase_fit(glob: str, threads: int | None) -> dict:
    """``hlm.fit(MODEL, glob)`` end to end; the split is taken where it calls ``fit_aggregates``
    (before: the DuckDB queries, their assembly and the structure checks; after: the fit)."""
    import duckdb

    import hlm
    import hlm.lmm as lmm

    con = None  # as hlm.fit(MODEL, glob) does: hlm's own connection (and its memory limit)
    if threads:
        from hlm.aggregate.duckdb import MEMORY_LIMIT

        con = duckdb.connect()
        con.execute(f"SET threads = {threads}")
        con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
        con.execute("SET preserve_insertion_order = false")
    marks: dict[str, float] = {}
    fit_aggregates = lmm.fit_aggregates

    def timed(*args, **kwargs):
        marks["aggregated"] = time.perf_counter()
        return fit_aggregates(*args, **kwargs)

    lmm.fit_aggregates = timed
    t0 = time.perf_counter()
    fit = hlm.fit(MODEL, glob, con=con)
    t2 = time.perf_counter()
    agg = fit.aggregates
    return {
        "phase": "hlm_fit_duckdb",
        "seconds": t2 - t0,
        "aggregate_seconds": marks["aggregated"] - t0,
        "optimise_seconds": t2 - marks["aggregated"],
        "nobs": agg.nobs,
        "groups": [f.nlevels for f in agg.factors],
        "pooled": any(f.pooled is not None for f in agg.factors),
        "evaluations": fit.optsummary.feval,
        "fixef": fit.fixef.round(4).to_dict(),
        "sd": [round(float(x), 4) for x in fit.varcorr["sdcor"]],
        "converged": bool(fit.converged),
        "peak_rss_mb": peak_rss_mb(),
    }


def phase_spark(glob: str, threads: int | None) -> dict:
    """The same fit from a Spark DataFrame in local mode (session start timed apart)."""
    from pyspark.sql import SparkSession

    from hlm.aggregate.spark import aggregate_spark
    from hlm.lmm.pipeline import fit_aggregates
    from hlm.spec import parse_model

    t = time.perf_counter()
    spark = (
        SparkSession.builder.master(f"local[{threads or os.cpu_count()}]")
        .appName("hlm-bench")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "6g")
        .config("spark.sql.shuffle.partitions", str(4 * (os.cpu_count() or 2)))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    start = time.perf_counter() - t
    df = spark.read.parquet(str(Path(glob).parent))
    t0 = time.perf_counter()
    spec = parse_model(MODEL)
    agg, plan = aggregate_spark(spec, df, return_plan=True)
    t1 = time.perf_counter()
    fit = fit_aggregates(spec, agg, reml=True, x_model_spec=plan.x_model_spec)
    t2 = time.perf_counter()
    spark.stop()
    return {
        "phase": "hlm_fit_spark",
        "seconds": t2 - t0,
        "aggregate_seconds": t1 - t0,
        "optimise_seconds": t2 - t1,
        "session_start_seconds": start,
        "nobs": agg.nobs,
        "fixef": fit.fixef.round(4).to_dict(),
        "sd": [round(float(x), 4) for x in fit.varcorr["sdcor"]],
        "converged": bool(fit.converged),
        "peak_rss_mb_python": peak_rss_mb(),
    }


def run_phase(name: str, glob: str, threads: int | None) -> dict:
    cmd = [sys.executable, __file__, "--phase", name, "--glob", glob] + (["--threads", str(threads)] if threads else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    result = json.loads(out)
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=lambda s: int(float(s.replace("_", ""))), default=10_000_000)
    ap.add_argument("--dir", default="/tmp/hlm_bench")
    ap.add_argument("--keep", action="store_true", help="keep the Parquet files (and reuse them if present)")
    ap.add_argument("--rows-per-file", type=lambda s: int(float(s.replace("_", ""))), default=5_000_000)
    ap.add_argument(
        "--data",
        help="use the Parquet files already in this folder (written by hlm simulate) "
        "instead of writing --rows rows; they are kept",
    )
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--spark", action="store_true", help="also fit from a Spark DataFrame (local mode) of the files")
    ap.add_argument("--phase", choices=["baseline", "fit", "spark"], help=argparse.SUPPRESS)
    ap.add_argument("--glob", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        fn = {"baseline": phase_baseline, "fit": phase_fit, "spark": phase_spark}[args.phase]
        print(json.dumps(fn(args.glob, args.threads)))
        return

    folder = Path(args.data) if args.data else Path(args.dir) / f"seed_{args.rows}"
    if args.data:
        if not any(folder.glob("*.parquet")):
            raise SystemExit(f"no Parquet files in {folder}")
    elif not (args.keep and folder.exists()):
        shutil.rmtree(folder, ignore_errors=True)
        t = time.perf_counter()
        how = write_data(args.rows, folder, args.rows_per_file)
        print(json.dumps({"phase": "write", "how": how, "seconds": time.perf_counter() - t}), flush=True)
    size = sum(f.stat().st_size for f in folder.glob("*.parquet"))
    glob = str(folder / "*.parquet")
    base1 = run_phase("baseline", glob, args.threads)
    fit = run_phase("fit", glob, args.threads)
    base2 = run_phase("baseline", glob, args.threads)
    base = min(base1["seconds"], base2["seconds"])
    print(
        f"\n| rows | parquet | DuckDB GROUP BY student_id | hlm REML fit via DuckDB (aggregate + optimise) "
        f"| ratio | peak RSS fit | peak RSS GROUP BY |\n|---|---|---|---|---|---|---|\n"
        f"| {fit['nobs']:,} | {size / 2**20:,.0f} MiB | {base:.2f} s | {fit['seconds']:.2f} s "
        f"({fit['aggregate_seconds']:.2f} + {fit['optimise_seconds']:.2f}) | {fit['seconds'] / base:.2f}x "
        f"| {fit['peak_rss_mb']:,.0f} MiB | {max(base1['peak_rss_mb'], base2['peak_rss_mb']):,.0f} MiB |"
    )
    if args.spark:
        sp = run_phase("spark", glob, args.threads)
        print(
            f"\n| rows | hlm via DuckDB (aggregate + optimise) | hlm via Spark local[{args.threads or os.cpu_count()}] "
            f"(aggregate + optimise) | Spark / DuckDB | Spark session start |\n|---|---|---|---|---|\n"
            f"| {fit['nobs']:,} | {fit['seconds']:.2f} s "
            f"({fit['aggregate_seconds']:.2f} + {fit['optimise_seconds']:.2f}) "
            f"| {sp['seconds']:.2f} s ({sp['aggregate_seconds']:.2f} + {sp['optimise_seconds']:.2f}) "
            f"| {sp['seconds'] / fit['seconds']:.1f}x | {sp['session_start_seconds']:.1f} s |"
        )
    print(f"cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
    if not (args.keep or args.data):
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
