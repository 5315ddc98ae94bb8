"""Benchmark: general models (crossed random slopes, many theta, small models, crossed at scale).

    python benchmarks/bench_general.py [--quick] [--no-lmer] [--lmer-timeout SECONDS] [--repeat N] [--no-parquet]

Models (REML unless noted), each fitted by hlm in this process (best of ``--repeat`` within a
time budget, after a warm-up fit of a tiny model) and, when ``Rscript`` with lme4 is on the
PATH, by ``lmer`` once in an Rscript subprocess that reads the same CSV and times only the
``lmer()`` call (``system.time``, stopped after ``--lmer-timeout`` seconds):

* kb07-like 20 theta: ``rt ~ spkr*prec*load + (1+spkr+prec+load | subj) + (1+spkr+prec+load | item)``
  on tests/data/kb07like.csv (56 subjects x 32 items, 1,792 rows);
* kb07-like maximal, 72 theta: ``(1 + spkr*prec*load | subj) + (1 + spkr*prec*load | item)``
  (lmer takes 15 minutes on it: its time and criterion are read from the stored lme4 fixture);
* sleepstudy ``Reaction ~ Days + (Days | Subject)`` (180 rows);
* ``y ~ x + (x | subj)``, 2,000 subjects, 100,000 rows (simulated);
* ``y ~ x + (x | school/cls)``, 500 schools x 10 classes, 200,000 rows (simulated);
* InstEval ``y ~ service + (1|s) + (1|d) + (1|dept:service)``: R's ``lme4::InstEval`` exported
  by Rscript when R is present, else a simulated frame of the same shape (said in the table);
* ``y ~ 1 + (1|u) + (1|i)``, 1,000,000 rows, 6,000 x 3,700 crossed (the ml-1m shape,
  simulated); skipped with ``--quick``, and lmer is not run on it (over 15 minutes);
* the same model at 10,000,000 rows, 60,000 x 20,000, fitted from a Parquet file through
  DuckDB in a process of its own (:mod:`crossed_parquet`: its time and peak memory); skipped
  with ``--quick`` or ``--no-parquet``, lmer not run.

The table gives hlm's and lmer's seconds, the ratio, both criteria and their difference
(hlm's minus lmer's: negative is a lower optimum) and the benchmark process's peak resident
memory after the model (``ru_maxrss``: data, fits and everything before it; the models run
from small to large, so the last row is the 1,000,000-row fit's peak).  Prints a Markdown section.
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
TMP = Path("/tmp/bench_general")
KB07 = ROOT / "tests" / "data" / "kb07like.csv"
SLEEP = ROOT / "tests" / "data" / "sleepstudy.csv"
MAXIMAL_REF = ROOT / "tests" / "reference" / "kb07like__crossed_maximal_REML.json"
BUDGET_S = 30.0  # stop repeating a model's hlm fits once they have taken this long


def _slopes(n_groups: int, per: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    x = rng.normal(size=len(g))
    b0, b1 = rng.normal(0, 1.0, n_groups), rng.normal(0, 0.5, n_groups)
    y = 2 + 0.5 * x + b0[g] + b1[g] * x + rng.normal(0, 1, len(g))
    return pd.DataFrame({"y": y, "x": x, "subj": [f"s{i}" for i in g]})


def _nested_slopes(seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    school = np.repeat(np.arange(500), 400)
    cls = school * 10 + np.tile(np.repeat(np.arange(10), 40), 500)
    x = rng.normal(size=len(school))
    y = (
        1
        + 0.3 * x
        + rng.normal(0, 1, 500)[school]
        + rng.normal(0, 0.3, 500)[school] * x
        + rng.normal(0, 0.5, 5000)[cls]
        + rng.normal(0, 0.2, 5000)[cls] * x
        + rng.normal(0, 1, len(x))
    )
    return pd.DataFrame({"y": y, "x": x, "school": school.astype(str), "cls": (cls % 10).astype(str)})


def _crossed(n: int, n_u: int, n_i: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    u = rng.integers(0, n_u, n)
    i = np.minimum(rng.zipf(1.3, n) - 1, n_i - 1)  # popular items, as ratings are
    y = 3 + rng.normal(0, 0.5, n_u)[u] + rng.normal(0, 0.4, n_i)[i] + rng.normal(0, 1, n)
    return pd.DataFrame({"y": y, "u": u, "i": i})


def _insteval(use_r: bool) -> tuple[pd.DataFrame, str]:
    path = TMP / "InstEval.csv"
    if use_r:
        code = (
            f'suppressMessages(library(lme4)); write.csv(InstEval[, c("s","d","dept","service","y")], '
            f'"{path}", row.names = FALSE)'
        )
        if subprocess.run(["Rscript", "-e", code], capture_output=True).returncode == 0:
            frame = pd.read_csv(path, dtype={"s": str, "d": str, "dept": str, "service": str})
            return frame, "lme4::InstEval"
    rng = np.random.default_rng(4)
    n = 73_421
    s, d = rng.integers(0, 2972, n), rng.integers(0, 1128, n)
    dept, service = rng.integers(0, 14, 1128)[d], rng.integers(0, 2, n)
    y = 3 + 0.1 * service + rng.normal(0, 0.3, 2972)[s] + rng.normal(0, 0.5, 1128)[d] + rng.normal(0, 1.2, n)
    frame = pd.DataFrame(
        {
            "s": s.astype(str),
            "d": d.astype(str),
            "dept": dept.astype(str),
            "service": service.astype(str),
            "y": np.clip(np.round(y), 1, 5),
        }
    )
    return frame, "simulated (InstEval's shape)"


def _models(quick: bool, use_r: bool) -> list[tuple[str, str, pd.DataFrame, bool]]:
    kb07 = pd.read_csv(KB07)
    out = [
        (
            "kb07-like, 20 theta",
            "rt ~ spkr*prec*load + (1+spkr+prec+load | subj) + (1+spkr+prec+load | item)",
            kb07,
            True,
        ),
        (
            "kb07-like maximal, 72 theta",
            "rt ~ 1 + spkr*prec*load + (1 + spkr*prec*load | subj) + (1 + spkr*prec*load | item)",
            kb07,
            False,
        ),
        ("sleepstudy (Days | Subject)", "Reaction ~ Days + (Days | Subject)", pd.read_csv(SLEEP), True),
        ("(x | subj), 2,000 subjects, 100,000 rows", "y ~ x + (x | subj)", _slopes(2000, 50, 1), True),
        ("(x | school/cls), 500 x 10, 200,000 rows", "y ~ x + (x | school/cls)", _nested_slopes(), True),
    ]
    inst, source = _insteval(use_r)
    out.append((f"InstEval, {source}", "y ~ service + (1|s) + (1|d) + (1|dept:service)", inst, True))
    if not quick:
        out.append(
            (
                "(1|u) + (1|i), 1,000,000 rows, 6,000 x 3,700",
                "y ~ 1 + (1|u) + (1|i)",
                _crossed(1_000_000, 6000, 3700),
                False,
            )
        )
    return out


def _time_hlm(formula: str, frame: pd.DataFrame, repeat: int) -> tuple[float, float, bool]:
    import hlm

    best, spent, fit = np.inf, 0.0, None
    for _ in range(repeat):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            fit = hlm.fit(formula, frame)
            dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
        if spent > BUDGET_S:
            break
    return best, float(fit.reml_criterion), bool(fit.converged or fit.singular)


def _time_lmer(formula: str, frame: pd.DataFrame, timeout: float) -> tuple[float | None, float | None, str]:
    csv, out = TMP / "model.csv", TMP / "lmer.json"
    frame.to_csv(csv, index=False)
    out.unlink(missing_ok=True)
    factors = [c for c in frame.columns if frame[c].dtype == object]
    conv = "".join(f"d${c} <- factor(d${c}); " for c in factors)
    code = (
        f'suppressMessages(library(lme4)); d <- read.csv("{csv}"); {conv}'
        f"tm <- system.time(m <- lmer({formula}, data = d, REML = TRUE)); "
        f'cat(sprintf(\'{{"seconds": %.6f, "objective": %.10f}}\', tm[["elapsed"]], '
        f'REMLcrit(m)), file = "{out}")'
    )
    try:
        subprocess.run(["Rscript", "-e", code], capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, None, f"> {timeout:.0f} s (stopped)"
    if not out.exists():
        return None, None, "failed"
    res = json.loads(out.read_text())
    return res["seconds"], res["objective"], f"{res['seconds']:.3g}"


def _crossed_parquet() -> str:
    """The 10,000,000-row crossed row, fitted from Parquet by DuckDB in its own process."""
    from crossed_parquet import FULL_ROWS, crossed_parquet_row

    print("hlm: (1|u) + (1|i) from Parquet via DuckDB, 10,000,000 rows", file=sys.stderr, flush=True)
    r = crossed_parquet_row(FULL_ROWS)
    return (
        f"| (1\\|u) + (1\\|i) from Parquet via DuckDB, {r['users']:,} x {r['items']:,} (own process) | "
        f"{r['rows']:,} | {r['seconds']:.3g} | not run | | {r['criterion']:.4f} | | "
        f"{'yes' if r['converged'] else 'no'} | {r['peak_mb']:,.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-lmer", action="store_true")
    parser.add_argument("--lmer-timeout", type=float, default=600.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-parquet", action="store_true", help="skip the 10,000,000-row Parquet fit")
    args = parser.parse_args()
    TMP.mkdir(parents=True, exist_ok=True)
    use_r = not args.no_lmer and shutil.which("Rscript") is not None
    import hlm

    with warnings.catch_warnings():  # warm-up: imports and compiled kernels
        warnings.simplefilter("ignore")
        hlm.fit("Reaction ~ Days + (Days | Subject)", pd.read_csv(SLEEP))
    rows = []
    for name, formula, frame, with_lmer in _models(args.quick, use_r):
        print(f"hlm: {name}", file=sys.stderr, flush=True)
        secs, crit, ok = _time_hlm(formula, frame, args.repeat)
        lmer_s, lmer_crit, lmer_txt = None, None, "not run"
        if "maximal" in name:  # 15 minutes of lmer: its stored fixture gives time and criterion
            ref = json.loads(MAXIMAL_REF.read_text())
            lmer_s, lmer_crit = ref["optimizer"]["fit_seconds"], ref["objective"]
            lmer_txt = f"{lmer_s:.3g} (stored fixture)"
        elif use_r and with_lmer:
            print(f"lmer: {name}", file=sys.stderr, flush=True)
            lmer_s, lmer_crit, lmer_txt = _time_lmer(formula, frame, args.lmer_timeout)
        ratio = f"{lmer_s / secs:.1f}x" if lmer_s else ""
        diff = f"{crit - lmer_crit:+.2g}" if lmer_crit is not None else ""
        label = name.replace("|", "\\|")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append(
            f"| {label} | {len(frame):,} | {secs:.3g} | {lmer_txt} | {ratio} | {crit:.4f} | {diff} | "
            f"{'yes' if ok else 'no'} | {peak:,.0f} |"
        )
    if not args.quick and not args.no_parquet:
        rows.append(_crossed_parquet())
    print("## General models (hlm vs lmer, REML)\n")
    print("| model | rows | hlm s | lmer s | lmer/hlm | hlm REML criterion | hlm - lmer | converged | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|")
    print("\n".join(rows))
    if not use_r:
        print("\nlmer not run (no Rscript, or --no-lmer): hlm times only.")
    shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
