"""Benchmark: GLMMs, hlm against lme4 ``glmer`` in the same run.

    python benchmarks/bench_glmm.py [--quick] [--no-glmer] [--glmer-timeout S] [--repeat N]
        [--seed-rows N] [--large-rows N] [--large-groups G] [--parquet-rows N]

Models (binomial, logit link, Laplace), each fitted by hlm in this process (best of
``--repeat`` within a time budget, after a warm-up fit) and, when ``Rscript`` with lme4 is on
the PATH, by ``glmer`` once in an Rscript subprocess that reads the same CSV and times only the
``glmer()`` call (``system.time``, stopped after ``--glmer-timeout`` seconds):

* VerbAgg ``r2 ~ (Anger + Gender + btype + situ) + (1|id) + (1|item)`` (7,584 rows, crossed);
* the seed's 4-level binary model ``pass ~ tutoring + (1 | dist_id/school_id/teach_id/student_id)``
  (the seed design, 1,600 rows per district; ``--seed-rows``, default 80,000);
* a two-level logistic model ``y ~ x1 + x2 + (1 | g)`` with continuous covariates (nothing
  collapses): ``--large-rows`` (default 1,000,000) rows in ``--large-groups`` (10,000) groups;
* the same design with discrete covariates, ``y ~ treat + cohort + (1 | g)``, written to Parquet
  and fitted from the file through DuckDB (the GROUP BY collapse: only the collapsed table
  reaches Python), ``--parquet-rows`` rows (default 10,000,000), with the peak resident memory
  of a fresh process doing only that fit; glmer is not run on it.

``--quick`` divides the simulated sizes by 10.  The table gives hlm's and glmer's wall seconds,
their ratio, both CPU times (process time; steadier than wall time on a shared machine), both
log-likelihoods (the full one; glmer's default PIRLS tolerance leaves it up to 0.08 below the
exact Laplace optimum, see the reference README) and their difference.
Prints a Markdown section.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

BENCH_TIMEOUT_S = 3600

ROOT = Path(__file__).resolve().parent.parent
TMP = Path("/tmp/bench_glmm")
VERBAGG = ROOT / "tests" / "data" / "VerbAgg.csv"
BUDGET_S = 30.0
VERB_FORMULA = "r2 ~ (Anger + Gender + btype + situ) + (1|id) + (1|item)"
SEED_FORMULA = "pass ~ tutoring + (1 | dist_id/school_id/teach_id/student_id)"
LARGE_FORMULA = "y ~ x1 + x2 + (1 | g)"
PARQUET_FORMULA = "y ~ treat + cohort + (1 | g)"


def verbagg() -> pd.DataFrame:
    frame = pd.read_csv(VERBAGG)
    frame["id"] = frame["id"].astype(str)
    return frame[["r2", "Anger", "Gender", "btype", "situ", "id", "item"]]


def seed(rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """The seed design (scripts/seed_dgp.R): districts x 5 schools x 8 teachers x 20 students
    x 2 semesters; pass = perform > 0."""
    D = max(1, rows // 1600)
    S, T = D * 5, D * 40
    N = T * 20
    student = np.repeat(np.arange(N), 2)
    teach, school = student // 20, student // 160
    dist = school // 5
    tutoring = rng.binomial(1, 0.2, 2 * N)
    perform = (
        2 * tutoring
        + rng.normal(0, 2, D)[dist]
        + rng.normal(0, 3, S)[school]
        + rng.normal(0, 4, T)[teach]
        + rng.normal(0, 5, N)[student]
        + rng.normal(0, 6, 2 * N)
    )
    ids = {"dist_id": dist, "school_id": school, "teach_id": teach, "student_id": student}
    return pd.DataFrame({**{k: v + 1 for k, v in ids.items()}, "tutoring": tutoring, "pass": (perform > 0).astype(int)})


def two_level(rows: int, groups: int, rng: np.random.Generator, discrete: bool) -> pd.DataFrame:
    g = rng.integers(0, groups, rows)
    b = rng.normal(0, 0.8, groups)[g]
    if discrete:
        treat, cohort = rng.binomial(1, 0.5, rows), rng.integers(0, 4, rows)
        eta = -0.5 + 0.4 * treat + 0.1 * cohort + b
        cols = {"treat": treat, "cohort": np.array(["c0", "c1", "c2", "c3"])[cohort]}
    else:
        x1, x2 = rng.normal(size=rows), rng.normal(size=rows)
        eta = -0.5 + 0.4 * x1 - 0.3 * x2 + b
        cols = {"x1": x1, "x2": x2}
    y = (rng.random(rows) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"y": y, **cols, "g": g})


def time_hlm(formula: str, data: object, repeat: int) -> tuple[float, float, float, int]:
    """Best wall and CPU seconds, loglik and rows."""
    import hlm

    best, cpu, spent, fit = np.inf, np.inf, 0.0, None
    for _ in range(repeat):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0, c0 = time.perf_counter(), time.process_time()
            fit = hlm.fit(formula, data, family="binomial")
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
        best, cpu, spent = min(best, dt), min(cpu, dc), spent + dt
        if spent > BUDGET_S:
            break
    return best, cpu, float(fit.loglik), int(fit.nobs)


def time_glmer(
    formula: str, frame: pd.DataFrame, factors: list[str], timeout: float
) -> tuple[float | None, float | None, float | None, str]:
    """Wall and CPU seconds of the glmer() call, its loglik, and the wall time as text."""
    csv, out = TMP / "model.csv", TMP / "glmer.json"
    frame.to_csv(csv, index=False)
    out.unlink(missing_ok=True)
    conv = "".join(f"d${c} <- factor(d${c}); " for c in factors)
    code = (
        f'suppressMessages(library(lme4)); d <- read.csv("{csv}"); {conv}'
        f"tm <- system.time(m <- glmer({formula}, data = d, family = binomial)); "
        f'cat(sprintf(\'{{"seconds": %.6f, "cpu": %.6f, "loglik": %.10f}}\', tm[["elapsed"]], '
        f'tm[["user.self"]] + tm[["sys.self"]], '
        f'as.numeric(logLik(m))), file = "{out}")'
    )
    try:
        subprocess.run(["Rscript", "-e", code], capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, None, None, f"> {timeout:.0f} s (stopped)"
    if not out.exists():
        return None, None, None, "failed"
    res = json.loads(out.read_text())
    return res["seconds"], res["cpu"], res["loglik"], f"{res['seconds']:.3g}"


def parquet_peak(path: Path) -> tuple[float, float, float, int]:
    """seconds, loglik and peak RSS (MB) of a fresh process fitting the Parquet file."""
    code = (
        f"import sys, time, warnings, json, hlm; sys.path.insert(0, {str(Path(__file__).parent)!r});"
        "from memory import peak_rss_mb; warnings.simplefilter('ignore');"
        f"t = time.perf_counter(); f = hlm.fit({PARQUET_FORMULA!r}, {str(path)!r}, family='binomial');"
        "s = time.perf_counter() - t;"
        "print(json.dumps([s, f.loglik, peak_rss_mb(), f.nobs]))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    secs, loglik, peak, nobs = json.loads(res.stdout.strip().splitlines()[-1])
    return secs, loglik, peak, nobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-glmer", action="store_true")
    parser.add_argument("--glmer-timeout", type=float, default=600.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed-rows", type=int, default=80_000)
    parser.add_argument("--large-rows", type=int, default=1_000_000)
    parser.add_argument("--large-groups", type=int, default=10_000)
    parser.add_argument("--parquet-rows", type=int, default=10_000_000)
    args = parser.parse_args()
    div = 10 if args.quick else 1
    TMP.mkdir(parents=True, exist_ok=True)
    use_r = not args.no_glmer and shutil.which("Rscript") is not None
    rng = np.random.default_rng(20261206)
    time_hlm("r2 ~ Anger + (1 | item)", verbagg(), 1)  # warm-up: imports and compiled kernels
    seed_ids = ["dist_id", "school_id", "teach_id", "student_id"]
    large = two_level(args.large_rows // div, args.large_groups // div, rng, False)
    models = [
        ("VerbAgg crossed", VERB_FORMULA, verbagg(), ["id", "item", "r2"]),
        ("seed 4-level binary", SEED_FORMULA, seed(args.seed_rows // div, rng), seed_ids),
        ("two-level, continuous x", LARGE_FORMULA, large, ["g"]),
    ]
    rows = []
    for name, formula, frame, factors in models:
        print(f"hlm: {name}", file=sys.stderr, flush=True)
        data = frame.astype({c: str for c in factors})
        secs, cpu, ll, nobs = time_hlm(formula, data, args.repeat)
        glmer_s, glmer_cpu, glmer_ll, glmer_txt = None, None, None, "not run"
        if use_r:
            print(f"glmer: {name}", file=sys.stderr, flush=True)
            glmer_s, glmer_cpu, glmer_ll, glmer_txt = time_glmer(formula, frame, factors, args.glmer_timeout)
        ratio = f"{glmer_s / secs:.1f}x" if glmer_s else ""
        cpu_txt = f"{cpu:.3g} / {glmer_cpu:.3g} ({glmer_cpu / cpu:.1f}x)" if glmer_cpu else f"{cpu:.3g}"
        diff = f"{ll - glmer_ll:+.2g}" if glmer_ll is not None else ""
        label = formula.replace("|", "\\|")
        rows.append(
            f"| {name}: `{label}` | {nobs:,} | {secs:.3g} | {glmer_txt} | {ratio} | {cpu_txt} | {ll:.4f} | {diff} | |"
        )
    path = TMP / "two_level.parquet"
    two_level(args.parquet_rows // div, args.large_groups // div, rng, True).to_parquet(path)
    print("hlm: Parquet through DuckDB", file=sys.stderr, flush=True)
    secs, ll, peak, nobs = parquet_peak(path)
    label = PARQUET_FORMULA.replace("|", "\\|")
    rows.append(f"| Parquet via DuckDB: `{label}` | {nobs:,} | {secs:.3g} | not run | | | {ll:.4f} | | {peak:,.0f} |")
    print("## GLMMs (hlm vs glmer, binomial logit, Laplace)\n")
    print("| model | rows | hlm s | glmer s | glmer/hlm | CPU s hlm / glmer | hlm logLik | hlm - glmer | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    if not use_r:
        print("\nglmer not run (no Rscript, or --no-glmer): hlm times only.")
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nPeak RSS of the benchmark process (in-memory models): {peak_self:,.0f} MB.")
    shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
