"""Benchmark: hlm's core fit against lme4 ``lmer``, statsmodels ``MixedLM`` and a pandas group-by.

    python benchmarks/bench_core.py [--quick] [--sizes 50,500,5000] [--repeat 3] [--no-lmer]
                                    [--no-statsmodels] [--no-crossed] [--json PATH]

Nested: the seed's 4-level random-intercept model, REML,
``perform ~ tutoring + (1|dist_id/school_id/teach_id/student_id)``, on the seed design
(``examples/seed.toml``, ``hlm.simulate`` seed 1) with 50, 500 and 5,000 districts
(80,000, 800,000 and 8,000,000 rows).  Each size runs in a fresh subprocess that simulates
the frame, warms hlm up on a tiny frame, then times ``hlm.fit`` (best of ``--repeat``; one
run at 8,000,000 rows) and the floor, ``df.groupby("student_id")[["perform", "tutoring"]].sum()``
(best of 4: two runs before and two after the fits).  Memory: the child's RSS before the
fits (interpreter, libraries and the frame), the frame's own size
(``memory_usage(deep=True)``), the peak RSS during the fits (``/proc/self/status`` VmHWM
after resetting it through ``/proc/self/clear_refs``) and the child's ``ru_maxrss``.

Right after each hlm child, on the same data: R ``lmer`` (80,000 and 800,000 rows; an
Rscript subprocess reads a CSV and only the ``lmer()`` call is timed, with ``system.time``)
and, at 80,000 rows, statsmodels ``MixedLM`` (groups = dist_id, variance components for
school, teacher and student) in a subprocess stopped after 300 s.  hlm and lmer must agree:
REML criterion within 1e-6 relative, SDs within 1e-4 relative.

Crossed: a synthetic InstEval-like frame (73,421 rows; students s ~3,000, lecturers d
~1,100, departments dept 30, assigned at random; y = 3 + s + d + dept + e with SDs 0.3, 0.5,
0.1 and 1.2), ``y ~ 1 + (1|s) + (1|d) + (1|dept)``, hlm (best of ``--repeat``) vs lmer.

``--quick``: 80,000 rows and the crossed model only.  Temporary files go to
/tmp/bench_core/ and are deleted.  Prints a Markdown section.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_TIMEOUT_S = 2400  # read by run.py: lmer at 800,000 rows can take minutes on a busy machine

ROOT = Path(__file__).resolve().parent.parent
SEED_TOML = ROOT / "examples" / "seed.toml"
TMP = Path("/tmp/bench_core")
NESTED = "perform ~ tutoring + (1|dist_id/school_id/teach_id/student_id)"
CROSSED = "y ~ 1 + (1|s) + (1|d) + (1|dept)"
STATSMODELS_TIMEOUT_S = 300
LMER_TIMEOUT_S = 1200
REPEAT_BUDGET_S = 60  # stop repeating hlm fits once they have taken this long in all
LMER_SIZES = {50, 500}  # districts at which lmer runs (80,000 and 800,000 rows)
TARGET = {"lmer80k": 50.0, "lmer800k": 100.0, "floor8m": 5.0, "crossed": 10.0}
TOL_OBJ, TOL_SD = 1e-6, 1e-4

R_SCRIPT = r"""
suppressMessages({library(lme4); library(jsonlite)})
a <- commandArgs(trailingOnly = TRUE)
d <- as.data.frame(data.table::fread(a[1]))
f <- as.formula(a[2])
tm <- system.time(m <- lmer(f, data = d, REML = TRUE))
vc <- as.data.frame(VarCorr(m))
out <- list(elapsed = unname(tm["elapsed"]), cpu = unname(tm["user.self"] + tm["sys.self"]),
            reml_criterion = REMLcrit(m), groups = vc$grp, sdcor = vc$sdcor,
            fixef = as.list(fixef(m)), feval = m@optinfo$feval,
            lme4 = as.character(packageVersion("lme4")),
            R = paste(R.version$major, R.version$minor, sep = "."))
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE), a[3])
"""


def log(msg: str) -> None:
    """Progress on stderr."""
    print(f"[core] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# memory helpers (Linux /proc; fall back to ru_maxrss)
def _status_mib(key: str) -> float | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------
# data
def seed_frame(districts: int):
    import hlm.simulate as sim

    design = sim.Design.from_toml(str(SEED_TOML))
    return sim.simulate(design.set("levels.district.n", districts), seed=1)


def crossed_frame(seed: int = 20240501):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n, ns, nd, ndept = 73_421, 3_000, 1_100, 30
    s = rng.integers(0, ns, n)
    d = rng.integers(0, nd, n)
    dept = rng.integers(0, ndept, n)
    y = (
        3.0
        + rng.normal(0, 0.3, ns)[s]
        + rng.normal(0, 0.5, nd)[d]
        + rng.normal(0, 0.1, ndept)[dept]
        + rng.normal(0, 1.2, n)
    )
    return pd.DataFrame({"s": s, "d": d, "dept": dept, "y": y})


def group_key(name: str) -> frozenset[str]:
    return frozenset(p for p in re.split(r"[:()\s]+", name) if p)


def fit_summary(fit: Any) -> dict[str, Any]:
    vc = fit.varcorr
    return {
        "reml_criterion": float(fit.reml_criterion),
        "groups": [str(g) for g in vc["group"]],
        "sdcor": [float(v) for v in vc["sdcor"]],
        "fixef": {str(k): float(v) for k, v in fit.fixef.items()},
        "feval": int(fit.optsummary.feval),
        "opt_seconds": float(fit.optsummary.seconds),
        "converged": bool(fit.converged),
        "singular": bool(fit.singular),
    }


# ---------------------------------------------------------------------------------------
# children (each prints one JSON line on stdout)
def child_hlm(args: argparse.Namespace) -> dict[str, Any]:
    import hlm

    if args.csv_in:
        import pandas as pd

        df = pd.read_csv(args.csv_in)
        model, floor_cols, floor_key = CROSSED, None, None
        hlm.fit(CROSSED, df.iloc[:2000])  # warm-up (lazy imports, caches)
    else:
        df = seed_frame(args.districts)
        model, floor_cols, floor_key = NESTED, ["perform", "tutoring"], "student_id"
        hlm.fit(NESTED, seed_frame(2))  # warm-up on 3,200 rows
    gc.collect()
    out: dict[str, Any] = {"rows": len(df), "data_mib": df.memory_usage(deep=True).sum() / 2**20}

    floor: list[float] = []

    def run_floor(k: int) -> None:
        for _ in range(k):
            t0 = time.perf_counter()
            df.groupby(floor_key)[floor_cols].sum()
            floor.append(time.perf_counter() - t0)
        gc.collect()

    if floor_key:
        run_floor(2)
    out["rss_before_mib"] = _status_mib("VmRSS")
    out["peak_reset"] = _reset_peak()
    wall, cpu, fit = [], [], None
    for i in range(args.repeat):
        fit = None
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        fit = hlm.fit(model, df, reml=True)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        log(f"hlm fit {i + 1}/{args.repeat} at {len(df):,} rows: {wall[-1]:.3f} s")
        if sum(wall) > REPEAT_BUDGET_S:  # slow: fewer repeats rather than a timeout
            break
    out["peak_fit_mib"] = _status_mib("VmHWM") if out["peak_reset"] else None
    if floor_key:
        run_floor(2)
    out.update(hlm_wall=wall, hlm_cpu=cpu, floor=floor, maxrss_mib=_maxrss_mib(), fit=fit_summary(fit))
    if args.csv_out:
        df.to_csv(args.csv_out, index=False)
    return out


def child_statsmodels(args: argparse.Namespace) -> dict[str, Any]:
    import warnings

    import numpy as np
    import pandas as pd
    import statsmodels
    from statsmodels.regression.mixed_linear_model import MixedLM

    df = pd.read_csv(args.csv_in)
    vc = {"school": "0 + C(school_id)", "teacher": "0 + C(teach_id)", "student": "0 + C(student_id)"}
    t0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MixedLM.from_formula("perform ~ tutoring", data=df, groups="dist_id", re_formula="1", vc_formula=vc)
        res = model.fit(reml=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    sds = {"dist_id": float(np.sqrt(res.cov_re.iloc[0, 0]))}
    sds.update({k: float(np.sqrt(v)) for k, v in zip(model.exog_vc.names, res.vcomp)})
    sds["Residual"] = float(np.sqrt(res.scale))
    return {
        "wall": wall,
        "cpu": cpu,
        "reml_criterion": float(-2 * res.llf),
        "sds": sds,
        "converged": bool(res.converged),
        "version": statsmodels.__version__,
    }


# ---------------------------------------------------------------------------------------
# parent
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_child(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[dict[str, Any] | None, str]:
    """Run this script as a child (``env`` added to the environment); return (its JSON or None, a note)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv]
    try:
        p = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=None, text=True, timeout=timeout, env={**os.environ, **(env or {})}
        )
    except subprocess.TimeoutExpired:
        return None, f"> {timeout:.0f} s (stopped)"
    if p.returncode != 0:
        return None, f"failed (exit {p.returncode})"
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    return (json.loads(lines[-1]), "") if lines else (None, "no output")


