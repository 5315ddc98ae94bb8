"""Benchmark: hlm xtreg fe / re against one pandas group-by pass over the same frame.

    python benchmarks/bench_panel.py [--rows 8000000] [--panels N] [--repeat 3]

Simulates y = 1 + 0.5 x1 - 0.25 x2 + u_i + e_it with ``--rows`` rows in ``--panels`` panels
(default rows / 2), times (best of ``--repeat``) one pandas ``groupby(id).sum()`` of
[y, x1, x2], hlm ``xtreg(..., estimator="fe")`` and ``"re"`` (conventional SEs, from the
DataFrame, including model parsing and panel coding), and, when installed, linearmodels
``PanelOLS(entity_effects=True)`` / ``RandomEffects`` and pyfixest ``feols("y ~ x1 + x2 | id")``.
Prints a Markdown section with seconds and the ratio to the pandas group-by.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import numpy as np
import pandas as pd


def simulate(rows: int, panels: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.integers(0, panels, rows)) if rows != 2 * panels else np.repeat(np.arange(panels), 2)
    u = rng.normal(size=panels)[ids]
    x1 = rng.normal(size=rows) + 0.5 * u
    x2 = rng.normal(size=rows)
    y = 1 + 0.5 * x1 - 0.25 * x2 + u + rng.normal(size=rows)
    return pd.DataFrame({"id": ids, "y": y, "x1": x1, "x2": x2})


def best_of(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=8_000_000)
    ap.add_argument("--panels", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-others", action="store_true", help="skip linearmodels and pyfixest")
    args = ap.parse_args()
    rows, panels = args.rows, args.panels or max(args.rows // 2, 1)

    from hlm.panel import xtreg

    df = simulate(rows, panels)
    results: list[tuple[str, float, str]] = []

    t_gb, _ = best_of(lambda: df.groupby("id")[["y", "x1", "x2"]].sum(), args.repeat)
    results.append(("pandas groupby(id)[y, x1, x2].sum()", t_gb, ""))
    t_fe, fe = best_of(lambda: xtreg("y x1 x2", df, panel="id", estimator="fe"), args.repeat)
    results.append(("hlm xtreg fe", t_fe, f"b = {fe.params[0]:.4f}, {fe.params[1]:.4f}"))
    t_re, re = best_of(lambda: xtreg("y x1 x2", df, panel="id", estimator="re"), args.repeat)
    results.append(("hlm xtreg re", t_re, f"b = {re.params[0]:.4f}, {re.params[1]:.4f}"))
    t_cl, cl = best_of(lambda: xtreg("y x1 x2", df, panel="id", estimator="fe", vce="robust"), 1)
    results.append(("hlm xtreg fe, vce(robust) (cluster by id)", t_cl, f"se = {cl.se.iloc[0]:.5f}"))

    if not args.no_others:
        try:
            from linearmodels.panel import PanelOLS, RandomEffects

            def lm_data() -> pd.DataFrame:
                d = df.assign(t=df.groupby("id").cumcount(), const=1.0).set_index(["id", "t"])
                return d

            t_idx, d = best_of(lm_data, 1)
            t_lfe, lfe = best_of(lambda: PanelOLS(d["y"], d[["const", "x1", "x2"]], entity_effects=True).fit(), 1)
            results.append(
                (
                    "linearmodels PanelOLS(entity_effects) (+ set_index)",
                    t_lfe + t_idx,
                    f"b = {lfe.params['x1']:.4f}, {lfe.params['x2']:.4f}",
                )
            )
            t_lre, lre = best_of(lambda: RandomEffects(d["y"], d[["const", "x1", "x2"]]).fit(), 1)
            results.append(
                (
                    "linearmodels RandomEffects (+ set_index)",
                    t_lre + t_idx,
                    f"b = {lre.params['x1']:.4f}, {lre.params['x2']:.4f}",
                )
            )
        except ImportError:
            results.append(("linearmodels", float("nan"), "not installed"))
        except Exception as exc:  # report, do not abort the benchmark
            results.append(("linearmodels", float("nan"), f"failed: {type(exc).__name__}: {exc}"[:80]))
        try:
            import pyfixest as pf

            t_pf, pfit = best_of(lambda: pf.feols("y ~ x1 + x2 | id", data=df, vcov="iid"), 1)
            coef = pfit.coef()
            results.append(("pyfixest feols(y ~ x1 + x2 | id)", t_pf, f"b = {coef['x1']:.4f}, {coef['x2']:.4f}"))
        except ImportError:
            results.append(("pyfixest", float("nan"), "not installed"))
        except Exception as exc:
            results.append(("pyfixest", float("nan"), f"failed: {type(exc).__name__}: {exc}"[:80]))

    print(f"## Panel estimators: {rows:,} rows, {panels:,} panels\n")
    print(
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}, pandas {pd.__version__}; best of {args.repeat} for pandas and hlm "
        "fe/re, one run for the others.\n"
    )
    print("| method | seconds | ratio to pandas group-by | note |")
    print("| --- | ---: | ---: | --- |")
    for name, t, note in results:
        sec = "n/a" if not np.isfinite(t) else f"{t:.3f}"
        ratio = "n/a" if not np.isfinite(t) else f"{t / t_gb:.2f}x"
        print(f"| {name} | {sec} | {ratio} | {note} |")
    ok = t_fe <= 3 * t_gb and t_re <= 3 * t_gb
    print(
        f"\nTarget (fe and re within 3x the group-by): {'met' if ok else 'NOT met'} "
        f"(fe {t_fe / t_gb:.2f}x, re {t_re / t_gb:.2f}x)."
    )


if __name__ == "__main__":
    main()
