"""A study of a two-stage sample with informative PPS selection of schools: the unweighted
ML intercept is biased (schools with large random intercepts are over-represented) and the
pseudo-ML intercept with the sampling weights is not, within Monte Carlo error."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import hlm
from hlm.simulate import Design

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "two_stage.toml"
MODEL = "y ~ x + (1|school_id)"


def test_weighting_removes_the_informative_selection_bias() -> None:
    design = Design.from_toml(EXAMPLE).set("levels.school.n", 300)
    models = [MODEL, f"pweights(w_student, w_school): {MODEL}"]
    result = hlm.study(design, models, reps=100, seed=7, n_jobs=1, intervals=False, reml=False)
    s = result.summary().set_index(["model", "parameter"])
    plain, weighted = s.loc[(models[0], "intercept")], s.loc[(models[1], "intercept")]
    for row in (plain, weighted):
        assert row["n"] == 100
    mcse = {k: r["sd"] / np.sqrt(r["n"]) for k, r in (("plain", plain), ("weighted", weighted))}
    assert plain["bias"] > 10 * mcse["plain"]  # E[u | selected] > 0
    assert abs(weighted["bias"]) < 3 * mcse["weighted"]
    assert plain["coverage"] < 0.5 and weighted["coverage"] > 0.85
    slope = s.loc[(models[1], "x")]
    assert abs(slope["bias"]) < 3 * slope["sd"] / np.sqrt(slope["n"])
