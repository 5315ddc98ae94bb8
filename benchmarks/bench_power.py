"""Benchmark: power by simulation of the seed's design (issue 18), against lme4's lmer.

    python benchmarks/bench_power.py [--quick] [--reps 10000] [--curve-reps 1000] [--jobs N] [--no-lmer]

On the seed's design at 50 districts (80,000 rows; examples/seed.toml) with the 4-level model
``perform ~ tutoring + (1|dist_id/school_id/teach_id/student_id)`` (REML, Wald test of tutoring):

1. ``hlm.power.simulate`` of ``--reps`` replicates drawn from sufficient statistics (no rows):
   wall seconds and replicates per second (issue 18's target: 10,000 in at most 10 s on 2 cores);
2. a 10-point power curve (``levels.district.n`` = 5..50) of ``--curve-reps`` replicates each
   (target: 1,000 each in at most 15 s), the tutoring effect at half its size;
3. the cost of one replicate, serially: drawing the statistics vs simulating and aggregating
   the rows, the lean fit power uses (:mod:`hlm.power.lean`) vs the full fit; CPU seconds per
   replicate of step 1, which a loaded machine inflates less than wall seconds;
4. the baseline in the same run: ``--baseline-reps`` replicates with the full fit per replicate
   (the route before the lean fit), their wall seconds, and whether both routes reject the same
   replicates;
5. when ``Rscript`` with lme4 is installed: one ``lmer`` fit of the same 80,000 rows (best of 3),
   the cost of one replicate of the simr route.

Prints one Markdown section on stdout; ``--quick`` runs 200 replicates and 50 per curve point.
The machine's load average is printed: other processes on a shared machine slow all numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

from bench_study import cpu_children, lmer_seconds, load

BENCH_TIMEOUT_S = 1800
ROOT = Path(__file__).resolve().parents[1]
MODEL = "perform ~ tutoring + (1|dist_id/school_id/teach_id/student_id)"
TARGET_REPS_S, TARGET_CURVE_S = 10.0, 15.0
BASELINE_EFFECT = 0.15  # a tutoring effect with power near one half: rejections of both kinds to compare


def per_rep_costs(design, n: int) -> dict[str, float]:
    """Median seconds of one replicate's parts, serially in this process."""
    from hlm.lmm.pipeline import aggregate, fit_aggregates
    from hlm.power.lean import LeanPlan
    from hlm.power.sufficient import build_skeleton
    from hlm.simulate import rng_for, simulate
    from hlm.spec import parse_model

    spec = parse_model(MODEL)
    frame = simulate(design, seed=1)
    agg, _ = aggregate(spec, frame, backend="memory")
    layout = build_skeleton(design, agg, frame)
    plan = LeanPlan.pilot(spec, layout.draw(rng_for(0)), "tutoring", reml=True)  # compiles, warms up
    assert plan is not None
    times: dict[str, list[float]] = {"draw": [], "rows": [], "fit": [], "lean": []}
    for r in range(n):
        t0 = time.perf_counter()
        drawn = layout.draw(rng_for(r))
        t1 = time.perf_counter()
        aggregate(spec, simulate(design, seed=r), backend="memory")
        t2 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit_aggregates(spec, drawn)
        t3 = time.perf_counter()
        plan.estimate(drawn)
        t4 = time.perf_counter()
        times["draw"].append(t1 - t0)
        times["rows"].append(t2 - t1)
        times["fit"].append(t3 - t2)
        times["lean"].append(t4 - t3)
    return {k: statistics.median(v) for k, v in times.items()}


def baseline(design, effect: float, reps: int, jobs: int, simulation) -> tuple[Any, Any, float]:
    """The lean route and the full-fit route (no lean plan) on the same replicates; the latter's wall s."""
    import hlm

    kwargs = dict(effect=effect, reps=reps, seed=3, n_jobs=jobs, progress=False)
    lean = hlm.power.simulate(design, MODEL, "tutoring", **kwargs)
    plan = simulation._plan
    simulation._plan = lambda *args: None  # every replicate by the full fit, as before the lean route
    try:
        t0 = time.perf_counter()
        full = hlm.power.simulate(design, MODEL, "tutoring", **kwargs)
        return lean, full, time.perf_counter() - t0
    finally:
        simulation._plan = plan


