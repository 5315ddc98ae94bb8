"""The DuckDB and Spark aggregation backends give the in-memory aggregates and fits.

Tolerances: counts, labels, codes, parents and cross-block pairs exactly; every
cross-product within 1e-8 of its natural scale (|a_ij - b_ij| <= 1e-8 sqrt(a_ii a_jj), i.e.
1e-8 relative, with structurally-zero sums such as sum(cses) compared on that scale);
fitted objective, fixed effects, SEs, theta and sigma within 1e-8 relative (1e-8 absolute
near zero).  Spark tests run on the three deployments of conftest.py's ``spark`` and skip
without pyspark or Java.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hlm
from hlm.aggregate import aggregate_any
from hlm.aggregate.duckdb import aggregate_duckdb
from hlm.errors import DataError, FormulaError
from hlm.lmm.collinear import remove_collinear
from hlm.lmm.objective import DevianceFunction
from hlm.lmm.pipeline import aggregate
from hlm.lmm.structure import build_structure
from hlm.spec import parse_model
from support import MIXED, dataset, reference

duckdb = pytest.importorskip("duckdb")


def assert_same_aggregates(a, b):
    assert (a.nobs, a.ndropped, a.response) == (b.nobs, b.ndropped, b.response)
    assert a.xnames == b.xnames and a.pool == b.pool
    scale = np.sqrt(np.outer(np.diag(a.ktk), np.diag(a.ktk)))
    assert (np.abs(a.ktk - b.ktk) <= 1e-8 * scale).all()
    assert a.chain == b.chain and a.term_factor == b.term_factor and a.term_columns == b.term_columns
    assert len(a.factors) == len(b.factors)
    for f, g in zip(a.factors, b.factors):
        assert (f.name, f.columns) == (g.name, g.columns)
        assert list(f.labels) == list(g.labels)
        np.testing.assert_array_equal(f.counts, g.counts)
        assert (f.ztz is None) == (g.ztz is None)
        if f.ztz is not None:
            zdiag = np.abs(f.ztz.diagonal(axis1=1, axis2=2))
            assert (np.abs(f.ztz - g.ztz) <= 1e-8 * np.sqrt(zdiag[:, :, None] * zdiag[:, None, :])).all()
            assert (np.abs(f.ztk - g.ztk) <= 1e-8 * np.sqrt(zdiag[:, :, None] * np.diag(a.ktk)[None, None, :])).all()
    assert len(a.parents) == len(b.parents)
    for p, q in zip(a.parents, b.parents):
        np.testing.assert_array_equal(p, q)
    assert len(a.cross) == len(b.cross)
    for c, d in zip(a.cross, b.cross):
        assert (c.i, c.j) == (d.i, d.j)
        np.testing.assert_array_equal(c.gi, d.gi)
        np.testing.assert_array_equal(c.gj, d.gj)
        np.testing.assert_allclose(c.zz, d.zz, rtol=1e-8)


def assert_same_fit(f1, f2):
    """Same objective function: at the first fit's theta both give the same objective, beta
    and sigma to 1e-8 relative; the optimizer's answers agree to its tolerance (1e-6)."""
    p1 = f1.devfun.profiled(np.asarray(f1.theta))
    p2 = f2.devfun.profiled(np.asarray(f1.theta))
    np.testing.assert_allclose(p2.objective, p1.objective, rtol=1e-8)
    np.testing.assert_allclose(p2.beta, p1.beta, rtol=1e-8, atol=1e-8 * np.abs(p1.beta).max())
    np.testing.assert_allclose(p2.sigma2, p1.sigma2, rtol=1e-8)
    np.testing.assert_allclose(f2.deviance, f1.deviance, rtol=1e-8)
    for a, b in [(f1.fixef, f2.fixef), (f1.se, f2.se)]:
        assert list(a.index) == list(b.index)
        np.testing.assert_allclose(b.to_numpy(), a.to_numpy(), rtol=1e-6, atol=1e-6 * np.abs(a.to_numpy()).max())
    np.testing.assert_allclose(f2.theta, f1.theta, rtol=1e-5, atol=1e-6)
    assert (f1.nobs, f1.ngroups) == (f2.nobs, f2.ngroups)


def _files(name, tmp_path):
    df = dataset(name)
    csv, pq = tmp_path / f"{name}.csv", tmp_path / f"{name}.parquet"
    df.to_csv(csv, index=False)
    df.to_parquet(pq)
    return df, csv, pq


