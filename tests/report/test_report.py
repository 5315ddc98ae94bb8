"""Stata and lme4 text layouts, HTML, to_dict sections, plots and the CLI options.

Numbers printed in the Stata layout are checked against the R / glmmTMB references at the
printed precision; Stata's display format against the values in the seed's Stata log.
"""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
from matplotlib.figure import Figure
from scipy import stats

import hlm
from hlm.cli import run
from hlm.errors import OptionError
from hlm.report.stata import sg
from hlm.report.text import abbreviate
from support import DATA, dataset, reference


@pytest.mark.parametrize(
    "value,text",
    [
        (1.975427, "1.975427"),
        (0.0668413, ".0668413"),
        (-0.4480866, "-.4480866"),
        (-0.5342478, "-.5342478"),
        (17369.05, "17369.05"),
        (1473.35, "1473.35"),
        (600.8684, "600.8684"),
        (0.0089014, ".0089014"),
        (7.231256, "7.231256"),
        (80000, "80000"),
        (0.0, "0"),
        (float("nan"), "."),
    ],
)
def test_stata_number_display(value, text):
    """The values as the seed's Stata log prints them."""
    assert sg(value) == text


def _fit(formula, data, reml=True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hlm.fit(formula, dataset(data), reml=reml)


def _numbers(line: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d*\.?\d+(?:e[-+]\d+)?", line.split("|")[1])]


def test_stata_layout_sleepstudy_ml():
    fit = _fit("Reaction Days || Subject: Days, cov(unstructured)", "sleepstudy", reml=False)
    text = fit.summary(style="stata")
    lines = text.splitlines()
    assert lines[0].startswith("Mixed-effects ML regression") and lines[0].endswith("Number of obs     =        180")
    assert "Group variable: Subject" in lines[1] and lines[1].endswith("18")
    assert any(line.strip() == "min =         10" for line in lines)
    ref = reference("sleepstudy__slope_ML")
    days = next(line for line in lines if line.strip().startswith("Days |"))
    est, se = _numbers(days)[:2]
    fixef = {r["term"]: r for r in ref["fixef"]}
    assert est == pytest.approx(fixef["Days"]["estimate"], rel=1e-6)
    assert se == pytest.approx(fixef["Days"]["se"], rel=1e-5)
    assert lines.index(days) < lines.index(next(line for line in lines if line.strip().startswith("_cons |")))
    vc = reference("sleepstudy__slope_ML__varcomp_se")
    assert "Subject: Unstructured" in text
    for comp in vc["components"]:
        label = "sd(Days)" if comp["term"] == "Days" else "sd(_cons)"
        row = next(line for line in lines if line.strip().startswith(label))
        got = _numbers(row)
        assert got[0] == pytest.approx(comp["sd"], rel=1e-4)
        assert got[1] == pytest.approx(comp["se_sd"], rel=1e-3)
        assert got[2] == pytest.approx(comp["ci_low"], rel=1e-3)
    corr = next(line for line in lines if line.strip().startswith("corr(Days,_cons)"))
    assert _numbers(corr)[0] == pytest.approx(vc["correlations"][0]["corr"], rel=1e-3)
    lr = vc["lr_test_vs_linear_model"]
    assert f"LR test vs. linear model: chi2(3) = {lr['chi2']:.2f}" in text
    assert "Note: LR test is conservative" in text
    assert re.search(r"Wald chi2\(1\)\s+=\s+\d+\.\d\d", text)
    assert all(len(line) <= 80 for line in lines)


def test_stata_layout_one_component_and_groups_table():
    fit = _fit("Yield || Batch:", "Dyestuff", reml=False)
    text = fit.summary(style="stata")
    case = reference("lrtests_public")["dyestuff_ML_lr_vs_linear"]
    assert f"chibar2(01) = {case['chibar2_01']:.2f}" in text
    assert f"Prob >= chibar2 = {case['p']:.4f}" in text
    assert "Batch: Identity" in text and "Wald chi2(0)      =          ." in text
    assert f"Log likelihood = {sg(case['logLik_mixed'], 9)}" in text

    nested = _fit("strength || batch: || cask:", "Pastes", reml=False).summary(style="stata")
    assert "No. of       Observations per Group" in nested
    rows = [line for line in nested.splitlines() if re.match(r"\s+(batch|cask) \|", line)]
    assert [r.split()[0] for r in rows] == ["batch", "cask"]  # outermost first
    assert rows[0].split()[2:] == ["10", "6", "6.0", "6"] and rows[1].split()[2:] == ["30", "2", "2.0", "2"]
    assert nested.index("batch: Identity") < nested.index("cask: Identity")


def test_stata_layout_lme4_syntax_names_levels_by_variable():
    text = _fit("strength ~ 1 + (1 | batch/cask)", "Pastes").summary(style="stata")
    assert "cask: Identity" in text and "Mixed-effects REML regression" in text
    assert "Log restricted-likelihood" in text


def test_lme4_layout_mirrors_summary_lmer():
    """R's summary(fm1) for sleepstudy (lme4 documentation)."""
    fit = _fit("Reaction ~ Days + (Days | Subject)", "sleepstudy")
    text = fit.summary()
    assert "REML criterion at convergence: 1743.6" in text
    quant = text.splitlines()[text.splitlines().index("Scaled residuals: ") + 2].split()
    np.testing.assert_allclose([float(q) for q in quant], [-3.9536, -0.4634, 0.0231, 0.4634, 5.1793], atol=1e-4)
    assert "Correlation of Fixed Effects:" in text and "(Intr)" in text
    assert re.search(r"Days\s+-0\.138", text)
    with pytest.raises(OptionError):
        fit.summary(style="spss")


def test_abbreviate_like_r():
    assert abbreviate("(Intercept)") == "(Intr)"
    assert abbreviate("Days") == "Days"


def test_html_and_to_dict_sections():
    fit = _fit("Reaction ~ Days + (Days | Subject)", "sleepstudy")
    html = fit._repr_html_()
    assert html.count("<table") == 3 and "Variance share per level" in html and "LR test vs. linear model" in html
    d = fit.to_dict(ranef=True)
    json.dumps(d, allow_nan=False)
    assert {"varcomp", "icc", "r2", "lr_test_linear", "wald_slopes", "ranef"} <= set(d)
    assert len(d["ranef"]) == 36 and d["lr_test_linear"]["df"] == 3
    assert "ranef" not in fit.to_dict()


def test_plots(tmp_path):
    fit = _fit("strength ~ 1 + (1 | batch/cask)", "Pastes")
    fig = fit.plot("caterpillar", file=tmp_path / "cat.png")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert (tmp_path / "cat.png").read_bytes()[:4] == b"\x89PNG"
    fig = fit.plot("variance")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["cask:batch", "batch", "Residual"]
    with pytest.raises(OptionError):
        fit.plot("pie")


def test_caterpillar_of_many_levels_draws_one_band(tmp_path, monkeypatch):
    """Above BAND_LIMIT levels the intervals are one polygon (a line each took 13 s at
    250,000 levels); below it, one line per level."""
    from matplotlib.collections import LineCollection, PolyCollection

    from hlm.report import caterpillar

    fit = _fit("strength ~ 1 + (1 | batch/cask)", "Pastes")
    monkeypatch.setattr(caterpillar, "BAND_LIMIT", 20)  # cask:batch has 30 levels, batch 10
    fig = fit.plot("caterpillar", file=tmp_path / "cat.png")

    def has(ax, kind):
        return any(isinstance(c, kind) for c in ax.collections)

    assert has(fig.axes[0], PolyCollection) and not has(fig.axes[0], LineCollection)
    assert has(fig.axes[1], LineCollection) and not has(fig.axes[1], PolyCollection)


def test_profile_plot(tmp_path):
    """lme4's xyplot(profile(fit)): one panel per parameter, zeta against the parameter,
    zero at the estimate, increasing, reaching -+z(99%) (or the parameter's bound)."""
    from hlm.inference.profile import profile

    fit = _fit("strength ~ 1 + (1 | batch/cask)", "Pastes", reml=False)
    fig = fit.plot("profile", file=tmp_path / "profile.png")
    assert (tmp_path / "profile.png").read_bytes()[:4] == b"\x89PNG"
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == [
        "sd((Intercept) | cask:batch)",
        "sd((Intercept) | batch)",
        "sigma",
        "(Intercept)",
    ]
    prof = profile(fit)
    cut = float(np.sqrt(stats.chi2.ppf(0.99, 1)))
    ci = fit.confint(method="profile").set_index("parameter")
    for name, sub in prof.groupby("parameter", sort=False):
        x, z = sub["value"].to_numpy(), sub["zeta"].to_numpy()
        assert np.all(np.diff(x) > 0) and np.all(np.diff(z) >= -1e-6)
        assert z[np.argmin(np.abs(x - sub["estimate"].iloc[0]))] == pytest.approx(0.0, abs=1e-8)
        assert z.max() == pytest.approx(cut, abs=1e-4)
        assert z.min() == pytest.approx(-cut, abs=1e-4) or x.min() == 0.0
        # the 95% profile limits are where zeta crosses -+1.96
        z95 = stats.norm.ppf(0.975)
        if z.min() < -z95:
            assert np.interp(-z95, z, x) == pytest.approx(ci.loc[name, "conf_low"], rel=2e-3)
        assert np.interp(z95, z, x) == pytest.approx(ci.loc[name, "conf_high"], rel=2e-3)
    line = panels[0].get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), prof[prof["parameter"] == ".sig01"]["value"])


