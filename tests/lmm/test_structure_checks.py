"""Structure checks wired into hlm.fit (hlm.lmm.checks): reversed nesting, implicit nesting,
identifiability, boundary fits -- and the seed's reversed 4-level model on the seed's design.

Tolerance for the recovered SDs (seed's design, 50 districts, 80,000 rows, seed 2026):
each estimate within 4 of its standard errors from ``fit.varcomp()`` of the true SD, and
within 10% of it (40% for district, whose SD rests on 50 groups: SE about 0.3 of 2).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hlm
import support
from hlm.cli import run
from hlm.errors import (
    IdentifiabilityError,
    NestingError,
    SingularFitWarning,
    StructureWarning,
)
from hlm.lmm.checks import boundary_messages
from hlm.simulate import Design, simulate

ROOT = support.ROOT
DATA = support.DATA
STATA_REVERSED = "perform tutoring || student_id: || teach_id: || school_id: || dist_id:"
STATA_RIGHT = "perform tutoring || dist_id: || school_id: || teach_id: || student_id:"
LME4_REVERSED = "perform ~ tutoring + (1|student_id/teach_id/school_id/dist_id)"
LME4_RIGHT = "perform ~ tutoring + (1|dist_id/school_id/teach_id/student_id)"
TRUE_SD = {"dist_id": 2.0, "school_id": 3.0, "teach_id": 4.0, "student_id": 5.0, "Residual": 6.0}
REL_TOL = {"dist_id": 0.40, "school_id": 0.10, "teach_id": 0.10, "student_id": 0.10, "Residual": 0.10}


@pytest.fixture(scope="module")
def seed_data() -> pd.DataFrame:
    """The seed's design at 50 districts: 80,000 rows."""
    frame = simulate(Design.from_toml(ROOT / "examples" / "seed.toml"), seed=2026)
    assert len(frame) == 80_000
    return frame


@pytest.fixture(scope="module")
def right_fit(seed_data):
    return hlm.fit(STATA_RIGHT, seed_data)


def _sds(fit) -> dict[str, tuple[float, float]]:
    """Per level variable (Stata names or lme4's innermost column): (SD, its SE)."""
    vc = fit.varcomp()
    vc = vc[vc["kind"].isin(["sd", "sigma"])]
    return {str(g).split(":")[0]: (e, s) for g, e, s in zip(vc["group"], vc["estimate"], vc["std_error"])}


def _assert_recovers(fit) -> None:
    sds = _sds(fit)
    assert set(sds) == set(TRUE_SD)
    for level, truth in TRUE_SD.items():
        est, se = sds[level]
        assert abs(est - truth) < 4 * se, (level, est, se)
        assert abs(est - truth) < REL_TOL[level] * truth, (level, est)


# ---- the seed's mistake ------------------------------------------------------------------
def test_seed_reversed_stata_model_is_an_error(seed_data):
    with pytest.raises(NestingError) as err:
        hlm.fit(STATA_REVERSED, seed_data)
    msg = str(err.value)
    assert "40,000 groups" in msg and "inner to outer" in msg
    assert "`|| dist_id: || school_id: || teach_id: || student_id:`" in msg
    assert "reorder=True" in msg and "\n" not in msg


def test_seed_reversed_lme4_model_is_an_error(seed_data):
    with pytest.raises(NestingError, match=r"\(1\|dist_id/school_id/teach_id/student_id\)"):
        hlm.fit(LME4_REVERSED, seed_data)


def test_seed_right_order_recovers_the_sds(right_fit):
    assert right_fit.ngroups == {"student_id": 40_000, "teach_id": 2_000, "school_id": 250, "dist_id": 50}
    _assert_recovers(right_fit)
    assert abs(right_fit.fixef["tutoring"] - 2.0) < 4 * right_fit.se["tutoring"]


@pytest.mark.parametrize("model", [STATA_REVERSED, LME4_REVERSED])
def test_reorder_fits_the_corrected_order(seed_data, right_fit, model):
    with pytest.warns(StructureWarning, match="reordered outermost first"):
        fit = hlm.fit(model, seed_data, reorder=True)
    assert any("reordered" in note for note in fit.notes)
    assert "dist_id" in fit.spec.text and fit.spec.text.index("dist_id") < fit.spec.text.index("student_id")
    assert fit.deviance == pytest.approx(right_fit.deviance, rel=1e-9)
    _assert_recovers(fit)


def test_reversed_order_caught_on_duckdb(tmp_path, seed_data):
    path = tmp_path / "seed.parquet"
    seed_data.to_parquet(path)
    with pytest.raises(NestingError, match="inner to outer"):
        hlm.fit(STATA_REVERSED, path, backend="duckdb")
    with pytest.warns(StructureWarning):
        fit = hlm.fit(LME4_REVERSED, path, backend="duckdb", reorder=True)
    assert fit.ngroups["dist_id"] == 50


