"""``hlm demo``'s last step: the seed's design question, checked against the formulas written out here."""

from __future__ import annotations

import math
import re

from scipy import stats

from hlm.cli.demo_script import _design_question


def seed_margin(districts: int) -> float:
    """The district SD's 95% margin in the seed's balanced design (Searle et al. 1992, balanced
    nested ANOVA; delta method): variances 4, 9, 16, 25 and 36 over 5 schools x 8 teachers x
    20 students x 2 semesters."""
    c = 5 * 8 * 20 * 2  # observations per district
    ms_school = 9 * 8 * 20 * 2 + 16 * 20 * 2 + 25 * 2 + 36
    ms_district = ms_school + c * 4
    var_tau2 = 2 / c**2 * (ms_district**2 / (districts - 1) + ms_school**2 / (districts * 4))
    return stats.norm.ppf(0.975) * math.sqrt(var_tau2) / (2 * 4)


def test_demo_answers_the_design_question():
    lines: list[str] = []
    _design_question(20, 1, lines.append)
    needed = int(re.search(r"\+-25%.*?: (\d+) districts", lines[0]).group(1))
    assert seed_margin(needed) <= 0.25 < seed_margin(needed - 1)
    assert f"50 districts give +-{seed_margin(50):.0%}" in lines[0]
    # tutoring at half its effect (1): its SE with 50 districts is about 6 / sqrt(80,000 x 0.16) x 1.2
    # (within-student contrasts), so the power is 1 to three decimals
    assert "Power to detect tutoring at half its effect (1) with 50 districts" in lines[1]
    assert "1.000 (Monte Carlo SE 0.000, 20 simulated" in lines[1]