def test_cli_style_and_plot(tmp_path, capsys):
    png = tmp_path / "fit.png"
    code = run(["fit", str(DATA / "Pastes.csv"), "strength || batch: || cask:", "--ml", "--plot", str(png)])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("Mixed-effects ML regression") and png.exists()
    code = run(["fit", str(DATA / "Pastes.csv"), "strength || batch: || cask:", "--style", "lme4"])
    assert code == 0 and capsys.readouterr().out.startswith("Linear mixed model fit by REML")
    code = run(["fit", str(DATA / "Pastes.csv"), "strength ~ 1 + (1 | batch)", "--style", "stata"])
    assert code == 0 and "batch: Identity" in capsys.readouterr().out
    assert run(["fit", str(DATA / "Pastes.csv"), "strength || batch:", "--style", "spss"]) == 2
    assert "error: --style" in capsys.readouterr().err
    assert run(["fit", str(DATA / "Pastes.csv"), "strength || batch:", "--plot", str(png), "--plot-kind", "pie"]) == 2
    prof = tmp_path / "profile.png"
    assert (
        run(["fit", str(DATA / "Pastes.csv"), "strength || batch:", "--plot", str(prof), "--plot-kind", "profile"]) == 0
    )
    assert prof.read_bytes()[:4] == b"\x89PNG"


