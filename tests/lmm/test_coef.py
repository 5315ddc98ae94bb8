"""``fit.coef()``: lme4's per-group coefficients (fixed effects plus conditional modes).

The expected values are R's, computed once with R 4.2.2 / lme4 1.1.31 (Debian packages) and
pasted here:

    coef(lmer(Reaction ~ Days + (Days | Subject), sleepstudy))$Subject
    coef(lmer(Reaction ~ Days + (1 | Subject), sleepstudy))$Subject[1:3, ]
    coef(lmer(Reaction ~ 1 + (0 + Days | Subject), sleepstudy))$Subject[1:2, ]
    coef(glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial,
               control = glmerControl(tolPwrss = 1e-12)))$herd[c(1, 2, 15), ]

Tolerance: 1e-3 absolute on reaction times of about 250 ms (SEs about 10; hlm's and lme4's
optima agree to about 1e-4 here), 1e-4 absolute on the logit scale.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hlm
from support import dataset

# R: coef(lmer(Reaction ~ Days + (Days | Subject), sleepstudy))$Subject
SLOPES = {
    "308": (253.663655798386, 19.666261725161888),
    "309": (211.006366769680, 1.847605344352781),
    "310": (212.444695890927, 5.018429489797847),
    "330": (275.095724415215, 5.652935638628115),
    "331": (273.665417437513, 7.397374347932215),
    "332": (260.444672745500, 10.195108964797681),
    "333": (268.245613462980, 10.243649876446474),
    "334": (244.172489749136, 11.541867608503988),
    "335": (251.071436433924, -0.284879217034328),
    "337": (286.295591677570, 19.095551117562771),
    "349": (226.194876243092, 11.640718130296785),
    "350": (238.335070695563, 17.081503767932304),
    "351": (255.982969027642, 7.452023877948421),
    "352": (272.268783021873, 14.003287082473239),
    "369": (254.680570470192, 11.339500831765552),
    "370": (225.792105541755, 15.289770912612118),
    "371": (252.212150935586, 9.479129737420495),
    "372": (263.719696956196, 11.751308036128554),
}


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    frame = dataset("sleepstudy")
    return frame.assign(Subject=frame["Subject"].astype(str))


def test_random_slopes_match_lme4(sleep):
    table = hlm.fit("Reaction ~ Days + (Days | Subject)", sleep).coef()
    assert list(table) == ["Subject"]
    coef = table["Subject"]
    assert list(coef.columns) == ["(Intercept)", "Days"] and coef.index.name == "Subject"
    expected = pd.DataFrame.from_dict(SLOPES, orient="index", columns=["(Intercept)", "Days"])
    np.testing.assert_allclose(coef.loc[list(SLOPES)].to_numpy(), expected.to_numpy(), rtol=0, atol=1e-3)


def test_stata_syntax_names_the_intercept_cons(sleep):
    coef = hlm.fit("Reaction Days || Subject: Days, cov(unstructured)", sleep, reml=True).coef()["Subject"]
    assert list(coef.columns) == ["_cons", "Days"]
    np.testing.assert_allclose(coef.loc["309"].to_numpy(), SLOPES["309"], rtol=0, atol=1e-3)


def test_fixed_effect_without_random_effect_is_constant(sleep):
    coef = hlm.fit("Reaction ~ Days + (1 | Subject)", sleep).coef()["Subject"]
    r = {"308": 292.188814688115, "309": 173.555551026070, "310": 188.296537434511}
    np.testing.assert_allclose(coef.loc[list(r), "(Intercept)"], list(r.values()), rtol=0, atol=1e-3)
    np.testing.assert_allclose(coef["Days"], 10.467285959596, rtol=0, atol=1e-6)


def test_random_effect_without_fixed_effect_comes_first(sleep):
    coef = hlm.fit("Reaction ~ 1 + (0 + Days | Subject)", sleep).coef()["Subject"]
    assert list(coef.columns) == ["Days", "(Intercept)"]  # lme4's order
    np.testing.assert_allclose(coef.loc["308"], [19.75923414150223, 254.418268777737], rtol=0, atol=1e-3)
    np.testing.assert_allclose(coef.loc["309"], [-5.42509795951871, 254.418268777737], rtol=0, atol=1e-3)


def test_one_frame_per_grouping_factor():
    fit = hlm.fit("strength ~ 1 + (1 | batch/cask)", dataset("Pastes"))
    table, ranef = fit.coef(), fit.ranef()
    assert list(table) == list(pd.unique(ranef["group"]))
    for group, coef in table.items():
        modes = ranef[ranef["group"] == group].set_index("level")["estimate"]
        assert coef.index.name == group and len(coef) == len(modes)
        np.testing.assert_allclose(coef["(Intercept)"].to_numpy(), fit.fixef.iloc[0] + modes.loc[coef.index].to_numpy())


def test_glmm_coef_matches_glmer():
    frame = dataset("cbpp").astype({"herd": str, "period": str})
    fit = hlm.fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", frame, family="binomial")
    coef = fit.coef()["herd"]
    assert list(coef.columns) == ["(Intercept)", "period2", "period3", "period4"]
    r = {  # R's rows 1, 2, 15
        "1": [-0.808511378780607, -0.992315880332837, -1.12866414695723, -1.58031559790539],
        "2": [-1.697435457864018, -0.992315880332837, -1.12866414695723, -1.58031559790539],
        "15": [-1.929016414037743, -0.992315880332837, -1.12866414695723, -1.58031559790539],
    }
    np.testing.assert_allclose(coef.loc[list(r)].to_numpy(), np.array(list(r.values())), rtol=0, atol=1e-4)