def differing(a: Any, b: Any) -> int:
    """Replicates that one result rejects and the other does not."""
    return sum((ra[3] < a.alpha) != (rb[3] < b.alpha) for ra, rb in zip(a.replicates, b.replicates))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=10_000)
    ap.add_argument("--curve-reps", type=int, default=1_000)
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--baseline-reps", type=int, default=1_000)
    ap.add_argument("--no-lmer", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.reps, args.curve_reps, args.baseline_reps = 200, 50, 100
    import hlm
    import hlm.power.simulation as simulation
    from hlm.simulate import Design

    design = Design.from_toml(ROOT / "examples" / "seed.toml")
    jobs = args.jobs or os.cpu_count() or 1
    costs = per_rep_costs(design, 5 if args.quick else 20)
    half = design.fixed["tutoring"] / 2
    t0, c0 = time.perf_counter(), cpu_children()
    one = hlm.power.simulate(design, MODEL, "tutoring", reps=args.reps, seed=1, n_jobs=jobs, progress=False)
    t_reps, cpu_rep = time.perf_counter() - t0, (cpu_children() - c0) / args.reps
    lean_half, base_half, t_base = baseline(design, BASELINE_EFFECT, args.baseline_reps, jobs, simulation)
    grid = {"levels.district.n": [5, 10, 15, 20, 25, 30, 35, 40, 45, 50]}
    t0, c0 = time.perf_counter(), cpu_children()
    curve = hlm.power.simulate(
        design, MODEL, "tutoring", effect=half, reps=args.curve_reps, seed=2, vary=grid, n_jobs=jobs, progress=False
    )
    t_curve, cpu_curve = time.perf_counter() - t0, cpu_children() - c0
    lmer, lmer_note = (None, "skipped (--no-lmer)") if args.no_lmer else lmer_seconds(design)

    out = [
        "## Power by simulation (issue 18)",
        "",
        f"Seed's design, 50 districts, 80,000 rows, `{MODEL}` (REML), Wald test of tutoring; "
        f"{jobs} process(es); load average {load()} (a shared machine slows every number).",
        "",
        "| what | replicates | seconds | replicates/s | target |",
        "|---|---:|---:|---:|---|",
        f"| power at 50 districts (sufficient statistics) | {args.reps:,} | {t_reps:.1f} | "
        f"{args.reps / t_reps:.0f} | {args.reps:,} in <= {TARGET_REPS_S:g} s x reps/10,000: "
        f"{'met' if t_reps <= TARGET_REPS_S * args.reps / 10_000 else 'not met'} |",
        f"| 10-point power curve, effect {half:g} | {10 * args.curve_reps:,} | {t_curve:.1f} | "
        f"{10 * args.curve_reps / t_curve:.0f} | 10 x 1,000 in <= {TARGET_CURVE_S:g} s x reps/1,000: "
        f"{'met' if t_curve <= TARGET_CURVE_S * args.curve_reps / 1_000 else 'not met'} |",
        "",
        f"Power at 50 districts (effect {design.fixed['tutoring']:g}): {one.power:.3f} (MC SE {one.mc_se:.3f}). "
        "Power curve at half the effect: "
        + ", ".join(f"{n}: {p:.2f}" for n, p in zip(grid["levels.district.n"], curve.power))
        + ".",
        "",
        f"One replicate, serially (median): drawing the statistics {costs['draw'] * 1e3:.1f} ms vs simulating "
        f"and aggregating 80,000 rows {costs['rows'] * 1e3:.1f} ms; the lean fit {costs['lean'] * 1e3:.1f} ms "
        f"vs the full REML fit {costs['fit'] * 1e3:.1f} ms. CPU per replicate in the 50-district run: "
        f"{cpu_rep * 1e3:.2f} ms (all processes); at that cost 2 idle cores would take "
        f"{cpu_rep * 10_000 / 2:.1f} s for 10,000; the curve's CPU, {cpu_curve:.1f} s for {10 * args.curve_reps:,}, "
        f"would take {cpu_curve / 2 * 1_000 / args.curve_reps:.1f} s for 10 x 1,000 on 2 idle cores.",
        "",
        f"Baseline in the same run (the full fit per replicate, effect {BASELINE_EFFECT:g}, "
        f"{args.baseline_reps:,} replicates): "
        f"{t_base:.1f} s, {args.baseline_reps / t_base:.0f} replicates/s; power {base_half.power:.3f} vs "
        f"{lean_half.power:.3f} with the lean fit; rejections that differ: "
        f"{differing(lean_half, base_half)} of {args.baseline_reps:,}.",
    ]
    if lmer is not None:
        out.append(
            f"`lmer` (R, {lmer_note}): {lmer:.2f} s per fit of the same 80,000 rows; {args.reps:,} replicates "
            f"the simr way would take about {lmer * args.reps / 3600:.1f} h of fits alone."
        )
    else:
        out.append(f"`lmer`: not measured ({lmer_note}).")
    print("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