def test_cli_reorder(tmp_path, capsys, seed_data):
    path = tmp_path / "seed.parquet"
    seed_data[seed_data["dist_id"] <= 10].to_parquet(path)
    assert run(["fit", str(path), STATA_REVERSED]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: levels are listed inner to outer") and "(or pass --reorder)" in err
    assert len(err.strip().splitlines()) == 1
    assert run(["fit", str(path), STATA_REVERSED, "--reorder"]) == 0
    out = capsys.readouterr()
    assert "dist_id" in out.out
    assert any(line.startswith("warning: levels reordered outermost first") for line in out.err.splitlines())


# ---- implicit nesting --------------------------------------------------------------------
def test_implicitly_nested_ids_used_as_crossed_warn():
    pastes = pd.read_csv(DATA / "Pastes.csv")
    with pytest.warns(StructureWarning, match=r"write \(1\|batch/cask\)"):
        hlm.fit("strength ~ 1 + (1|batch) + (1|cask)", pastes)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StructureWarning)
        hlm.fit("strength ~ 1 + (1|batch/cask)", pastes)  # the fix: no warning
        hlm.fit("strength ~ 1 + (1|batch) + (1|sample)", pastes)  # unique ids: nested, no warning
        hlm.fit("strength || batch: || cask:", pastes)  # Stata: nested by construction


def test_genuine_cross_not_warned():
    penicillin = pd.read_csv(DATA / "Penicillin.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error", StructureWarning)
        hlm.fit("diameter ~ 1 + (1|plate) + (1|sample)", penicillin)


# ---- identifiability ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    frame = pd.read_csv(DATA / "sleepstudy.csv")
    frame["obs"] = np.arange(len(frame))
    frame["subject_copy"] = "s" + frame["Subject"].astype(str)
    frame["one"] = 1
    return frame


def test_same_partition_is_an_error(sleep):
    with pytest.raises(IdentifiabilityError, match=r"Subject and subject_copy define the same 18 groups.*drop one of"):
        hlm.fit("Reaction ~ Days + (1|Subject) + (1|subject_copy)", sleep)


def test_same_partition_stata_level_that_does_not_subdivide(sleep):
    with pytest.raises(IdentifiabilityError, match="cannot be told apart"):
        hlm.fit("Reaction Days || Subject: || subject_copy:", sleep)


def test_one_observation_per_group_is_an_error(sleep):
    with pytest.raises(IdentifiabilityError, match=r"every obs group has exactly one observation.*drop \(1\|obs\)"):
        hlm.fit("Reaction ~ Days + (1|Subject) + (1|obs)", sleep)


def test_random_slope_with_as_many_effects_as_rows_is_an_error(sleep):
    two_days = sleep[sleep["Days"] < 2]
    with pytest.raises(IdentifiabilityError, match=r"2 random effects each, 36 in all, for 36 observations"):
        hlm.fit("Reaction ~ Days + (Days|Subject)", two_days)
    with pytest.raises(IdentifiabilityError, match=r"drop random slopes from `\|\| Subject: Days`"):
        hlm.fit("Reaction Days || Subject: Days", two_days)


def test_covariance_needs_more_groups_than_effects(sleep):
    two = sleep[sleep["Subject"].isin([308, 309])]
    with pytest.raises(IdentifiabilityError, match=r"2 groups for 2 correlated random effects.*\(Days \|\| Subject\)"):
        hlm.fit("Reaction ~ Days + (Days|Subject)", two)
    three = sleep[sleep["Subject"].isin([308, 309, 310])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hlm.fit("Reaction ~ Days + (Days|Subject)", three)  # 3 groups: estimable


def test_one_level_grouping_factor_is_an_error(sleep):
    with pytest.raises(IdentifiabilityError, match=r"grouping factor 'one' has one group \('1'\)"):
        hlm.fit("Reaction ~ Days + (1|one)", sleep)
    with pytest.raises(IdentifiabilityError, match="drop `|| one:`"):
        hlm.fit("Reaction Days || one: || Subject:", sleep)


def test_identifiability_checked_on_duckdb(tmp_path, sleep):
    path = tmp_path / "sleep.parquet"
    sleep.to_parquet(path)
    with pytest.raises(IdentifiabilityError, match="same 18 groups"):
        hlm.fit("Reaction ~ Days + (1|Subject) + (1|subject_copy)", path, backend="duckdb")
    with pytest.raises(IdentifiabilityError, match="exactly one observation"):
        hlm.fit("Reaction ~ Days + (1|obs)", path, backend="duckdb")


# ---- boundary fits -----------------------------------------------------------------------
def test_zero_variance_named_and_explained():
    dyestuff2 = pd.read_csv(DATA / "Dyestuff2.csv")
    with pytest.warns(SingularFitWarning, match="the Batch variance is estimated at zero") as rec:
        fit = hlm.fit("Yield ~ 1 + (1|Batch)", dyestuff2)
    assert "model without it" in str(rec[0].message)
    assert "the Batch variance is estimated at zero" in fit.summary()
    assert "the Batch variance is estimated at zero" in fit.summary(style="stata")


def test_correlation_at_one_named_as_such():
    rng = np.random.default_rng(1)
    rows = []
    for g in range(8):
        b0 = rng.normal() * 2
        rows += [(g, x, b0 + 0.05 * b0 * x + rng.normal()) for x in range(4)]
    frame = pd.DataFrame(rows, columns=["g", "x", "y"])
    with pytest.warns(
        SingularFitWarning, match=r"correlation of \(Intercept\) and x across g is estimated at [+-]1\.00"
    ):
        fit = hlm.fit("y ~ x + (x|g)", frame)
    msgs = boundary_messages(fit)
    assert len(msgs) == 1 and "(x || g)" in msgs[0] and "variance" not in msgs[0].split(":")[0]