def test_random_effects_table_takes_fit_varcomp():
    """Stata's table is fit.varcomp() (one delta method) in Stata's order: the same numbers
    row for row, SDs outermost first with slopes before the intercept, then correlations."""
    from hlm.report.stata import random_effects_table

    fit = _fit("Reaction ~ Days + (Days | Subject)", "sleepstudy", reml=False)
    merged = random_effects_table(fit)
    assert list(merged["var1"].fillna("-")) == ["Days", "(Intercept)", "(Intercept)", "-"]
    assert list(merged["var2"].fillna("-")) == ["-", "-", "Days", "-"]
    cols = ["estimate", "std_error", "conf_low", "conf_high"]
    own = fit.varcomp().set_index("parameter").loc[[".sig03", ".sig01", ".sig02", ".sigma"]]
    np.testing.assert_allclose(merged[cols].to_numpy(float), own[cols].to_numpy(float), rtol=0)


def test_summary_follows_the_model_syntax():
    """As the CLI: a Stata-syntax model prints Stata's table, an lme4 formula lme4's; style= wins."""
    stata = _fit("Reaction Days || Subject:", "sleepstudy")
    lme4 = _fit("Reaction ~ Days + (1 | Subject)", "sleepstudy")
    assert stata.summary() == stata.summary(style="stata") == str(stata)
    assert "Mixed-effects" in stata.summary() and "Random effects:" not in stata.summary()
    assert lme4.summary() == lme4.summary(style="lme4") == str(lme4)
    assert stata.summary(style="lme4").startswith("Linear mixed model fit by REML")
