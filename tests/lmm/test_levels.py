"""A categorical's level order survives every source: the same data fitted from a pandas
frame, Parquet (read by pyarrow and by DuckDB), .dta, polars and Arrow gives the same
reference level, names and estimates.

The design is balanced (every site sees every arm equally often), so the GLS fixed effects
of ``y ~ arm + (1|site)`` are the arms' mean differences from the reference arm whatever
the variance components: the reference level and the estimates are checked against those
means computed here with numpy.  Paths agree within 1e-8 relative (they aggregate the same
numbers in a different order); the means check within 1e-8 absolute.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hlm

ORDER = ["placebo", "low", "high"]  # not alphabetical: R/alphabetical would pick 'high'
SITES = ["s9", "s3", "s5", "s1", "s7", "s0", "s8", "s2", "s6", "s4"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    reps = 4
    arm = np.tile(np.repeat(ORDER, reps), len(SITES))
    site = np.repeat(SITES, len(ORDER) * reps)
    effect = {"placebo": 0.0, "low": 0.7, "high": 1.9}
    y = (
        np.array([effect[a] for a in arm])
        + rng.normal(0, 1.0, len(SITES))[np.repeat(np.arange(len(SITES)), 12)]
        + rng.normal(0, 0.5, len(arm))
    )
    return pd.DataFrame(
        {
            "y": y,
            "arm": pd.Categorical(arm, categories=ORDER + ["unused"]),  # an unused category is not a level
            "site": pd.Categorical(site, categories=SITES),
        }
    )


def fit(data, backend="auto", model="y ~ arm + (1|site)"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hlm.fit(model, data, backend=backend)


def mean_differences(frame: pd.DataFrame, reference: str, others: list[str]) -> np.ndarray:
    means = frame.groupby("arm", observed=True)["y"].mean()
    return np.array([means[reference]] + [means[o] - means[reference] for o in others])


def assert_same(a, b, names=True):
    if names:
        assert list(a.fixef.index) == list(b.fixef.index)
        assert list(a.ranef().index) == list(b.ranef().index)
    np.testing.assert_allclose(a.fixef.to_numpy(), b.fixef.to_numpy(), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(a.se.to_numpy(), b.se.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-6, atol=1e-8)


@pytest.fixture(scope="module")
def in_memory(frame):
    return fit(frame)


def test_frame_reference_is_the_first_category(frame, in_memory):
    assert list(in_memory.fixef.index) == ["(Intercept)", "armlow", "armhigh"]
    np.testing.assert_allclose(
        in_memory.fixef.to_numpy(), mean_differences(frame, "placebo", ["low", "high"]), atol=1e-8
    )


def test_parquet_keeps_the_order_by_every_reader(frame, in_memory, tmp_path):
    path = tmp_path / "trial.parquet"
    frame.to_parquet(path)
    for backend in ("auto", "duckdb", "memory"):
        assert_same(in_memory, fit(str(path), backend))
    folder = tmp_path / "parts"
    folder.mkdir()
    frame.iloc[:60].to_parquet(folder / "a.parquet")
    frame.iloc[60:].to_parquet(folder / "b.parquet")
    assert_same(in_memory, fit(str(folder / "*.parquet")))


def test_duckdb_from_the_frame_and_from_a_relation(frame, in_memory):
    duckdb = pytest.importorskip("duckdb")
    assert_same(in_memory, fit(frame, "duckdb"))
    con = duckdb.connect()
    assert_same(in_memory, fit(con.from_df(frame)))  # categoricals are ENUMs there
    con.register("trial", frame)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_same(in_memory, hlm.fit("y ~ arm + (1|site)", sql="SELECT * FROM trial", con=con))


def test_arrow_dictionary_and_polars_enum(frame, in_memory):
    pa = pytest.importorskip("pyarrow")
    table = pa.Table.from_pandas(frame)
    assert pa.types.is_dictionary(table.schema.field("arm").type)
    assert_same(in_memory, fit(table))
    assert_same(in_memory, fit(table, "duckdb"))
    pl = pytest.importorskip("polars")
    enum = pl.from_pandas(frame).with_columns(
        pl.col("arm").cast(pl.String).cast(pl.Enum(ORDER)), pl.col("site").cast(pl.String).cast(pl.Enum(SITES))
    )
    assert_same(in_memory, fit(enum))


def test_sources_without_an_order_sort_the_levels(frame, tmp_path):
    """CSV, strings and polars Categoricals (which polars sorts lexically) declare no order:
    the levels are sorted, as R's factor(), whatever order the values first appear in."""
    pl = pytest.importorskip("polars")
    path = tmp_path / "trial.csv"
    frame.to_csv(path, index=False)
    plain = frame.assign(arm=frame["arm"].astype(str), site=frame["site"].astype(str))
    expected = mean_differences(frame, "high", ["low", "placebo"])
    cat = pl.from_pandas(plain).with_columns(pl.col("arm").cast(pl.Categorical))
    fits = [fit(plain), fit(str(path)), fit(str(path), "memory"), fit(cat), fit(cat, "duckdb")]
    for f in fits:
        assert list(f.fixef.index) == ["(Intercept)", "armlow", "armplacebo"]
        np.testing.assert_allclose(f.fixef.to_numpy(), expected, atol=1e-8)
        assert_same(fits[0], f)


