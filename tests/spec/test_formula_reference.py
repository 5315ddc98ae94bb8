"""lme4 formulas mean what they mean in R: lmer's fits of I(x^2), poly, scale, log, offset,
factor interactions and columns named like functions (fixtures from R, see reference/README)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hlm
from hlm.errors import DataError, FormulaError, OptionError
from hlm.modelframe import build_frame
from hlm.spec import parse_model
from support import dataset, reference

FORMULA = [
    "sleepstudyF__formula_Isq_REML",
    "sleepstudyF__formula_poly_ML",
    "sleepstudyF__formula_polyraw_REML",
    "sleepstudyF__formula_scale_log_REML",
    "sleepstudyF__formula_offset_ML",
    "litters__formula_named_REML",
    "litters__formula_interact_ML",
]


def r_frame(ref: dict) -> pd.DataFrame:
    """The fixture's CSV with its factors as categoricals in R's level order."""
    df = dataset(ref["dataset"]["name"])
    for col, levels in ref["dataset"]["factor_levels"].items():
        df[col] = pd.Categorical(df[col].astype(str), categories=levels)
    return df


def quiet_fit(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hlm.fit(*args, **kwargs)


def assert_matches_lme4(fit, ref: dict, names: bool = True) -> None:
    assert fit.nobs == ref["nobs"]
    have = fit.reml_criterion if ref["REML"] else fit.deviance
    assert abs(have - ref["objective"]) <= 1e-6 * abs(ref["objective"])
    terms = [t["term"] for t in ref["fixef"]]
    if names:
        assert list(fit.fixef.index) == terms
    for t in ref["fixef"]:
        assert abs(fit.fixef[t["term"]] - t["estimate"]) <= 1e-3 * t["se"], t["term"]
        assert fit.se[t["term"]] == pytest.approx(t["se"], rel=1e-3)
    sigma = ref["sigma"]
    assert fit.sigma == pytest.approx(sigma, rel=1e-4)
    vc = fit.varcorr
    for row in ref["varcorr"]["table"]:
        if row["grp"] == "Residual" or row["var2"] is not None:
            continue
        got = vc[(vc["group"] == row["grp"]) & (vc["var1"] == row["var1"]) & vc["var2"].isna()]["sdcor"]
        assert len(got) == 1, (row["grp"], row["var1"])
        if row["sdcor"] <= 1e-3 * sigma:  # at the boundary on both sides
            assert float(got.iloc[0]) <= 1e-3 * sigma
        else:
            assert float(got.iloc[0]) == pytest.approx(row["sdcor"], rel=1e-4)


@pytest.mark.parametrize("name", FORMULA)
def test_lme4_formula_fixtures_in_memory(name):
    ref = reference(name)
    assert_matches_lme4(quiet_fit(ref["formula"], r_frame(ref), reml=ref["REML"]), ref)


@pytest.mark.parametrize("name", FORMULA)
def test_lme4_formula_fixtures_through_duckdb(name, tmp_path):
    """From a Parquet file (factors stored as strings, so sorted levels): the same fit as in memory,
    and for the sleepstudy models (no categorical fixed effects) lme4's under lme4's names."""
    ref = reference(name)
    df = r_frame(ref)
    for col in ref["dataset"]["factor_levels"]:
        df[col] = df[col].astype(str)
    path = tmp_path / "d.parquet"
    df.to_parquet(path)
    sql = quiet_fit(ref["formula"], str(path), reml=ref["REML"])
    mem = quiet_fit(ref["formula"], df, reml=ref["REML"])
    assert list(sql.fixef.index) == list(mem.fixef.index)
    np.testing.assert_allclose(sql.fixef, mem.fixef, rtol=1e-6, atol=1e-8)
    assert sql.deviance == pytest.approx(mem.deviance, rel=1e-8)
    if name.startswith("sleepstudyF"):
        assert_matches_lme4(sql, ref)
    np.testing.assert_allclose(sql.predict(df.head(25), re=False), mem.predict(df.head(25), re=False), rtol=1e-9)


def test_fitted_values_include_the_offset_as_lme4():
    ref = reference("sleepstudyF__formula_offset_ML")
    fit = quiet_fit(ref["formula"], r_frame(ref), reml=False)
    np.testing.assert_allclose(fit.fitted().to_numpy()[:10], ref["fitted_head"], rtol=1e-6)
    np.testing.assert_allclose(fit.residuals().to_numpy()[:10], ref["residuals_head"], atol=1e-4)


def test_offset_argument_equals_the_offset_term(tmp_path):
    df = dataset("sleepstudyF")
    ref = reference("sleepstudyF__formula_offset_ML")
    by_term = quiet_fit(ref["formula"], df, reml=False)
    base = "Reaction ~ Days + (1 | Subject)"
    path = tmp_path / "s.parquet"
    df.to_parquet(path)
    for fit in (
        quiet_fit(base, df, reml=False, offset="expo"),
        quiet_fit(base, df, reml=False, offset=df["expo"].to_numpy()),
        quiet_fit(base, str(path), reml=False, offset="expo"),
    ):
        np.testing.assert_allclose(fit.fixef, by_term.fixef, rtol=1e-8)
        assert fit.deviance == pytest.approx(ref["objective"], rel=1e-6)
        assert any(n.startswith("offset: ") for n in fit.notes)
    both = quiet_fit("Reaction ~ Days + offset(expo) + (1 | Subject)", df, reml=False, offset=df["expo"])
    twice = quiet_fit("Reaction ~ Days + offset(2 * expo) + (1 | Subject)", df, reml=False)
    np.testing.assert_allclose(both.fixef, twice.fixef, rtol=1e-8)  # offsets add up, as in R
    with pytest.raises(OptionError):
        hlm.fit(base, str(path), offset=df["expo"].to_numpy())
    with pytest.raises(OptionError):
        hlm.fit("Reaction Days || Subject:", df, offset="expo")
    with pytest.raises(DataError):
        hlm.fit(base, df, offset=np.ones(5))
    by_array = quiet_fit(base, df, reml=False, offset=df["expo"].to_numpy())
    with pytest.raises(DataError, match="offset"):
        by_array.predict(df.head())
    np.testing.assert_allclose(
        by_array.predict(df.head().assign(**{"(offset)": df["expo"].head()})), by_term.predict(df.head()), rtol=1e-8
    )


@pytest.mark.parametrize(
    "model",
    [
        "Reaction ~ poly(Days, 3) + (1 | Subject)",
        "Reaction ~ scale(Days) + I(Days^2) + offset(expo) + (1 | Subject)",
        "Reaction ~ poly(Days, 2, raw = TRUE) + scale(w, center = FALSE) + (1 | Subject)",
    ],
)
def test_predict_newdata_reuses_the_fit_time_transform(model):
    """poly() and scale() are frozen on the fitted rows: predicting a few rows gives the same values
    as the same rows within the whole data (recomputing them on the new rows would not)."""
    df = dataset("sleepstudyF")
    fit = quiet_fit(model, df)
    rows = df[df["Days"] >= 7]
    np.testing.assert_allclose(fit.predict(rows, re=False), fit.predict(df, re=False)[rows.index], rtol=1e-12)
    X = build_frame(parse_model(model), df).X
    offset = df["expo"].to_numpy() if "offset" in model else 0.0
    np.testing.assert_allclose(fit.predict(df, re=False), X @ fit.fixef.to_numpy() + offset, rtol=1e-12)


def test_powers_are_powers_on_integer_columns():
    """The issue's silent XOR: I(day^2) on an int column is the square (day ^ 2 would be 2, 3, 0, 1, 6)."""
    df = pd.DataFrame({"y": np.arange(10.0), "day": np.arange(10), "g": ["a", "b"] * 5})
    frame = build_frame(
        parse_model("y ~ I(day^2) + I(day**3) + I(2^day) + I(day^-1 + TRUE) + (1 | g)"), df.assign(day=np.arange(1, 11))
    )
    d = np.arange(1, 11.0)
    np.testing.assert_array_equal(frame.X[:, 1:], np.column_stack([d**2, d**3, 2.0**d, 1 / d + 1]))
    assert frame.xnames[1:] == ("I(day^2)", "I(day^3)", "I(2^day)", "I(day^-1 + TRUE)")