def run_lmer(csv: Path, formula: str) -> tuple[dict[str, Any] | None, str]:
    if shutil.which("Rscript") is None:
        return None, "Rscript not installed"
    chk = subprocess.run(
        ["Rscript", "-e", "cat(all(sapply(c('lme4','jsonlite','data.table'), requireNamespace, quietly=TRUE)))"],
        capture_output=True,
        text=True,
    )
    if chk.stdout.strip() != "TRUE":
        return None, "R package lme4 (or jsonlite / data.table) not installed"
    script, res = TMP / "lmer.R", TMP / "lmer.json"
    script.write_text(R_SCRIPT)
    res.unlink(missing_ok=True)
    try:
        p = subprocess.run(
            ["Rscript", str(script), str(csv), formula, str(res)],
            capture_output=True,
            text=True,
            timeout=LMER_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return None, f"> {LMER_TIMEOUT_S} s (stopped)"
    if p.returncode != 0 or not res.exists():
        sys.stderr.write(p.stderr[-2000:])
        return None, f"failed (exit {p.returncode})"
    return json.loads(res.read_text()), ""


def agreement(h: dict[str, Any], r: dict[str, Any]) -> dict[str, Any]:
    rsd = {group_key(g): s for g, s in zip(r["groups"], r["sdcor"])}
    worst, worst_name = 0.0, ""
    for g, s in zip(h["groups"], h["sdcor"]):
        other = rsd.get(group_key(g))
        if other is None:
            return {"ok": False, "note": f"group {g} not in lmer's VarCorr"}
        rel = abs(s - other) / max(abs(other), 1e-12)
        if rel > worst:
            worst, worst_name = rel, g
    obj = abs(h["reml_criterion"] - r["reml_criterion"]) / abs(r["reml_criterion"])
    fe = max(abs(h["fixef"][k] - v) for k, v in r["fixef"].items())
    return {
        "obj_rel": obj,
        "sd_rel": worst,
        "sd_worst": worst_name,
        "fixef_abs": fe,
        "ok": obj <= TOL_OBJ and worst <= TOL_SD,
    }


def fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:,.1f}x"


