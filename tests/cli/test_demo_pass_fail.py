"""``hlm demo``'s pass/fail step: the four-level logistic fit of pass = perform > 0 and its
latent-scale variance shares.  The true shares are written out here from the seed's SDs
(pass is a threshold of perform: a probit model whose latent shares are perform's variance
shares 4, 9, 16, 25 and 36 over 90)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from hlm.cli.demo_glmm import latent_shares, show_pass_fail
from hlm.cli.demo_script import seed_design
from hlm.simulate import simulate


def test_latent_shares_divide_by_the_logistic_variance() -> None:
    vc = pd.DataFrame(
        {"group": ["b", "a"], "var1": ["(Intercept)"] * 2, "var2": [None, None], "vcov": [1.0, 0.5], "sdcor": [1, 0.7]}
    )
    table = latent_shares(vc, {"a": "outer", "b": "inner"})
    total = 1.5 + math.pi**2 / 3
    assert list(table["level"]) == ["outer", "inner", "residual (logistic)"]
    assert table["share"].tolist() == pytest.approx([0.5 / total, 1.0 / total, math.pi**2 / 3 / total])


def test_demo_prints_the_pass_fail_section_with_plausible_shares() -> None:
    design = seed_design(6)
    lines: list[str] = []
    table = show_pass_fail(simulate(design, seed=2026), design, lines.append)
    text = "\n".join(lines)
    assert "melogit pass tutoring || dist_id: || school_id: || teach_id: || student_id:, laplace" in text
    assert "the first 5 districts, 8,000 rows" in text
    assert "How much of the variance in passing sits at each level (latent scale" in text
    assert table["true share"].tolist() == pytest.approx([4 / 90, 9 / 90, 16 / 90, 25 / 90, 36 / 90])
    share = dict(zip(table["level"], table["share"]))
    assert sum(share.values()) == pytest.approx(1.0)
    assert all(0.0 <= s <= 1.0 for s in share.values())
    # 200 teachers of 40 binary outcomes each: the teacher share is well determined (true 0.178)
    assert abs(share["teacher"] - 16 / 90) < 0.08
    assert 0.3 < share["residual (logistic)"] < 0.75
    assert "converged: True" in text
