"""Crossed random effects fitted through the SQL engines: the per-factor blocks (``GROUP BY``
each factor) and the pair block (``GROUP BY`` each pair of factors) are computed in DuckDB or
Spark, only those rows reach Python, and the in-memory crossed evaluator fits from them.

References: the same model fitted from the pandas frame (objective to 1e-9 relative; fixed
effects to 1e-8 relative of their scale; theta and sigma to the optimizer's tolerance, and
to 1e-9 at the same theta), lme4's stored Penicillin fit, and an independent dense numpy
evaluation of lme4's profiled criterion (V = I + Z Lambda Lambda' Z', n x n).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from formulaic import model_matrix

import hlm
from hlm.aggregate.duckdb import aggregate_duckdb
from hlm.spec import parse_model
from support import dataset, reference

duckdb = pytest.importorskip("duckdb")


def _small_crossed() -> pd.DataFrame:
    """30 raters x 12 items, unbalanced, some pairs missing and some repeated; a slope on x."""
    rng = np.random.default_rng(3)
    n = 900
    u, i, x = rng.integers(0, 30, n), rng.integers(0, 12, n), rng.normal(size=n)
    b_u, s_u, b_i = rng.normal(size=30), rng.normal(size=30), rng.normal(size=12)
    y = 1 + 0.5 * x + 0.8 * b_u[u] + 0.5 * b_i[i] + 0.3 * x * s_u[u] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "u": [f"u{k:02d}" for k in u], "i": i})


CASES = [
    ("small", "y ~ x + (1 | u) + (1 | i)"),
    ("small", "y ~ x + (x | u) + (1 | i)"),
    ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    ("kb07like", "rt ~ 1 + spkr * prec * load + (1 | subj) + (1 | item)"),
]


def _data(name: str) -> pd.DataFrame:
    return _small_crossed() if name == "small" else dataset(name)


def _fit(model: str, data: object, reml: bool) -> hlm.Fit:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hlm.fit(model, data, reml=reml)


def _dense_criterion(df: pd.DataFrame, model: str, theta: np.ndarray, reml: bool) -> float:
    """lme4's profiled deviance (ML) or REML criterion of a crossed random-intercept model at
    theta, from dense matrices: V = I + Z diag(theta_f^2) Z', beta by GLS, r'V^-1 r profiled."""
    spec = parse_model(model)
    y = df[spec.response].to_numpy(float)
    Xm = np.asarray(model_matrix(spec.fixed, df), dtype=float)  # numeric columns: formulaic's X is R's
    d = []
    Zs = []
    for t, term in enumerate(spec.random):
        codes = pd.factorize(df[term.group[0]], sort=True)[0]
        Z = np.zeros((len(df), codes.max() + 1))
        Z[np.arange(len(df)), codes] = 1.0
        Zs.append(Z)
        d.append(np.full(Z.shape[1], theta[t] ** 2))
    Z = np.hstack(Zs)
    V = np.eye(len(df)) + (Z * np.concatenate(d)) @ Z.T
    C = np.linalg.cholesky(V)
    Xw, yw = np.linalg.solve(C, Xm), np.linalg.solve(C, y)
    beta = np.linalg.lstsq(Xw, yw, rcond=None)[0]
    r2 = float(np.sum((yw - Xw @ beta) ** 2))
    logdet = 2 * np.sum(np.log(np.diag(C)))
    n, p = Xm.shape
    if not reml:
        return float(logdet + n * (1 + np.log(2 * np.pi * r2 / n)))
    return float(logdet + np.linalg.slogdet(Xw.T @ Xw)[1] + (n - p) * (1 + np.log(2 * np.pi * r2 / (n - p))))


def assert_same_fit(mem: hlm.Fit, eng: hlm.Fit) -> None:
    """The engine's fit is the in-memory one: objective 1e-9, fixed effects 1e-8, the same
    criterion and estimates at the same theta (1e-9), theta and sigma to the optimizer's tolerance."""
    obj = mem.profiled.objective
    assert eng.profiled.objective == pytest.approx(obj, rel=1e-9)
    scale = np.abs(mem.fixef.to_numpy()).max()
    np.testing.assert_allclose(eng.fixef.to_numpy(), mem.fixef.to_numpy(), rtol=1e-8, atol=1e-8 * scale)
    at = eng.devfun.profiled(np.asarray(mem.theta))
    assert at.objective == pytest.approx(obj, rel=1e-9)
    np.testing.assert_allclose(at.beta, mem.profiled.beta, rtol=1e-9, atol=1e-9 * scale)
    assert at.sigma2 == pytest.approx(mem.profiled.sigma2, rel=1e-9)
    np.testing.assert_allclose(eng.theta, mem.theta, rtol=1e-5, atol=1e-6)
    assert eng.sigma == pytest.approx(mem.sigma, rel=1e-6)
    assert (eng.nobs, eng.ngroups) == (mem.nobs, mem.ngroups)


@pytest.mark.parametrize("name,model", CASES)
@pytest.mark.parametrize("reml", [True, False])
def test_crossed_from_parquet_through_duckdb(name, model, reml, tmp_path):
    df = _data(name)
    path = tmp_path / f"{name}.parquet"
    df.to_parquet(path)
    mem = _fit(model, df, reml)
    eng = _fit(model, str(path), reml)  # auto: a Parquet path -> DuckDB
    assert eng.aggregates.cross and not eng.aggregates.chain
    assert_same_fit(mem, eng)
    if "(x |" not in model:  # random intercepts: an independent dense evaluation of the criterion
        assert eng.profiled.objective == pytest.approx(
            _dense_criterion(df, model, np.asarray(eng.theta), reml), rel=1e-9
        )


def test_penicillin_through_duckdb_matches_lme4(tmp_path):
    ref = reference("Penicillin__crossed_REML")
    path = tmp_path / "pen.parquet"
    dataset("Penicillin").to_parquet(path)
    f = _fit(ref["formula"], str(path), True)
    assert f.reml_criterion == pytest.approx(ref["REMLcrit"], rel=1e-7)
    assert f.sigma == pytest.approx(ref["sigma"], rel=1e-4)
    np.testing.assert_allclose(f.theta, ref["theta_vector"], rtol=1e-4)


def test_only_the_pair_aggregates_leave_the_engine(tmp_path):
    """The pair block holds one entry per (u, i) pair present: Z_u'Z_i's nonzeros, counted in SQL."""
    df = _small_crossed()
    path = tmp_path / "small.parquet"
    df.to_parquet(path)
    agg = aggregate_duckdb(parse_model("y ~ x + (1 | u) + (1 | i)"), path)
    (block,) = agg.cross
    pairs = df.groupby(["u", "i"]).size()
    assert len(block.gi) == len(pairs)
    u_codes = pd.factorize(df["u"], sort=True)[1]
    i_codes = pd.factorize(df["i"], sort=True)[1]
    got = pd.Series(block.zz[:, 0, 0], index=pd.MultiIndex.from_arrays([u_codes[block.gi], i_codes[block.gj]]))
    pd.testing.assert_series_equal(got.sort_index(), pairs.astype(float).sort_index(), check_names=False)
    np.testing.assert_array_equal(agg.factors[0].counts, df.groupby("u").size().to_numpy())