def assert_same_objective(f_mem, agg, reml):
    """The objective built from ``agg`` equals the in-memory fit's at its theta (1e-8 relative)."""
    struct = build_structure(agg, tuple(t.name for t in f_mem.spec.random))
    p1 = f_mem.devfun.profiled(np.asarray(f_mem.theta))
    p2 = DevianceFunction.build(remove_collinear(agg)[0], struct, reml).profiled(np.asarray(f_mem.theta))
    np.testing.assert_allclose(p2.objective, p1.objective, rtol=1e-8)
    np.testing.assert_allclose(p2.beta, p1.beta, rtol=1e-8, atol=1e-8 * np.abs(p1.beta).max())
    np.testing.assert_allclose(p2.sigma2, p1.sigma2, rtol=1e-8)


@pytest.mark.parametrize("name", MIXED)
def test_duckdb_matches_memory(name, tmp_path, fits):
    ref = reference(name)
    spec = parse_model(ref["formula"])
    df, csv, pq = _files(ref["dataset"]["name"], tmp_path)
    mem, _ = aggregate(spec, df)
    agg = aggregate_duckdb(spec, pq)
    assert_same_aggregates(mem, agg)
    # a CSV loses dtypes (Grunfeld's firm_f becomes integer): compare with pandas reading the same file
    assert_same_aggregates(aggregate(spec, pd.read_csv(csv))[0], aggregate_duckdb(spec, csv))
    assert_same_objective(fits(name), agg, ref["REML"])