def parent(args: argparse.Namespace) -> None:
    TMP.mkdir(parents=True, exist_ok=True)
    sizes = [50] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
    results: dict[str, Any] = {"nested": [], "crossed": None}
    try:
        for districts in sizes:
            rows = districts * 1600
            want_lmer = not args.no_lmer and districts in LMER_SIZES
            want_sm = not args.no_statsmodels and districts == 50
            csv = TMP / f"seed_{districts}.csv"
            repeat = 1 if rows >= 8_000_000 else args.repeat
            log(f"hlm at {rows:,} rows (fresh subprocess, best of {repeat})")
            argv = ["--child", "hlm", "--districts", str(districts), "--repeat", str(repeat)]
            if want_lmer or want_sm:
                argv += ["--csv-out", str(csv)]
            h, note = run_child(argv, timeout=1800)
            entry: dict[str, Any] = {
                "districts": districts,
                "rows": rows,
                "hlm": h,
                "hlm_note": note,
                "lmer": None,
                "lmer_note": "not run at this size",
                "sm": None,
                "sm_note": "not run at this size",
            }
            if h and want_lmer:
                log(f"lmer at {rows:,} rows")
                entry["lmer"], entry["lmer_note"] = run_lmer(csv, NESTED)
                if entry["lmer"]:
                    entry["agree"] = agreement(h["fit"], entry["lmer"])
                    log(f"lmer {entry['lmer']['elapsed']:.2f} s; agreement {entry['agree']}")
            if h and want_sm:
                log(f"statsmodels MixedLM at {rows:,} rows (stopped after {STATSMODELS_TIMEOUT_S} s)")
                entry["sm"], entry["sm_note"] = run_child(
                    ["--child", "statsmodels", "--csv-in", str(csv)], timeout=STATSMODELS_TIMEOUT_S
                )
            csv.unlink(missing_ok=True)
            results["nested"].append(entry)
        if not args.no_crossed:
            csv = TMP / "crossed.csv"
            crossed_frame().to_csv(csv, index=False)
            log("crossed model: hlm")
            h, note = run_child(["--child", "hlm", "--csv-in", str(csv), "--repeat", str(args.repeat)], 1200)
            c: dict[str, Any] = {"hlm": h, "hlm_note": note, "lmer": None, "lmer_note": "not run"}
            if h and not args.no_lmer:
                log("crossed model: lmer")
                c["lmer"], c["lmer_note"] = run_lmer(csv, CROSSED)
                if c["lmer"]:
                    c["agree"] = agreement(h["fit"], c["lmer"])
            if not args.no_one_thread:
                log("crossed model: hlm with OPENBLAS_NUM_THREADS=1 (diagnostic)")
                c["hlm1"], c["hlm1_note"] = run_child(
                    ["--child", "hlm", "--csv-in", str(csv), "--repeat", str(args.repeat)], 1200, env=ONE_THREAD
                )
            csv.unlink(missing_ok=True)
            results["crossed"] = c
    finally:
        for p in TMP.glob("*.csv"):
            p.unlink(missing_ok=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(render(results, args))


def render(res: dict[str, Any], args: argparse.Namespace) -> str:
    import numpy as np
    import pandas as pd

    L: list[str] = []
    lme4 = next((e["lmer"]["lme4"] for e in res["nested"] + [res["crossed"] or {}] if e.get("lmer")), None)
    rver = next((e["lmer"]["R"] for e in res["nested"] + [res["crossed"] or {}] if e.get("lmer")), None)
    smv = next((e["sm"]["version"] for e in res["nested"] if e.get("sm")), None)
    L.append("## Core: 4-level nested and 3-factor crossed random-intercept models (REML)\n")
    L.append(
        f"Python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}"
        + (f", R {rver} with lme4 {lme4}" if lme4 else ", lme4 not available")
        + (f", statsmodels {smv}" if smv else "")
        + f"; load average {os.getloadavg()[0]:.1f} at the end."
        + (" **--quick mode** (80,000 rows and the crossed model only)." if args.quick else "")
    )
    L.append(
        f"\nNested model `{NESTED}` on the seed design (`examples/seed.toml`, `hlm.simulate` seed 1). "
        f"hlm: best of {args.repeat} fits (1 at 8,000,000 rows) in a fresh subprocess per size, after a "
        "warm-up fit on 3,200 rows; wall seconds of `hlm.fit` on an in-memory pandas frame, CPU seconds "
        'in brackets. Floor: `df.groupby("student_id")[["perform", "tutoring"]].sum()` in the same '
        "process, best of 4. lmer: one `lmer()` call timed with `system.time` (elapsed; user+sys in "
        "brackets), run right after hlm on the same rows. statsmodels `MixedLM` (groups = dist_id, "
        "variance components for school, teacher, student), one fit, stopped after "
        f"{STATSMODELS_TIMEOUT_S} s.\n"
    )
    L.append("| rows | hlm s | hlm evals | floor s | hlm / floor | lmer s | lmer evals | lmer / hlm | statsmodels s |")
    L.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for e in res["nested"]:
        h, r, sm = e["hlm"], e["lmer"], e["sm"]
        if not h:
            L.append(f"| {e['rows']:,} | {e['hlm_note']} | | | | | | | |")
            continue
        th, fl = min(h["hlm_wall"]), min(h["floor"])
        hc = h["hlm_cpu"][int(np.argmin(h["hlm_wall"]))]
        lm = f"{r['elapsed']:.2f} ({r['cpu']:.2f})" if r else e["lmer_note"]
        smt = f"{sm['wall']:.1f}" if sm else e["sm_note"]
        L.append(
            f"| {e['rows']:,} | {th:.3f} ({hc:.3f}) | {h['fit']['feval']} | {fl:.3f} | {ratio(th, fl)} | "
            f"{lm} | {r['feval'] if r else ''} | {ratio(r['elapsed'] if r else None, th)} | {smt} |"
        )
    L.append(
        "\nAll hlm wall times (s): "
        + "; ".join(
            f"{e['rows']:,}: " + ", ".join(f"{t:.3f}" for t in e["hlm"]["hlm_wall"]) for e in res["nested"] if e["hlm"]
        )
        + ". Floor times (s): "
        + "; ".join(
            f"{e['rows']:,}: " + ", ".join(f"{t:.3f}" for t in e["hlm"]["floor"]) for e in res["nested"] if e["hlm"]
        )
        + "."
    )

    L.append("\n### Peak memory of hlm (fresh subprocess per size)\n")
    L.append(
        "RSS before the fits = interpreter + libraries + the frame, after a warm-up fit; peak during fits = "
        "VmHWM reset just before the fits; increment = the memory the fit itself adds over the frame.\n"
    )
    L.append(
        "| rows | frame MiB | RSS before fits MiB | peak RSS during fits MiB | increment MiB | child ru_maxrss MiB |"
    )
    L.append("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for e in res["nested"]:
        h = e["hlm"]
        if not h:
            continue
        inc = h["peak_fit_mib"] - h["rss_before_mib"] if h["peak_fit_mib"] and h["rss_before_mib"] else None
        L.append(
            f"| {e['rows']:,} | {h['data_mib']:.0f} | {fmt(h['rss_before_mib'], 0)} | "
            f"{fmt(h['peak_fit_mib'], 0)} | {fmt(inc, 0)} | {h['maxrss_mib']:.0f} |"
        )

    L.append("\n### Agreement of hlm with lmer (REML criterion within 1e-6 relative, SDs within 1e-4 relative)\n")
    L.append(
        "| data | hlm REML criterion | lmer REML criterion | rel. diff | max SD rel. diff (term) | "
        "max fixef abs. diff | agree |"
    )
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    rows_agree = [(f"nested, {e['rows']:,} rows", e) for e in res["nested"] if e.get("agree")]
    if res["crossed"] and res["crossed"].get("agree"):
        rows_agree.append(("crossed, 73,421 rows", res["crossed"]))
    for label, e in rows_agree:
        a = e["agree"]
        if "obj_rel" not in a:
            L.append(f"| {label} | | | | {a['note']} | | no |")
            continue
        L.append(
            f"| {label} | {e['hlm']['fit']['reml_criterion']:.6f} | {e['lmer']['reml_criterion']:.6f} | "
            f"{a['obj_rel']:.1e} | {a['sd_rel']:.1e} ({a['sd_worst']}) | {a['fixef_abs']:.1e} | "
            f"{'yes' if a['ok'] else 'NO'} |"
        )
    for e in res["nested"]:
        sm = e.get("sm")
        if sm:
            L.append(
                f"\nstatsmodels at {e['rows']:,} rows: REML criterion {sm['reml_criterion']:.4f} "
                f"(hlm {e['hlm']['fit']['reml_criterion']:.4f}), SDs "
                + ", ".join(f"{k} {v:.4f}" for k, v in sm["sds"].items())
                + f", converged {sm['converged']}."
            )

    c = res["crossed"]
    if c:
        L.append(f"\n### Crossed: `{CROSSED}`\n")
        L.append(
            "Synthetic InstEval-like data: 73,421 rows; s 3,000, d 1,100, dept 30 levels assigned at random; "
            "y = 3 + s + d + dept + e with SDs 0.3, 0.5, 0.1, 1.2. hlm best of "
            f"{len(c['hlm']['hlm_wall']) if c['hlm'] else args.repeat} fits in a fresh subprocess (fewer "
            f"repeats when they take over {REPEAT_BUDGET_S} s); lmer one call right after, on the same CSV.\n"
        )
        L.append("| hlm s | hlm evals | lmer s | lmer evals | lmer / hlm |")
        L.append("| ---: | ---: | ---: | ---: | ---: |")
        h, r = c["hlm"], c["lmer"]
        if h:
            th = min(h["hlm_wall"])
            hc = h["hlm_cpu"][int(np.argmin(h["hlm_wall"]))]
            lm = f"{r['elapsed']:.2f} ({r['cpu']:.2f})" if r else c["lmer_note"]
            L.append(
                f"| {th:.3f} ({hc:.3f}) | {h['fit']['feval']} | {lm} | {r['feval'] if r else ''} | "
                f"{ratio(r['elapsed'] if r else None, th)} |"
            )
            L.append(
                "\nhlm SDs: "
                + ", ".join(f"{g} {s:.4f}" for g, s in zip(h["fit"]["groups"], h["fit"]["sdcor"]))
                + f"; all hlm wall times (s): {', '.join(f'{t:.3f}' for t in h['hlm_wall'])}."
            )
        else:
            L.append(f"| {c['hlm_note']} | | | | |")
        h1 = c.get("hlm1")
        if h1:
            th1 = min(h1["hlm_wall"])
            hc1 = h1["hlm_cpu"][int(np.argmin(h1["hlm_wall"]))]
            L.append(
                f"\nDiagnostic, same data, hlm with `OPENBLAS_NUM_THREADS=1` (best of {len(h1['hlm_wall'])}): "
                f"{th1:.3f} s ({hc1:.3f} s CPU), {h1['fit']['feval']} evaluations"
                + (f"; lmer / hlm = {ratio(r['elapsed'], th1)}" if r else "")
                + "."
            )
        elif "hlm1_note" in c:
            L.append(f"\nDiagnostic hlm with `OPENBLAS_NUM_THREADS=1`: {c['hlm1_note']}.")

    L.append("\n### Targets\n")
    by = {e["districts"]: e for e in res["nested"]}

    def lmer_target(d: int, key: str, label: str) -> None:
        e = by.get(d)
        if not e or not e["hlm"]:
            return
        if not e["lmer"]:
            L.append(f"- {label}: not measured ({e['lmer_note']}).")
            return
        x = e["lmer"]["elapsed"] / min(e["hlm"]["hlm_wall"])
        xc = e["lmer"]["cpu"] / e["hlm"]["hlm_cpu"][int(np.argmin(e["hlm"]["hlm_wall"]))]
        ok = "met" if x >= TARGET[key] else "NOT met"
        L.append(f"- {label} (>= {TARGET[key]:.0f}x): **{ok}**, {x:,.1f}x (CPU-time ratio {xc:,.1f}x).")

    lmer_target(50, "lmer80k", "hlm vs lmer at 80,000 rows")
    lmer_target(500, "lmer800k", "hlm vs lmer at 800,000 rows")
    e = by.get(5000)
    if e and e["hlm"]:
        x = min(e["hlm"]["hlm_wall"]) / min(e["hlm"]["floor"])
        L.append(
            "- hlm within 5x the group-by floor at 8,000,000 rows: "
            f"**{'met' if x <= TARGET['floor8m'] else 'NOT met'}**, "
            f"{x:.2f}x ({min(e['hlm']['hlm_wall']):.2f} s vs {min(e['hlm']['floor']):.2f} s)."
        )
    if c and c["hlm"]:
        if c["lmer"]:
            x = c["lmer"]["elapsed"] / min(c["hlm"]["hlm_wall"])
            L.append(
                f"- crossed model, hlm vs lmer (>= 10x): **{'met' if x >= TARGET['crossed'] else 'NOT met'}**, "
                f"{x:,.1f}x."
            )
        else:
            L.append(f"- crossed model vs lmer: not measured ({c['lmer_note']}).")
    agrees = [(lbl, e["agree"]["ok"]) for lbl, e in rows_agree]
    if agrees:
        bad = [lbl for lbl, ok in agrees if not ok]
        L.append(
            f"- agreement with lmer: **{'met' if not bad else 'NOT met'}**"
            + (f" (fails: {', '.join(bad)})" if bad else f" on all {len(agrees)} comparisons")
            + "."
        )
    return "\n".join(L)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="80,000 rows and the crossed model only")
    ap.add_argument("--sizes", default="50,500,5000", help="districts per size (1,600 rows each)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-lmer", action="store_true")
    ap.add_argument("--no-statsmodels", action="store_true")
    ap.add_argument("--no-crossed", action="store_true")
    ap.add_argument(
        "--no-one-thread", action="store_true", help="skip the extra crossed hlm run with OPENBLAS_NUM_THREADS=1"
    )
    ap.add_argument(
        "--json",
        default=str(ROOT / "benchmarks" / "out" / "core.json"),
        help="also write the raw results as JSON here (default benchmarks/out/core.json)",
    )
    ap.add_argument("--render", metavar="JSON", help="only print the Markdown for results saved by --json")
    ap.add_argument("--child", choices=["hlm", "statsmodels"], help=argparse.SUPPRESS)
    ap.add_argument("--districts", type=int, default=50, help=argparse.SUPPRESS)
    ap.add_argument("--csv-in", help=argparse.SUPPRESS)
    ap.add_argument("--csv-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.render:
        print(render(json.loads(Path(args.render).read_text()), args))
    elif args.child == "hlm":
        print(json.dumps(child_hlm(args)))
    elif args.child == "statsmodels":
        print(json.dumps(child_statsmodels(args)))
    else:
        parent(args)


if __name__ == "__main__":
    main()
