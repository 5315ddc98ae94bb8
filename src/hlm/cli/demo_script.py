"""A Stata user's exploration of a four-level design (the seed, ``examples/seed.toml``), replayed correctly.

Students (2 semesters each) nested in teachers, schools and districts, SDs 2/3/4/5 and a
residual SD of 6, tutoring assigned to 20% of student-semesters with effect 2.  Each step
prints a short narrative and the table a Stata user would read: xtreg fe and re, the
single-level mixed model, the 4-level model in the right order with the variance shares,
what the seed's reversed order does, REML vs ML for comparing mean structures, a
small Monte Carlo study of how the district SD's precision grows with the number of
districts, pass/fail (``pass = perform > 0``) by a four-level logistic GLMM with the
latent-scale variance shares (:mod:`hlm.cli.demo_glmm`), and the design question behind it
all: how many districts estimate the district SD within +-25% (:func:`hlm.power.sd_sample_size`),
and the power to detect tutoring at half its effect (:func:`hlm.power.simulate`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd

import hlm
from hlm.cli.demo_glmm import show_pass_fail
from hlm.diagnose import check_level_order
from hlm.errors import HLMError
from hlm.simulate import Design, simulate
from hlm.simulate.parts import mean_count

SEED_DESIGN = Path(__file__).resolve().parents[2] / "examples" / "seed.toml"
LEVELS = ["dist_id", "school_id", "teach_id", "student_id"]
RIGHT = "perform tutoring || dist_id: || school_id: || teach_id: || student_id:"
REVERSED = "perform tutoring || student_id: || teach_id: || school_id: || dist_id:"
LME4 = "perform ~ tutoring + (1 | dist_id/school_id/teach_id/student_id)"


def seed_design(districts: int = 50) -> Design:
    """The seed's design, from examples/seed.toml when present, with ``districts`` districts."""
    design = Design.from_toml(SEED_DESIGN) if SEED_DESIGN.exists() else _builtin_design()
    return design.set("levels.district.n", districts)


def _builtin_design() -> Design:
    return Design.from_dict(
        {
            "response": "perform",
            "residual_sd": 6.0,
            "observations": {"n": 2, "name": "semester"},
            "levels": [
                {"name": "district", "id": "dist_id", "n": 50, "sd": 2.0},
                {"name": "school", "id": "school_id", "n": 5, "sd": 3.0},
                {"name": "teacher", "id": "teach_id", "n": 8, "sd": 4.0},
                {"name": "student", "id": "student_id", "n": 20, "sd": 5.0},
            ],
            "covariates": {"tutoring": "Bernoulli(0.2)"},
            "fixed": {"intercept": 0.0, "tutoring": 2.0},
        }
    )


def _step(echo: Callable[[str], None], number: int, title: str, text: str) -> None:
    echo(f"\n{'=' * 78}\n{number}. {title}\n{'=' * 78}\n{text}\n")


def _district_sd_study(reps: int, seed: int) -> pd.DataFrame:
    """Mean, SD and RMSE of the district SD estimate for 10, 25 and 50 districts."""
    result = hlm.study(
        seed_design(50),
        [LME4],
        reps=reps,
        seed=seed,
        grid={"levels.district.n": [10, 25, 50]},
        intervals=False,
        progress=False,
    )
    table = result.summary()
    rows = table[table["parameter"] == "sd[district]"]
    return rows[["levels.district.n", "truth", "mean", "sd", "rmse", "singular"]].reset_index(drop=True)