@pytest.mark.parametrize(
    "name", ["sleepstudy__slope_REML", "Pastes__nested_ML", "Penicillin__crossed_REML", "Hsb82__rs_REML"]
)
def test_duckdb_fit_from_path(name, tmp_path, fits):
    ref = reference(name)
    _, _, pq = _files(ref["dataset"]["name"], tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_same_fit(fits(name), hlm.fit(ref["formula"], str(pq), reml=ref["REML"]))


HSB_MODELS = [
    "mAch ~ sx + sector + cses + (1 | school)",  # categorical, treatment coding
    "mAch ~ sx * cses + sector:meanses + (cses | school)",  # interactions with categoricals
    "mAch ~ 0 + sx + ses + (1 | school)",  # full-rank coding
    "mAch ~ log(ses + 5) + exp(cses / 10) + np.sqrt(ses + 4) + I(ses**2) + I(-meanses / 2) + (1 | school)",
    "mAch ~ center(ses) + center(ses):sx + ses:sector + np.log(meanses + 2) + (1 | school)",
    "mAch ~ C(minrty) * sector + (1 | sector:school)",
    "mAch ~ poly(ses, 3) + poly(cses, 2, raw = TRUE):sx + scale(meanses) + abs(ses) + log1p(ses^2) + (1 | school)",
    "mAch ~ factor(sector) * I(ses^2) + offset(0.5 * cses) + (1 | school)",
    "mAch ses sector || school: ses",  # Stata syntax
]


@pytest.fixture(scope="module")
def hsb(tmp_path_factory):
    df = dataset("Hsb82")
    df.loc[[3, 17, 400], "ses"] = np.nan  # missing values are dropped identically
    df.loc[[5, 900], "sx"] = None
    path = tmp_path_factory.mktemp("hsb") / "hsb.parquet"
    df.to_parquet(path)
    return df, path


@pytest.mark.parametrize("model", HSB_MODELS)
def test_duckdb_fixed_part_translation(model, hsb):
    df, path = hsb
    spec = parse_model(model)
    mem, _ = aggregate(spec, df)
    agg = aggregate_duckdb(spec, path)
    assert_same_aggregates(mem, agg)
    if "ses" in model or "sx" in model:
        assert agg.ndropped > 0


def test_center_uses_the_mean_of_the_complete_rows(hsb):
    df, path = hsb
    agg = aggregate_duckdb(parse_model("mAch ~ center(ses) + (1 | school)"), path)
    ok = df[["mAch", "ses", "school"]].dropna()
    manual = df.assign(ses_c=df["ses"] - ok["ses"].mean())
    mem, _ = aggregate(parse_model("mAch ~ ses_c + (1 | school)"), manual)
    assert agg.xnames == ("(Intercept)", "center(ses)") and agg.nobs == len(ok)
    np.testing.assert_allclose(agg.ktk, mem.ktk, rtol=1e-8, atol=1e-8 * np.abs(mem.ktk).max())


def test_duckdb_relation_and_sql(hsb):
    df, path = hsb
    spec = parse_model("mAch ~ sx * cses + (1 | school)")
    mem, _ = aggregate(spec, df)
    con = duckdb.connect()
    rel = con.read_parquet(str(path))
    assert_same_aggregates(mem, aggregate_duckdb(spec, rel))
    agg, _ = aggregate_any(spec, None, sql=f"SELECT * FROM read_parquet('{path}')", con=con)
    assert_same_aggregates(mem, agg)
    sub = df[df["school"] != 1224]
    f_sql = hlm.fit("mAch ~ sx * cses + (1 | school)", sql=f"SELECT * FROM '{path}' WHERE school <> 1224", con=con)
    f_mem = hlm.fit("mAch ~ sx * cses + (1 | school)", sub)
    assert_same_fit(f_mem, f_sql)


def test_nested_by_unique_ids_and_crossed(tmp_path):
    """Nesting decided from the data (MIN = MAX per group) when ids are unique, and crossed blocks."""
    rng = np.random.default_rng(1)
    n = 600
    school = rng.integers(0, 12, n)
    klass = school * 10 + rng.integers(0, 4, n)  # globally unique class ids nested in schools
    rater = rng.integers(0, 5, n)  # crossed with schools
    df = pd.DataFrame(
        {"y": rng.normal(size=n), "x": rng.normal(size=n), "school": school, "klass": klass.astype(str), "rater": rater}
    )
    path = tmp_path / "d.parquet"
    df.to_parquet(path)
    for model in [
        "y ~ x + (1 | school) + (1 | klass)",
        "y ~ x + (x | school) + (1 | rater)",
        "y ~ x + (1 | school) + (1 | klass) + (1 | rater)",
        "y ~ x + (1 | school/rater)",
    ]:
        spec = parse_model(model)
        assert_same_aggregates(aggregate(spec, df)[0], aggregate_duckdb(spec, path))


@pytest.mark.parametrize(
    "model,bad",
    [
        ("mAch ~ sin(ses) + (1 | school)", "sin"),
        ("mAch ses sector || school: poly(ses, 2)", "poly(ses, 2)"),  # Stata syntax keeps formulaic's terms
    ],
)
def test_unsupported_term_is_named(model, bad, hsb):
    with pytest.raises(FormulaError, match=bad.replace("(", r"\(").replace(")", r"\)")):
        aggregate_duckdb(parse_model(model), hsb[1])


def test_backend_dispatch(hsb, tmp_path):
    df, path = hsb
    spec = parse_model("mAch ~ sx + (1 | school)")
    mem, _ = aggregate(spec, df)
    assert_same_aggregates(mem, aggregate_any(spec, path)[0])  # auto: path -> duckdb
    assert_same_aggregates(mem, aggregate_any(spec, str(path), backend="memory")[0])
    assert_same_aggregates(mem, aggregate_any(spec, df, backend="duckdb")[0])  # a frame through duckdb
    with pytest.raises(hlm.OptionError):
        aggregate_any(spec, df, backend="oracle")
    with pytest.raises(hlm.FileError):
        aggregate_any(spec, tmp_path / "missing.parquet")
    with pytest.raises(hlm.ColumnError):
        aggregate_duckdb(parse_model("mAch ~ nosuch + (1 | school)"), path)


# ----------------------------------------------------------------------------------- Spark

SPARK_CASES = list(
    dict.fromkeys(  # every MIXED fixture's (data, formula) (REML and ML share them), plus translation
        [(reference(n)["dataset"]["name"], reference(n)["formula"]) for n in MIXED]
        + [
            (
                "Hsb82",
                "mAch ~ sx * cses + sector:meanses + log(ses + 5) + center(ses) + ses:sector + C(minrty) "
                "+ (1 | school)",
            ),
            ("Hsb82", "mAch ~ poly(ses, 2) + scale(cses) + I(meanses^2) + offset(0.5 * cses) + (I(cses^2) | school)"),
            ("kb07like", "rt ~ 1 + spkr * prec * load + (1 | subj) + (1 | item)"),  # crossed: pair blocks in Spark
            ("kb07like", "rt ~ 1 + spkr * prec * load + (1 + spkr | subj) + (1 + prec | item)"),
        ]
    )
)
CLUSTER_CASES = [  # on the standalone and Connect deployments: one of each query path and the translation
    SPARK_CASES[0],  # random slopes: GROUP BY with sum z z' and z k'
    ("Pastes", "strength ~ 1 + (1 | batch/cask)"),  # a nested chain: one GROUP BY of the innermost groups
    ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),  # crossed: GROUPING SETS and the cross block
    SPARK_CASES[-2],  # categorical levels, center() means (prepass) and missing values
]
SPARK_PARAMS = [  # the other cases run on the local deployment only (conftest.py deselects them elsewhere)
    pytest.param(*case, marks=() if case in CLUSTER_CASES else pytest.mark.spark_local_only) for case in SPARK_CASES
]


