"""Post-fit inference vs the fit itself (issue 3): the seed's 4-level model at 800,000 rows.

Times, in one process and on the same fit, `hlm.fit`, then the variance-component SEs
(`fit.varcomp()`), Satterthwaite df (`fit.tidy(ddf="satterthwaite")`), the ICCs with CIs
(`fit.icc()`) and the conditional modes (`fit.ranef()`), three repetitions, and prints a
Markdown section.  `--quick` uses 80,000 rows.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import hlm
from hlm.cli.demo_script import LME4, seed_design
from hlm.simulate import simulate


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="80,000 rows")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    districts = 50 if args.quick else 500
    frame = simulate(seed_design(districts), seed=1)
    warnings.simplefilter("ignore")
    hlm.fit(LME4, frame)  # warm-up
    steps = ["fit", "varcomp()", "tidy(ddf='satterthwaite')", "icc()", "ranef()"]
    rows: dict[str, list[float]] = {s: [] for s in steps}
    for _ in range(args.repeat):
        box = {}
        rows["fit"].append(_timed(lambda box=box: box.setdefault("fit", hlm.fit(LME4, frame))))
        fit = box["fit"]
        rows["varcomp()"].append(_timed(fit.varcomp))
        rows["tidy(ddf='satterthwaite')"].append(_timed(lambda fit=fit: fit.tidy(ddf="satterthwaite")))
        rows["icc()"].append(_timed(fit.icc))
        rows["ranef()"].append(_timed(fit.ranef))
    med = {s: statistics.median(v) for s, v in rows.items()}
    post = sum(med[s] for s in steps[1:])
    print(
        f"## Post-fit inference vs the fit (issue 3)\n\n{len(frame):,} rows, `{LME4}`, REML; "
        f"median of {args.repeat} repetitions, each on a fresh fit, in one process.\n"
    )
    print("| step | seconds (median) | all repetitions | / fit |\n| --- | ---: | --- | ---: |")
    for s in steps:
        print(f"| `{s}` | {med[s]:.3f} | {', '.join(f'{v:.3f}' for v in rows[s])} | {med[s] / med['fit']:.2f} |")
    print(f"| all post-fit steps | {post:.3f} | | {post / med['fit']:.2f} |\n")
    verdict = "met" if post <= med["fit"] else "NOT met"
    print(
        f"Target (all post-fit inference costs no more than the fit): **{verdict}**, {post / med['fit']:.2f}x the fit."
    )


if __name__ == "__main__":
    main()
