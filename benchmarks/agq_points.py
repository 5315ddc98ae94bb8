"""Nested adaptive quadrature on the seed's binary design (issue 15): the log-likelihood at 7, 15
and 30 points per level and the CPU seconds of one evaluation, at fixed parameters.

    OPENBLAS_NUM_THREADS=1 python benchmarks/agq_points.py [POINTS]   (default 7,15,30)

Models: districts / schools / teachers (3 random intercepts) at the point (1.1, 0.75, 0.72,
0.33, 0.46), and with students (4) at glmer's Laplace estimates.  Prints a Markdown table; run
it from two checkouts back to back to compare rules.  Each row is a fresh objective evaluated
twice (the first pays numba's compilation and the rule's search for its Chebyshev points), the
second timed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hlm.glmm.agq_nested import nested_agq_deviance
from hlm.glmm.family import Family
from hlm.glmm.frame import glmm_frame
from hlm.glmm.optimize import Objective

ROOT = Path(__file__).resolve().parents[1]
THREE = "pass ~ tutoring + (1 | dist_id/school_id/teach_id)"
FOUR = "pass ~ tutoring + (1 | dist_id/school_id/teach_id/student_id)"


def main() -> None:
    data = pd.read_csv(ROOT / "tests" / "data" / "seed_D5.csv")
    nodes = [int(k) for k in (sys.argv[1] if len(sys.argv) > 1 else "7,15,30").split(",")]
    ref = json.loads((ROOT / "tests" / "reference" / "seed_D5__glmm_nested4_binary_laplace.json").read_text())
    points = {
        THREE: np.array([1.1, 0.75, 0.72, 0.33, 0.46]),
        FOUR: np.r_[list(ref["theta"].values()), [f["estimate"] for f in ref["fixef"]]],
    }
    family = Family.of("binomial", None)
    print("| model | points | log-likelihood | CPU s per evaluation |\n| --- | ---: | ---: | ---: |")
    for model, x in points.items():
        for K in nodes:
            obj = Objective(family, glmm_frame(model, data, family), K)
            nested_agq_deviance(obj, x)
            t = time.process_time()
            value = -nested_agq_deviance(obj, x) / 2
            print(f"| {model.split('(1 | ')[1][:-1]} | {K} | {value:.9f} | {time.process_time() - t:.3f} |", flush=True)


if __name__ == "__main__":
    main()