@pytest.mark.slow
@pytest.mark.xdist_group("spark")  # one Spark session at a time (conftest.py): keep them on one worker
@pytest.mark.parametrize("name,model", SPARK_PARAMS)
def test_spark_matches_memory(name, model, spark, tmp_path):
    df = dataset(name)
    if name == "Hsb82":
        df.loc[[3, 17], "ses"] = np.nan
    path = tmp_path / f"{name}.parquet"
    df.to_parquet(path)
    spec = parse_model(model)
    sdf = spark.read.parquet(str(path))
    agg, _ = aggregate_any(spec, sdf)  # auto: a Spark DataFrame -> spark
    assert_same_aggregates(aggregate(spec, df)[0], agg)


@pytest.mark.slow
@pytest.mark.xdist_group("spark")
def test_spark_fit_and_errors(spark, tmp_path, fits):
    df = dataset("Pastes")
    path = tmp_path / "pastes.parquet"
    df.to_parquet(path)
    sdf = spark.read.parquet(str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_same_fit(fits("Pastes__nested_REML"), hlm.fit("strength ~ 1 + (1 | batch/cask)", sdf))
    with pytest.raises(FormulaError, match="sin"):
        aggregate_any(parse_model("strength ~ sin(strength) + (1 | batch)"), sdf)
    grunfeld = tmp_path / "g.parquet"
    dataset("Grunfeld").to_parquet(grunfeld)
    gdf = spark.read.parquet(str(grunfeld))
    mem = hlm.xtreg("inv value capital", dataset("Grunfeld"), panel="firm", estimator="re")
    np.testing.assert_allclose(
        hlm.xtreg("inv value capital", gdf, panel="firm", estimator="re").params, mem.params, rtol=1e-9
    )


@pytest.mark.slow
@pytest.mark.xdist_group("spark")
def test_spark_precision_weights(spark, tmp_path):
    """Weighted sums in Spark's GROUP BY: the in-memory weighted aggregates, zero weights dropped
    and counted, a negative weight named."""
    df = dataset("sleepstudy")
    df["w"] = np.random.default_rng(2).uniform(0.2, 3.0, len(df))
    df.loc[::11, "w"] = 0.0
    path = tmp_path / "sw.parquet"
    df.to_parquet(path)
    sdf = spark.read.parquet(str(path))
    spec = parse_model("Reaction ~ Days + (Days | Subject)")
    mem, _ = aggregate(spec, df, weights="w")
    agg, _ = aggregate_any(spec, sdf, weights="w")
    assert_same_aggregates(mem, agg)
    assert (agg.weights, agg.zero_weights) == ("w", mem.zero_weights)
    assert agg.log_weights == pytest.approx(mem.log_weights, rel=1e-12)
    df.loc[4, "w"] = -1.0
    df.to_parquet(path)
    with pytest.raises(DataError, match="weights column 'w' has 1 negative values"):
        aggregate_any(spec, spark.read.parquet(str(path)), weights="w")


@pytest.mark.slow
@pytest.mark.xdist_group("spark")
def test_spark_fit_is_two_queries(spark, tmp_path):
    """A fit without categorical columns or centring costs two Spark jobs: the row count with
    the K'K scan, and the GROUP BY (each a few round trips through Spark Connect)."""
    from hlm.aggregate import spark as backend

    path = tmp_path / "sleep.parquet"
    dataset("sleepstudy").to_parquet(path)
    queries = []
    run = backend.SparkSource.run

    def spy(self, query):
        queries.append(query)
        return run(self, query)

    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mp.setattr(backend.SparkSource, "run", spy)
        fit = hlm.fit("Reaction ~ Days + (Days | Subject)", spark.read.parquet(str(path)))
    assert len(queries) == 2 and fit.nobs == 180


@pytest.mark.slow
@pytest.mark.xdist_group("spark")
def test_spark_levels_with_braces_and_quotes(spark, tmp_path):
    """Level labels are SQL string literals inside a text that spark.sql formats: braces and
    quotes in them survive (the in-memory aggregates)."""
    rng = np.random.default_rng(4)
    df = pd.DataFrame({"c": rng.choice(["a{0}", "b}", "c'{x", "{hlm_source}"], 60), "g": np.repeat(np.arange(6), 10)})
    df["y"] = rng.normal(size=60) + (df["c"] == "b}")
    path = tmp_path / "braces.parquet"
    df.to_parquet(path)
    spec = parse_model("y ~ c + (1 | g)")
    agg, _ = aggregate_any(spec, spark.read.parquet(str(path)))
    assert_same_aggregates(aggregate(spec, df)[0], agg)


def _readme_cluster_example() -> str:
    """The README's Spark cluster example, as written there."""
    text = (Path(__file__).parents[2] / "README.md").read_text()
    start = text.index("```python", text.index("On a Spark cluster")) + len("```python")
    return text[start : text.index("```", start)]


@pytest.mark.slow
@pytest.mark.xdist_group("spark")
def test_readme_cluster_example_runs_on_spark_connect(spark_connect_remote, tmp_path):
    """The README's example, run as written with the server's URL and a local folder of parquet
    files in place of the cluster's: the in-memory fit of the same rows."""
    code = _readme_cluster_example()
    assert "sc://spark-master:15002" in code and "s3a://bucket/scores/" in code
    df = _four_levels(np.random.default_rng(5), "strings").rename(
        columns={"d": "dist_id", "s": "school_id", "t": "teach_id", "st": "student_id", "x": "tutoring", "y": "perform"}
    )
    folder = tmp_path / "scores"
    folder.mkdir()
    df.iloc[:120].to_parquet(folder / "part-0.parquet")
    df.iloc[120:].to_parquet(folder / "part-1.parquet")
    code = code.replace("sc://spark-master:15002", spark_connect_remote).replace("s3a://bucket/scores/", str(folder))
    body = ast.parse(code).body
    *statements, last = body
    assert isinstance(last, ast.Expr)  # the example ends with the fit
    names: dict = {"hlm": hlm}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(ast.Module(statements, type_ignores=[]), "README.md", "exec"), names)
            fit = eval(compile(ast.Expression(last.value), "README.md", "eval"), names)
            mem = hlm.fit("perform ~ tutoring + (1|dist_id/school_id/teach_id/student_id)", df)
    finally:
        names["spark"].stop()
    assert fit.nobs == mem.nobs == 240
    assert_same_fit(mem, fit)


