"""Benchmark: Monte Carlo studies of the seed's design (issue 6), against lme4's lmer.

    python benchmarks/bench_study.py [--quick] [--reps 1000] [--ci-reps 200] [--jobs N] [--no-lmer]

On the seed's design at 50 districts (80,000 rows; examples/seed.toml) with the 4-level
model ``perform ~ tutoring + (1|dist_id/school_id/teach_id/student_id)`` (REML):

1. the cost of one replicate, serially in this process (median of ``--profile-reps``):
   simulate, ``hlm.fit``, the study's extraction of estimates, and the SEs / CIs of the
   variance components and ICCs (``intervals=True``);
2. ``hlm.study`` of ``--reps`` replicates (estimates, fixed-effect CIs; ``intervals=False``)
   on ``--jobs`` processes: wall seconds and replicates per second (issue 6's target:
   1,000 replicates in at most 60 s on the 2-core machine);
3. ``hlm.study`` of ``--ci-reps`` replicates with intervals: the acceptance study (coverage
   of the tutoring effect, mean SD estimates against the truth);
4. when ``Rscript`` with lme4 is installed: one ``lmer`` fit of the same 80,000 rows (best
   of 3, data already in memory), for the per-replicate comparison.

Prints one Markdown section on stdout; ``--quick`` runs 100 and 50 replicates.
The machine's load average is printed: other processes on a shared machine slow all numbers.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

BENCH_TIMEOUT_S = 1800
ROOT = Path(__file__).resolve().parents[1]
MODEL = "perform ~ tutoring + (1|dist_id/school_id/teach_id/student_id)"
LMER = "perform ~ tutoring + (1|dist_id/school_id/teach_id/student_id)"


def load() -> str:
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def cpu_children() -> float:
    """CPU seconds of the finished worker processes (and this one)."""
    c, me = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
    return c.ru_utime + c.ru_stime + me.ru_utime + me.ru_stime


def per_rep_costs(design, n: int) -> dict[str, float]:
    import hlm
    from hlm.simulate import simulate
    from hlm.study import StudyModel, Truth, fit_model

    truth = Truth.from_design(design)
    model = StudyModel.parse(MODEL, design)
    out: dict[str, list[float]] = {"simulate": [], "fit": [], "extract": [], "intervals": []}
    for s in range(n + 1):
        t0 = time.perf_counter()
        frame = simulate(design, seed=s)
        t1 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hlm.fit(MODEL, frame)
        t2 = time.perf_counter()
        res = fit_model(model, frame, truth, intervals=False)
        t3 = time.perf_counter()
        res_ci = fit_model(model, frame, truth, intervals=True)
        if s == 0:
            continue  # warm-up
        out["simulate"].append(t1 - t0)
        out["fit"].append(t2 - t1)
        out["extract"].append(t3 - t2 - res.seconds)
        out["intervals"].append(res_ci.seconds_ci)
    return {k: float(np.median(v)) for k, v in out.items()}


def lmer_seconds(design) -> tuple[float | None, str]:
    if shutil.which("Rscript") is None:
        return None, "Rscript not found"
    probe = subprocess.run(
        ["Rscript", "-e", "suppressMessages(library(lme4)); cat(as.character(packageVersion('lme4')))"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return None, "lme4 not installed"
    from hlm.simulate import simulate

    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "seed.csv"
        simulate(design, seed=1).to_csv(csv, index=False)
        script = f"""