SHADOWING = [
    "Treatment",
    "C",
    "Q",
    "Sum",
    "Helmert",
    "Poly",
    "Diff",
    "poly",
    "scale",
    "center",
    "log",
    "lag",
    "I",
    "np",
]


@pytest.mark.parametrize("name", SHADOWING)
def test_a_column_is_a_column_whatever_function_shares_its_name(name, tmp_path):
    """Each name as a numeric predictor, as a factor (string column) in an interaction, and next
    to the function of the same name: the fit equals the one with the column renamed, in memory
    and through DuckDB."""
    df = dataset("litters")
    if name not in df:
        df[name] = df["C"].to_numpy() * 0.5 + np.arange(len(df)) % 7
    path = tmp_path / "litters.parquet"
    strings = df.assign(**{name: df["sex"].astype(str) + "x"}) if name != "Treatment" else df
    for data, term in ((df, name), (strings, f"{name} * dose")):
        model = f"weight ~ {term} + log(dose) + poly(dose, 2) + I(dose^2) + (1 | litter)"
        plain = quiet_fit(
            model.replace(f"~ {term}", "~ " + term.replace(name, "zz")), data.rename(columns={name: "zz"})
        )
        fit = quiet_fit(model, data)
        assert list(fit.fixef.index) == [n.replace("zz", name) for n in plain.fixef.index]
        np.testing.assert_allclose(fit.fixef.to_numpy(), plain.fixef.to_numpy(), rtol=1e-9)
        p = path.with_name(f"{name}_{data is strings}.parquet")
        data.to_parquet(p)
        sql = quiet_fit(model, str(p))
        assert list(sql.fixef.index) == list(fit.fixef.index)
        np.testing.assert_allclose(sql.fixef.to_numpy(), fit.fixef.to_numpy(), rtol=1e-7)