def test_write_predictions_matches_predict(hsb, tmp_path):
    from hlm.predict.duckdb import write_predictions

    df, path = hsb
    model = "mAch ~ sx * cses + (cses | school)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f_db = hlm.fit(model, str(path))
        f_mem = hlm.fit(model, df)
    out = tmp_path / "pred.parquet"
    assert write_predictions(f_db, path, out) == len(df)
    got = pd.read_parquet(out)
    assert list(got.columns) == list(df.columns) + ["fitted", "residual"]
    ok = df[["mAch", "sx", "cses", "school"]].notna().all(axis=1).to_numpy()
    assert got["fitted"].isna().to_numpy().tolist() == (~ok).tolist()
    # same rows in the same order as the file (DuckDB keeps insertion order for a single file)
    np.testing.assert_array_equal(got["school"].to_numpy(), df["school"].to_numpy())
    pred = np.asarray(f_mem.predict())[ok]
    np.testing.assert_allclose(got["fitted"].to_numpy()[ok], np.asarray(pred), rtol=1e-5)
    np.testing.assert_allclose(
        got["residual"].to_numpy()[ok], df["mAch"].to_numpy()[ok] - np.asarray(pred), rtol=1e-5, atol=1e-5
    )
    write_predictions(f_db, path, out, re=False, overwrite=True)  # an existing file is replaced only when asked
    fixed = pd.read_parquet(out)["fitted"].to_numpy()[ok]
    np.testing.assert_allclose(fixed, np.asarray(f_mem.predict(re=False))[ok], rtol=1e-5)