def _show_single_and_nested_fits(frame: pd.DataFrame, echo: Callable[[str], None]) -> hlm.Fit:
    """Steps 1-3: panel estimators, the one-level model, then the four-level model and its ICCs."""
    _step(
        echo,
        1,
        "xtreg perform tutoring, fe / re   (student panels)",
        "Fixed and random student effects both estimate tutoring well: assignment is random.",
    )
    for estimator in ("fe", "re"):
        echo(hlm.xtreg("perform tutoring", frame, panel="student_id", estimator=estimator).summary())

    _step(
        echo,
        2,
        "xtmixed perform tutoring || student_id:",
        "One level: the student SD absorbs teachers, schools and districts (sqrt(25 + 16 + 9 + 4) = 7.35).",
    )
    echo(hlm.fit("perform tutoring || student_id:", frame).summary(style="stata"))

    _step(echo, 3, f"xtmixed {RIGHT}", "Four levels, listed outermost first as Stata's mixed reads them.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hlm.fit(RIGHT, frame)
    echo(fit.summary(style="stata"))
    echo(
        f"\nFitted in {fit.optsummary.seconds:.2f} s. How much unexplained variance sits at each level "
        "(share of the total; ICC = correlation of two observations sharing that level's group):"
    )
    icc = fit.icc()
    cols = [c for c in ("level", "variance", "share", "share_low", "share_high", "icc") if c in icc]
    echo(icc[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return fit


def _show_reversed_order(frame: pd.DataFrame, echo: Callable[[str], None]) -> None:
    """Step 4: the seed's inner-to-outer listing is refused by the level-order check."""
    _step(
        echo,
        4,
        f"xtmixed {REVERSED}   (the seed's order)",
        "Listed inner to outer, each level is read within the ones before it: every 'district' is "
        "then one student, 40,000 groups at every level. hlm stops instead of fitting nonsense:",
    )
    try:
        check_level_order(frame, LEVELS[::-1], syntax="stata")
        echo("(not detected)")
    except HLMError as exc:
        echo(f"error: {exc}")


def _show_ml_comparison(frame: pd.DataFrame, fit: hlm.Fit, echo: Callable[[str], None]) -> None:
    """Step 5: REML fits with different fixed effects are refused; ML refits are compared."""
    _step(
        echo,
        5,
        "REML vs ML for comparing mean structures",
        "Does tutoring matter? Models with different fixed effects must be compared by ML:",
    )
    null_model = "perform || dist_id: || school_id: || teach_id: || student_id:"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m0, m1 = hlm.fit(null_model, frame), fit
        try:
            hlm.lrtest(m0, m1)
        except HLMError as exc:
            echo(f"REML fits: error: {exc}")
        test = hlm.lrtest(m0, m1, refit_ml=True)
    echo(f"ML refits: {test}")


def _design_question(reps: int, seed: int, echo: Callable[[str], None]) -> None:
    """Step 7: districts for the district SD within +-25%, and the power at half the tutoring effect."""
    design = seed_design(50)
    sds = [lv.sd for lv in design.levels] + [design.residual_sd]
    total = sum(v * v for v in sds)
    icc = [sd * sd / total for sd in sds[:-1]]
    below = [float(mean_count(lv.n)) for lv in design.levels[1:]] + [float(mean_count(design.observations.n))]
    needed = hlm.power.sd_sample_size([None, *below], icc, margin=0.25)
    margin50 = hlm.power.sd_margin([50.0, *below], icc)
    echo(
        f"District SD within +-25% (95% confidence, the balanced design's ANOVA/REML precision): {needed} "
        f"districts of 5 schools x 8 teachers x 20 students x 2 semesters; 50 districts give +-{margin50:.0%}."
    )
    half = design.fixed["tutoring"] / 2
    result = hlm.power.simulate(design, LME4, "tutoring", effect=half, reps=reps, seed=seed, n_jobs=1, progress=False)
    echo(
        f"Power to detect tutoring at half its effect ({half:g}) with 50 districts, Wald test at 5%: "
        f"{result.power:.3f} (Monte Carlo SE {result.mc_se:.3f}, {reps} simulated data sets drawn from "
        "their sufficient statistics): tutoring varies within students, so it is estimated far more "
        "precisely than anything at the district level."
    )


def run_demo(*, districts: int = 50, seed: int = 2026, reps: int = 40, echo: Callable[[str], None] = print) -> None:
    """Simulate the seed's data and walk through the analysis it should have had."""
    start = time.perf_counter()
    frame = simulate(seed_design(districts), seed=seed)
    echo(
        f"The seed's design: {len(frame):,} rows = {districts} districts x 5 schools x 8 teachers x "
        "20 students x 2 semesters.\nTrue SDs: district 2, school 3, teacher 4, student 5, residual 6; "
        "tutoring effect 2."
    )

    fit = _show_single_and_nested_fits(frame, echo)
    _show_reversed_order(frame, echo)
    _show_ml_comparison(frame, fit, echo)
    _step(
        echo,
        6,
        "Is my sample too small to separate the levels?",
        f"A Monte Carlo study: {reps} data sets per design, 4-level REML fits, district SD (truth 2):",
    )
    if reps > 0:
        echo(_district_sd_study(reps, seed).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        echo(
            "\nMore districts, smaller RMSE: the district SD needs many districts; the other levels are "
            "well determined already at 50 districts."
        )
    _step(
        echo,
        7,
        "melogit pass tutoring || ... : pass/fail (pass = perform > 0)",
        "Just as often the outcome is binary. A four-level logistic GLMM of passing:",
    )
    show_pass_fail(frame, seed_design(districts), echo)
    _step(
        echo,
        8,
        "The design question: how many districts, and what power?",
        "What the next study needs, answered analytically and by simulation (hlm.power):",
    )
    if reps > 0:
        _design_question(reps, seed, echo)
    echo(f"\nWhole demo: {time.perf_counter() - start:.1f} s.")