def test_r_names_of_factor_interactions():
    rng = np.random.default_rng(3)
    n = 120
    df = pd.DataFrame(
        {
            "recipe": rng.choice(["A", "B", "C"], n),
            "temperature": rng.choice(["175", "185"], n),
            "x": rng.normal(size=n),
            "g": rng.integers(0, 10, n),
            "flag": rng.random(n) > 0.5,
        }
    )
    df["y"] = rng.normal(size=n)
    names = build_frame(parse_model("y ~ recipe * temperature + factor(g) + flag:x + (1 | g)"), df).xnames
    assert names[:4] == ("(Intercept)", "recipeB", "recipeC", "temperature185")
    assert "recipeB:temperature185" in names and "recipeC:temperature185" in names
    assert "factor(g)1" in names and "factor(g)9" in names
    assert "flagFALSE:x" in names and "flagTRUE:x" in names  # no main effect: full coding, as R


@pytest.mark.parametrize(
    "model,match",
    [
        ("y ~ sin(x) + (1 | g)", "sin"),
        ("y ~ log(x, 2) + (1 | g)", "one argument"),
        ("y ~ (x + z)^x + (1 | g)", "whole number"),
        ("y ~ I(x > 1) + (1 | g)", "cannot read"),
        ("y ~ x + 2 + (1 | g)", "only 0 and 1"),
        ("y ~ I(poly(x, 2)) + (1 | g)", "term of its own"),
        ("y ~ poly(x, 2, raw = maybe) + (1 | g)", "TRUE or FALSE"),
    ],
)
def test_unsupported_formulas_are_refused_by_name(model, match):
    df = pd.DataFrame({"y": [1.0, 2, 3, 4], "x": [1.0, 2, 3, 5], "z": [0.0, 1, 0, 1], "g": [1, 1, 2, 2]})
    with pytest.raises(FormulaError, match=match):
        hlm.fit(model, df)