def test_dta_value_labels_give_levels_in_value_order(frame, in_memory, tmp_path):
    """pandas writes a categorical to .dta as codes 0, 1, 2 labelled placebo, low, high: the
    lme4 model reads it back as that factor (Stata's base, the lowest value, first)."""
    path = tmp_path / "trial.dta"
    frame.to_stata(path, write_index=False)
    assert_same(in_memory, fit(str(path)), names=False)
    assert list(fit(str(path)).fixef.index) == ["(Intercept)", "armlow", "armhigh"]


def test_dta_base_is_the_lowest_value_not_the_first_label(frame, tmp_path):
    """Values 3, 1, 2 labelled high, placebo, low (labels in neither value nor alphabetical
    order): the levels follow the values, so the reference is placebo (value 1); Stata syntax
    keeps the values and i.arm's base is also value 1."""
    code = {"placebo": 1, "low": 2, "high": 3}
    raw = pd.DataFrame(
        {
            "y": frame["y"],
            "arm": frame["arm"].astype(str).map(code).astype("int8"),
            "site": frame["site"].cat.codes.astype("int8"),
        }
    )
    path = tmp_path / "coded.dta"
    raw.to_stata(path, write_index=False, value_labels={"arm": {3: "high", 1: "placebo", 2: "low"}})
    expected = mean_differences(frame, "placebo", ["low", "high"])
    lme4 = fit(str(path))
    assert list(lme4.fixef.index) == ["(Intercept)", "armlow", "armhigh"]
    np.testing.assert_allclose(lme4.fixef.to_numpy(), expected, atol=1e-8)
    stata = fit(str(path), model="y i.arm || site:").fixef
    order = ["_cons", *(t for t in stata.index if t != "_cons")]
    np.testing.assert_allclose(stata[order].to_numpy(), expected, atol=1e-8)
    slope = fit(str(path), model="y arm || site:")  # Stata: a variable without i. is continuous
    assert len(slope.fixef) == 2


def test_partly_labelled_dta_variable_keeps_its_values(tmp_path):
    """A variable with labels for some values only (a code for 'refused') is a number."""
    rng = np.random.default_rng(3)
    n = 120
    score = rng.integers(1, 6, n).astype("int16")
    data = pd.DataFrame({"y": 0.5 * score + rng.normal(size=n), "score": score, "g": np.repeat(np.arange(12), 10)})
    path = tmp_path / "partial.dta"
    data.to_stata(path, write_index=False, value_labels={"score": {1: "low", 5: "high"}})
    f = fit(str(path), model="y ~ score + (1|g)")
    assert list(f.fixef.index) == ["(Intercept)", "score"]
    assert_same(fit(data, model="y ~ score + (1|g)"), f)


def test_categorical_of_numbers(tmp_path):
    """A categorical of numbers is a factor in its categories' order through DuckDB too.  Parquet
    keeps no categories for numbers (pyarrow stores the plain values; pandas reads numbers
    back): both readers read numbers, and say so where the column is a predictor."""
    rng = np.random.default_rng(4)
    n = 150
    dose = pd.Categorical(rng.choice([30, 10, 20], n), categories=[30, 10, 20])
    g = rng.integers(0, 8, n)
    y = rng.normal(size=n) + np.asarray(dose, dtype=float) / 10 + rng.normal(0, 2, 8)[g]
    frame = pd.DataFrame({"y": y, "dose": dose, "g": g})
    memory = fit(frame, model="y ~ dose + (1|g)")
    assert list(memory.fixef.index) == ["(Intercept)", "dose10", "dose20"]
    assert_same(memory, fit(frame, "duckdb", model="y ~ dose + (1|g)"))
    path = tmp_path / "dose.parquet"
    frame.to_parquet(path)
    for backend in ("memory", "duckdb"):
        with pytest.warns(hlm.errors.HLMWarning, match=r"column 'dose' .* categorical of numbers.*write C\(dose\)"):
            slope = hlm.fit("y ~ dose + (1|g)", str(path), backend=backend)
        assert list(slope.fixef.index) == ["(Intercept)", "dose"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", hlm.errors.HLMWarning)
        hlm.fit("y ~ 1 + (1|dose)", str(path))  # a grouping id: numbers or levels, the same groups