def test_panel_stats_through_duckdb(tmp_path):
    from hlm.panel.design import build_design
    from hlm.panel.engine import engine_stats
    from hlm.panel.stats import panel_stats

    df = dataset("Grunfeld")
    df.loc[[4, 30], "value"] = np.nan
    path = tmp_path / "g.parquet"
    df.to_parquet(path)
    for model in ["inv value capital", "inv ~ value + capital"]:
        mem = panel_stats(build_design(model, df, panel="firm"))
        sql, agg = engine_stats(model, str(path), panel="firm")
        assert sql.N == mem.N and agg.ndropped == 2
        np.testing.assert_array_equal(sql.T, mem.T)
        np.testing.assert_allclose(sql.S, mem.S, rtol=1e-10)
        np.testing.assert_allclose(sql.ZZ, mem.ZZ, rtol=1e-10)
        np.testing.assert_allclose(sql.within, mem.within, rtol=1e-8, atol=1e-8 * np.abs(mem.within).max())


@pytest.mark.parametrize("estimator", ["fe", "re", "be", "pooled"])
def test_xtreg_from_a_file_runs_in_duckdb(tmp_path, estimator):
    df = dataset("Grunfeld")
    df.loc[[4, 30], "value"] = np.nan
    path = tmp_path / "g.parquet"
    df.to_parquet(path)
    mem = hlm.xtreg("inv value capital", df, panel="firm", estimator=estimator)
    eng = hlm.xtreg("inv value capital", str(path), panel="firm", estimator=estimator)
    assert eng.terms == mem.terms and eng.n_dropped == mem.n_dropped == 2
    np.testing.assert_allclose(eng.params, mem.params, rtol=1e-9)
    np.testing.assert_allclose(eng.vcov, mem.vcov, rtol=1e-8)
    for name in ("sigma_u", "sigma_e", "rho", "r2_within", "r2_between", "r2_overall"):
        a, b = getattr(eng, name), getattr(mem, name)
        assert (a is None and b is None) or a == pytest.approx(b, rel=1e-8, nan_ok=True), name
    robust = hlm.xtreg(
        "inv value capital",
        str(path),
        panel="firm",
        estimator=estimator,
        vce="robust" if estimator != "be" else "conventional",
    )  # rows are loaded for a second pass
    assert robust.terms == mem.terms


# ------------------------------------------------------------------------- error messages


def test_unknown_column_suggests_close_names(hsb):
    df, path = hsb
    with pytest.raises(hlm.ColumnError, match=r"column 'sess' is not in the data; did you mean 'ses'"):
        aggregate_duckdb(parse_model("mAch ~ sess + (1 | school)"), path)
    with pytest.raises(hlm.ColumnError, match=r"did you mean 'ses'"):
        aggregate_duckdb(parse_model("mAch ~ log(sess + 1) + (1 | school)"), path)
    with pytest.raises(hlm.ColumnError, match=r"did you mean 'ses'"):  # same message as the in-memory path
        aggregate(parse_model("mAch ~ sess + (1 | school)"), df)