suppressMessages(library(lme4))
d <- read.csv("{csv}")
times <- c()
for (i in 1:3) {{
  t <- system.time(m <- lmer({LMER}, data = d, REML = TRUE))[["elapsed"]]
  times <- c(times, t)
}}
cat(min(times), "\\n")
cat(paste(round(sqrt(unlist(VarCorr(m))), 3), collapse = " "), "\\n")
"""
        run = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True, timeout=900)
    if run.returncode != 0:
        return None, f"lmer failed: {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else run.returncode}"
    lines = run.stdout.strip().splitlines()
    return float(lines[0]), f"lme4 {probe.stdout.strip()}; SDs {lines[1].strip()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100 replicates, 50 with intervals")
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--ci-reps", type=int, default=200)
    ap.add_argument("--profile-reps", type=int, default=15)
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    ap.add_argument("--no-lmer", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.reps, args.ci_reps, args.profile_reps = 100, 50, 5

    import hlm
    from hlm.simulate import Design

    design = Design.from_toml(ROOT / "examples" / "seed.toml").set("levels.district.n", 50)
    load0 = load()
    print(f"per-replicate costs ({args.profile_reps} reps) ...", file=sys.stderr)
    costs = per_rep_costs(design, args.profile_reps)
    print(f"study of {args.reps} replicates on {args.jobs} processes ...", file=sys.stderr)
    c0 = cpu_children()
    fast = hlm.study(design, MODEL, args.reps, seed=1, n_jobs=args.jobs, intervals=False, progress=sys.stderr.isatty())
    c1 = cpu_children()
    print(f"study of {args.ci_reps} replicates with intervals ...", file=sys.stderr)
    full = hlm.study(
        design, MODEL, args.ci_reps, seed=2024, n_jobs=args.jobs, intervals=True, progress=sys.stderr.isatty()
    )
    c2 = cpu_children()
    load1 = load()
    lmer, lmer_note = (None, "skipped (--no-lmer)") if args.no_lmer else lmer_seconds(design)

    fs = fast.fit_summary().iloc[0]
    s = full.summary().set_index("parameter")
    per_rep_fast = (c1 - c0) / args.reps  # CPU seconds per replicate, all processes
    per_rep_full = (c2 - c1) / args.ci_reps
    idle = per_rep_fast * 1000 / fast.n_jobs
    out = [
        "## Monte Carlo study (hlm.study): the seed's design, 80,000 rows, 4-level REML",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()}; "
        f"load average before / after: {load0} -> {load1} (other processes slow every number).",
        "",
        "| step (one replicate, serial, median) | seconds |",
        "|---|---:|",
        f"| simulate 80,000 rows | {costs['simulate']:.4f} |",
        f"| `hlm.fit` 4-level REML | {costs['fit']:.4f} |",
        f"| study extraction of the estimates | {costs['extract']:.4f} |",
        f"| SEs / CIs of SDs and ICCs (`intervals=True`) | {costs['intervals']:.4f} |",
        "",
        "| run | replicates | processes | wall s | replicates / s | CPU-s per replicate "
        "| wall s per fit in the workers (mean) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| `hlm.study(..., intervals=False)` | {args.reps:,} | {fast.n_jobs} | {fast.seconds:.1f} | "
        f"{args.reps / fast.seconds:.1f} | {per_rep_fast:.3f} | {fs['seconds']:.3f} |",
        f"| `hlm.study(..., intervals=True)` | {args.ci_reps:,} | {full.n_jobs} | {full.seconds:.1f} | "
        f"{args.ci_reps / full.seconds:.1f} | {per_rep_full:.3f} | {full.fit_summary().iloc[0]['seconds']:.3f} |",
        "",
        f"Target (issue 6): 1,000 replicates in <= 60 s on 2 cores: measured "
        f"{fast.seconds * 1000 / args.reps:.0f} s wall per 1,000 at this load; the CPU time the study used "
        f"({per_rep_fast:.3f} CPU-s per replicate) is {idle:.0f} s per 1,000 on {fast.n_jobs} otherwise idle cores.",
        "",
    ]
    if lmer is not None:
        out.append(
            f"`lmer` (R, {lmer_note}): {lmer:.2f} s per fit of the same 80,000 rows (best of 3), "
            f"{lmer / costs['fit']:.0f}x hlm's fit; 1,000 replicates would take about {lmer * 1000 / 60:.0f} "
            "CPU-minutes of fitting alone."
        )
    else:
        out.append(f"`lmer`: not measured ({lmer_note}).")
    out += [
        "",
        f"Acceptance study ({args.ci_reps} replicates, seed 2024): coverage of the 95% CI of tutoring "
        f"{s.loc['tutoring', 'coverage']:.3f} (target [0.92, 0.98]); mean SD estimates / truth: "
        + ", ".join(
            f"{lv} {s.loc[f'sd[{lv}]', 'mean'] / s.loc[f'sd[{lv}]', 'truth']:.3f}"
            for lv in ("district", "school", "teacher", "student")
        )
        + f"; residual {s.loc['sd[residual]', 'mean'] / 6.0:.3f}. "
        f"Coverage of the SD CIs: "
        + ", ".join(f"{lv} {s.loc[f'sd[{lv}]', 'coverage']:.3f}" for lv in ("district", "school", "teacher", "student"))
        + ".",
        "",
    ]
    print("\n".join(out))


if __name__ == "__main__":
    main()
