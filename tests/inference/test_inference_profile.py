"""Profile-likelihood intervals against lme4's ``confint(profile(fit, signames = TRUE))``
(``*__profile_ci.json``): every limit within 1e-3 relative (lme4 interpolates splines; an
SD whose profile never reaches the cutoff gets the limit 0, as lme4)."""

from __future__ import annotations

import numpy as np
import pytest

import hlm
from support import dataset, reference

PROFILE = ["Dyestuff__intercept_ML", "Pastes__nested_ML", "sleepstudy__slope_ML", "Hsb82__ri_ML"]


@pytest.mark.parametrize("name", PROFILE)
def test_profile_matches_lme4(name, fits):
    ref = reference(f"{name}__profile_ci")
    fit = fits(name)
    table = fit.confint(method="profile").set_index("parameter")
    assert set(table.index) == {r["parameter"] for r in ref["intervals"]}
    for row in ref["intervals"]:
        ours = table.loc[row["parameter"]]
        if row["kind"] == "sd":
            assert ours.group == row["group"] and ours.var1 == row["term"]
        if row["kind"] == "cor":
            assert {ours.var1, ours.var2} == set(row["terms"])
        assert ours.estimate == pytest.approx(row["estimate"], rel=1e-3)
        for ours_lim, theirs in ((ours.conf_low, row["lower"]), (ours.conf_high, row["upper"])):
            assert ours_lim == pytest.approx(theirs, rel=1e-3, abs=1e-12), row["parameter"]
        assert ours.method == "profile"
        if row["kind"] == "fixed":
            wald = fit.confint(method="wald").set_index("parameter").loc[row["parameter"]]
            assert wald.conf_low == pytest.approx(row["wald_lower"], rel=1e-5)
            assert wald.conf_high == pytest.approx(row["wald_upper"], rel=1e-5)


def test_reml_fit_is_profiled_on_its_ml_refit():
    """lme4's ``confint(fm1)`` (profile, ``?confint.merMod``) for the REML fit
    ``Reaction ~ Days + (Days | Subject)``: lme4's profile refits by ML (``devfun2``)."""
    fit = hlm.fit("Reaction ~ Days + (Days | Subject)", dataset("sleepstudy"))
    table = fit.confint(method="profile").set_index("parameter")
    expected = {
        ".sig01": (14.3814761, 37.7159953),
        ".sig02": (-0.4815004, 0.6849863),
        ".sig03": (3.8011641, 8.7533546),
        ".sigma": (22.8982669, 28.8579965),
        "(Intercept)": (237.6806955, 265.1295147),
        "Days": (7.3586533, 13.5759187),
    }
    for name, (lo, hi) in expected.items():
        np.testing.assert_allclose([table.loc[name, "conf_low"], table.loc[name, "conf_high"]], [lo, hi], rtol=1e-3)
    assert set(table["method"]) == {"profile (ML refit)"}
    assert "ML refit" in table.attrs["note"] and "estimate" in table.attrs["note"]
    ml = hlm.fit("Reaction ~ Days + (Days | Subject)", dataset("sleepstudy"), reml=False)
    assert table.loc[".sigma", "estimate"] == pytest.approx(ml.sigma, rel=1e-5)  # the ML refit's, as the note says


def test_ml_fit_profile_carries_no_note(fits):
    table = fits("Dyestuff__intercept_ML").confint(method="profile")
    assert set(table["method"]) == {"profile"} and "note" not in table.attrs