def test_poly_degree_must_be_below_the_distinct_values(tmp_path):
    df = dataset("sleepstudyF")
    df["three"] = df["Days"] % 3
    with pytest.raises(DataError, match="distinct"):
        hlm.fit("Reaction ~ poly(three, 3) + (1 | Subject)", df)
    df.to_parquet(tmp_path / "s.parquet")
    with pytest.raises(DataError, match="distinct"):
        hlm.fit("Reaction ~ poly(three, 3) + (1 | Subject)", str(tmp_path / "s.parquet"))


def test_a_logical_column_is_a_factor_as_in_r(tmp_path):
    """R's model.matrix turns a logical term into a factor: ``0 + flag`` has two columns."""
    rng = np.random.default_rng(5)
    df = pd.DataFrame(
        {
            "y": rng.normal(size=60),
            "x": rng.normal(size=60),
            "flag": rng.random(60) > 0.4,
            "g": np.repeat(np.arange(6), 10),
        }
    )
    model = "y ~ 0 + flag + I(flag * x) + (1 | g)"
    frame = build_frame(parse_model(model), df)
    assert frame.xnames == ("flagFALSE", "flagTRUE", "I(flag * x)")
    np.testing.assert_array_equal(frame.X, np.column_stack([~df.flag, df.flag, df.flag * df.x]).astype(float))
    df.to_parquet(tmp_path / "b.parquet")
    mem, sql = quiet_fit(model, df), quiet_fit(model, str(tmp_path / "b.parquet"))
    assert list(sql.fixef.index) == list(mem.fixef.index)
    np.testing.assert_allclose(sql.fixef, mem.fixef, rtol=1e-7)


def test_interaction_names_follow_the_order_variables_first_appear_in():
    """R writes a term's variables in the order they first appear in the formula (``b + a + a:b``
    has the term ``b:a``, columns ``bq:ay``, ``bq:az``), the first varying fastest; the values
    follow their names."""
    df = pd.DataFrame(
        {"a": ["x", "y", "z", "x"] * 3, "b": ["p", "q", "p", "q"] * 3, "y": np.arange(12.0), "g": [1, 2] * 6}
    )
    frame = build_frame(parse_model("y ~ b + a + a:b + (1 | g)"), df)
    assert frame.xnames == ("(Intercept)", "bq", "ay", "az", "bq:ay", "bq:az")
    nested = build_frame(parse_model("y ~ b + a %in% b + (1 | g)"), df)  # R: b + b:a (a/b's nesting)
    assert nested.xnames == ("(Intercept)", "bq", "bp:ay", "bq:ay", "bp:az", "bq:az")
    np.testing.assert_array_equal(frame.X[:, 4], ((df.a == "y") & (df.b == "q")).astype(float))


@pytest.mark.parametrize("rhs", ["a:b", "0 + u + a:u", "b + u + a + a:b:u"])
def test_interactions_that_r_codes_rank_deficient_are_refused(rhs):
    df = pd.DataFrame(
        {
            "a": ["x", "y", "z", "x"] * 3,
            "b": ["p", "q", "p", "q"] * 3,
            "u": np.arange(12.0),
            "y": np.arange(12.0),
            "g": [1, 2] * 6,
        }
    )
    with pytest.raises(FormulaError, match="without its margins"):
        build_frame(parse_model(f"y ~ {rhs} + (1 | g)"), df)