@pytest.mark.parametrize(
    "model,column",
    [
        ("y ~ x + (1 | g)", "x"),  # an empty predictor column (DuckDB types it VARCHAR)
        ("x ~ y + (1 | g)", "x"),  # an empty response column
        ("y ~ x + z + (1 | g)", "x"),
        ("y ~ z + (1 | x)", "x"),
    ],
)
def test_all_missing_column_is_named(model, column, tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("y,x,z,g\n1.5,,1,a\n2.5,,0,a\n3.5,,1,b\n4.5,,0,b\n")
    spec = parse_model(model)
    with pytest.raises(hlm.DataError, match=rf"column '{column}' has no values: every row is missing"):
        aggregate_duckdb(spec, path)
    with pytest.raises(hlm.DataError):  # the in-memory path refuses it too
        aggregate(spec, pd.read_csv(path))


def test_categorical_without_complete_rows(tmp_path):
    """Every row misses some model column, none is empty: the in-memory path's message."""
    path = tmp_path / "holes.csv"
    path.write_text("y,c,g\n1.5,,a\n,u,a\n3.5,,b\n,v,b\n")
    with pytest.raises(hlm.DataError, match="every row has a missing value"):
        aggregate_duckdb(parse_model("y ~ c + (1 | g)"), path)


@pytest.mark.parametrize(
    "content,reason",
    [
        (b"y,x,g\n1,2,caf\xe9\n3,4,b\n", "not utf-8"),  # Latin-1 bytes
        (b"y,x\n1,2\n" + bytes(range(1, 255)) * 50, "sniffing"),  # no CSV dialect fits
        (b"y,x,g\n" + b"1,2,3\n" * 30000 + b"1,2,3,4\n", "Expected Number of Columns"),  # a ragged row past the sample
    ],
)
def test_unreadable_csv_is_a_file_error(content, reason, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(hlm.FileError, match=rf"cannot read '{path}' as csv: .*{reason}"):
        aggregate_duckdb(parse_model("y ~ x + (1 | g)"), path)
    with pytest.raises(hlm.FileError, match="cannot read"):
        hlm.fit("y ~ x + (1 | g)", str(path))


def test_model_errors_on_sql_sources_stay_data_errors():
    con = duckdb.connect()
    with pytest.raises(hlm.DataError):
        aggregate_duckdb(parse_model("y ~ x + (1 | g)"), sql="SELECT 'a' AS y, 1.0 AS x, 1 AS g", con=con)


# ----------------------------------------------------------- slash-nested chains (one GROUP BY)


def _four_levels(rng, ids):
    """A small 4-level design; ``ids`` picks how the innermost ids are written."""
    d = np.repeat(np.arange(6), 40)
    s = d * 3 + np.tile(np.repeat(np.arange(3), 40 // 3 + 1)[:40], 6)  # unbalanced schools
    t = s * 2 + rng.integers(0, 2, len(d))
    st = np.arange(len(d)) // 2  # two rows per student
    if ids == "restart":  # ids restart within every teacher: only the full key names a student
        st = pd.Series(st).groupby(t).transform(lambda v: v - v.min()).to_numpy()
    elif ids == "shuffled":  # globally unique but not in the order of the outer keys
        st = rng.permutation(st.max() + 1)[st] + 1000
    elif ids == "strings":
        st = np.array([f"s{v:03d}" for v in rng.permutation(st.max() + 1)[st]], dtype=object)
    df = pd.DataFrame({"d": d, "s": s, "t": t, "st": st, "x": rng.normal(size=len(d))})
    df["y"] = df["x"] + rng.normal(size=len(d)) + df["d"] * 0.3
    return df.sample(frac=1.0, random_state=3).reset_index(drop=True)


@pytest.mark.parametrize("ids", ["sorted", "restart", "shuffled", "strings"])
@pytest.mark.parametrize(
    "model,one_group_by",
    [
        ("y ~ x + (1 | d/s/t/st)", True),  # labels innermost first: st:t:s:d
        ("y ~ x + (x | d) + (1 | d:s) + (1 | d:s:t:st)", True),  # labels outermost first
        ("y ~ x + (x | d/s) + (1 | d:s:t)", False),  # mixed label orders: the GROUPING SETS path
    ],
)
def test_slash_nested_chain_from_innermost_groups(ids, model, one_group_by, tmp_path):
    df = _four_levels(np.random.default_rng(7), ids)
    df.loc[[2, 11], "x"] = np.nan
    path = tmp_path / "four.parquet"
    df.to_parquet(path)
    spec = parse_model(model)
    calls = []
    from hlm.aggregate import sql as q

    orig = q.Plan.group_query

    def spy(self, src, sets=None, **kw):
        calls.append(sets)
        return orig(self, src, sets, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(q.Plan, "group_query", spy)
        agg = aggregate_duckdb(spec, path)
    assert calls == ([[tuple(range(len(spec.group_columns)))]] if one_group_by else [None])
    assert_same_aggregates(aggregate(spec, df)[0], agg)


def test_slash_nested_chain_with_tied_group_counts(tmp_path):
    """One student per teacher: the chain order is decided from every factor's groups."""
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"s": np.repeat(np.arange(8), 6), "t": np.repeat(np.arange(24), 2)})
    df["st"] = df["t"] + 100
    df["y"] = rng.normal(size=len(df))
    path = tmp_path / "tied.parquet"
    df.to_parquet(path)
    spec = parse_model("y ~ 1 + (1 | s/t/st)")
    assert_same_aggregates(aggregate(spec, df)[0], aggregate_duckdb(spec, path))