def test_random_slopes_read_with_r_semantics_too(tmp_path):
    """(I(Days^2) | Subject) is the square (not XOR) in memory, through DuckDB and for predict."""
    df = dataset("sleepstudyF")
    model = "Reaction ~ Days + I(Days^2) + (0 + I(Days^2) + scale(Days) | Subject)"
    frame = build_frame(parse_model(model), df)
    assert frame.pool == ("I(Days^2)", "scale(Days)")
    days = df["Days"].to_numpy(dtype=float)
    np.testing.assert_allclose(frame.Z, np.column_stack([days**2, (days - days.mean()) / days.std(ddof=1)]))
    df.to_parquet(tmp_path / "s.parquet")
    mem, sql = quiet_fit(model, df), quiet_fit(model, str(tmp_path / "s.parquet"))
    assert sql.deviance == pytest.approx(mem.deviance, rel=1e-8)
    rows = df[df["Days"] > 6]
    np.testing.assert_allclose(mem.predict(rows), mem.predict(df)[rows.index], rtol=1e-10)
    np.testing.assert_allclose(sql.predict(rows), mem.predict(rows), rtol=1e-5)
    with pytest.raises(FormulaError, match="fixed part"):
        hlm.fit("Reaction ~ Days + (offset(expo) | Subject)", df)


def test_write_predictions_adds_the_offset(tmp_path):
    ref = reference("sleepstudyF__formula_offset_ML")
    df = dataset("sleepstudyF")
    path, out = tmp_path / "s.parquet", tmp_path / "pred.parquet"
    df.to_parquet(path)
    fit = quiet_fit(ref["formula"], str(path), reml=False)
    hlm.write_predictions(fit, str(path), out)
    written = pd.read_parquet(out)
    np.testing.assert_allclose(written["fitted"].to_numpy()[:10], ref["fitted_head"], rtol=1e-6)
    np.testing.assert_allclose(written["residual"].to_numpy()[:10], ref["residuals_head"], atol=1e-4)


def test_non_ascii_and_backticked_column_names():
    df = dataset("sleepstudyF").rename(columns={"Days": "día", "w": "my w"})
    fit = quiet_fit("Reaction ~ día + I(día^2) + `my w` + (1 | Subject)", df)
    assert list(fit.fixef.index) == ["(Intercept)", "día", "I(día^2)", "`my w`"]


def test_formula_level_power_is_rs_interaction_expansion():
    df = pd.DataFrame(
        {
            "a": ["x", "y", "z", "x"] * 3,
            "b": ["p", "q", "p", "q"] * 3,
            "u": np.arange(12.0) ** 1.5,
            "y": np.arange(12.0),
            "g": [1, 2] * 6,
        }
    )
    power = build_frame(parse_model("y ~ (b + a + u)^2 + (1 | g)"), df)
    written = build_frame(parse_model("y ~ b + a + u + b:a + b:u + a:u + (1 | g)"), df)
    assert power.xnames == written.xnames and "bq:ay" in power.xnames
    np.testing.assert_array_equal(power.X, written.X)
    assert build_frame(parse_model("y ~ u^2 + (1 | g)"), df).xnames == ("(Intercept)", "u")  # R: u^2 is the term u


@pytest.mark.parametrize("term", ["sqrt(z)", "log(z)", "log(Days)", "(sqrt(z) | Subject)", "(log(Days) | Subject)"])
def test_undefined_values_of_a_transform_are_an_error_on_every_backend(term, tmp_path):
    """sqrt or log of a negative number is NaN: an error naming the column, never a dropped term."""
    df = dataset("sleepstudyF").assign(z=lambda d: d["Days"] - 3.0)
    model = f"Reaction ~ Days + {term if term.startswith('(') else term + ' + (1 | Subject)'}"
    df.to_parquet(tmp_path / "s.parquet")
    for data in (df, str(tmp_path / "s.parquet")):
        with pytest.raises((FormulaError, DataError), match=r"sqrt\(z\)|log\(z\)|log\(Days\)"):
            hlm.fit(model, data)
