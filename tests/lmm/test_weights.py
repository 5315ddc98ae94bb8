"""Precision weights (lme4's ``lmer(..., weights = w)``): row i has residual variance sigma^2 / w_i.

References: lme4's fits of sleepstudyF with a weight column (tests/reference/
sleepstudyF__formula_weights_{REML,ML}.json); theory (constant weights change only sigma;
a weighted fit is the unweighted fit of the rows scaled by sqrt(w) plus -sum log w in the
deviance); dense numpy likelihoods computed here; the in-memory path for the DuckDB one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import hlm
from hlm.aggregate.memory import aggregate_frame
from hlm.errors import ComparisonError, DataError, OptionError
from hlm.inference.bootstrap import bootstrap
from hlm.lmm.nested import nested_terms
from hlm.lmm.objective import DevianceFunction
from hlm.lmm.structure import build_structure
from hlm.modelframe import build_frame
from hlm.spec import parse_model
from support import DATA, REFERENCE, dataset

SLOPE = "Reaction ~ Days + (Days | Subject)"
LOG2PI = math.log(2 * math.pi)


def sleep() -> pd.DataFrame:
    return pd.read_csv(DATA / "sleepstudyF.csv")


def fixture(reml: bool) -> dict:
    return json.loads((REFERENCE / f"sleepstudyF__formula_weights_{'REML' if reml else 'ML'}.json").read_text())


def quiet_fit(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hlm.fit(*args, **kwargs)


# ------------------------------------------------------------------------ lme4's numbers
@pytest.mark.parametrize("reml", [True, False])
def test_lme4_fixture(reml):
    ref = fixture(reml)
    fit = hlm.fit(ref["formula"], sleep(), weights=ref["weights"], reml=reml)
    assert fit.nobs == ref["nobs"] == 180
    assert fit.profiled.objective == pytest.approx(ref["objective"], rel=1e-6)
    assert fit.profiled.objective <= ref["objective"] + 1e-6  # lme4's optimum or better
    se = {r["term"]: r["se"] for r in ref["fixef"]}
    for r in ref["fixef"]:
        assert abs(fit.fixef[r["term"]] - r["estimate"]) <= 1e-3 * r["se"]
        assert fit.se[r["term"]] == pytest.approx(se[r["term"]], rel=2e-4)
    # the REML surface is flat in the Days SD: lme4 stopped 4e-7 above the optimum hlm finds (a
    # tight Nelder-Mead from either point agrees with hlm), its SD 1.3e-4 relative away; at
    # lme4's own theta, hlm's criterion, beta and sigma are lme4's to 1e-9
    sds = [sd for g in ref["varcorr"]["groups"] for sd in g["sd"]]
    ours = fit.varcorr[fit.varcorr.var2.isna() & (fit.varcorr.group != "Residual")].sdcor.to_numpy()
    np.testing.assert_allclose(ours, sds, rtol=2e-4 if reml else 1e-5)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-4)
    at_lme4 = fit.devfun.profiled(np.array(ref["theta_vector"]))
    assert at_lme4.objective == pytest.approx(ref["objective"], rel=1e-9)
    np.testing.assert_allclose(at_lme4.beta, [r["estimate"] for r in ref["fixef"]], rtol=1e-9)
    assert math.sqrt(at_lme4.sigma2) == pytest.approx(ref["sigma"], rel=1e-9)
    dc = ref["devcomp_cmp"]
    assert at_lme4.pwrss == pytest.approx(dc["pwrss"], rel=1e-9)
    assert at_lme4.logdet_h == pytest.approx(dc["ldL2"] - np.log(sleep()["w"]).sum(), rel=1e-9)
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-7)
    dev = ref["deviance_ML_at_estimates"] if reml else ref["deviance"]
    assert fit.deviance == pytest.approx(dev, rel=1e-6)
    np.testing.assert_allclose(fit.fitted().to_numpy()[:10], ref["fitted_head"], atol=5e-3)
    np.testing.assert_allclose(fit.residuals().to_numpy()[:10], ref["residuals_head"], atol=5e-3)
    re = ref["ranef"][0]
    table = fit.ranef()
    for term, modes in re["mode"].items():
        rows = table[(table.term == term) & table.level.isin(re["levels"])].set_index("level").loc[re["levels"]]
        np.testing.assert_allclose(rows.estimate.to_numpy(), modes, atol=2e-3 * np.abs(modes).max())
        np.testing.assert_allclose(rows.std_error.to_numpy(), re["cond_sd"][term], rtol=2e-4)


def test_lme4_satterthwaite():
    ref = fixture(True)
    fit = hlm.fit(ref["formula"], sleep(), weights="w")
    tidy = fit.tidy(ddf="satterthwaite").set_index("term")
    for r in ref["satterthwaite"]:
        assert tidy.loc[r["term"], "df"] == pytest.approx(r["df"], rel=1e-3)
        assert tidy.loc[r["term"], "p_value"] == pytest.approx(r["p"], rel=2e-2)


# ------------------------------------------------------------------------ theory
@pytest.mark.parametrize("reml", [True, False])
def test_constant_weights_change_only_sigma(reml):
    """w = c for all rows: Var(e) = sigma^2 / c is the unweighted model with sigma_u = sigma / sqrt(c);
    the likelihood, fixed effects, SEs and random SDs are those of the unweighted fit."""
    df, c = sleep(), 3.7
    base = hlm.fit(SLOPE, df, reml=reml)
    fit = hlm.fit(SLOPE, df.assign(w=c), weights="w", reml=reml)
    assert fit.loglik == pytest.approx(base.loglik, rel=1e-9)
    assert fit.sigma == pytest.approx(base.sigma * math.sqrt(c), rel=1e-5)
    np.testing.assert_allclose(fit.fixef, base.fixef, rtol=1e-6)
    np.testing.assert_allclose(fit.se, base.se, rtol=1e-5)
    np.testing.assert_allclose(fit.varcorr.sdcor.to_numpy()[:-1], base.varcorr.sdcor.to_numpy()[:-1], rtol=1e-4)
    if reml:  # known linear transformations of y leave the small-sample df alone
        for ddf in ("satterthwaite", "kenward-roger"):
            np.testing.assert_allclose(fit.tidy(ddf=ddf)["df"], base.tidy(ddf=ddf)["df"], rtol=1e-3)


@pytest.mark.parametrize("reml", [True, False])
def test_weighted_equals_scaled_rows(reml):
    """The weighted objective = the unweighted objective of rows scaled by sqrt(w) (y, X and Z,
    the intercept column included) minus sum log w, at any theta."""
    df = sleep()
    spec = parse_model(SLOPE)
    mf = build_frame(spec, df, "w")
    s = np.sqrt(df["w"].to_numpy(dtype=float))
    scaled = dataclasses.replace(mf, y=s * mf.y, X=s[:, None] * mf.X, Z=s[:, None] * mf.Z, w=None, weights=None)
    agg_w, agg_s = aggregate_frame(mf), aggregate_frame(scaled)
    struct = build_structure(agg_w, ("Subject",))
    fw, fs = DevianceFunction.build(agg_w, struct, reml), DevianceFunction.build(agg_s, struct, reml)
    for theta in ([0.9, -0.01, 0.2], [0.3, 0.1, 0.05], [2.0, 0.0, 1.0]):
        pw, ps = fw.profiled(np.array(theta)), fs.profiled(np.array(theta))
        assert pw.objective == pytest.approx(ps.objective - np.log(df["w"]).sum(), rel=1e-12)
        np.testing.assert_allclose(pw.beta, ps.beta, rtol=1e-12)


def dense_deviance(y, X, Z, w, G, beta, sigma, reml):
    """-2 log L (ML) or the REML criterion from V = Z G Z' + sigma^2 W^{-1}, numpy only."""
    V = Z @ G @ Z.T + sigma**2 * np.diag(1.0 / w)
    r = y - X @ beta
    out = np.linalg.slogdet(V)[1] + r @ np.linalg.solve(V, r) + len(y) * LOG2PI
    if reml:
        out += np.linalg.slogdet(X.T @ np.linalg.solve(V, X))[1] - X.shape[1] * LOG2PI
    return out


@pytest.mark.parametrize("reml", [True, False])
def test_dense_likelihood_random_slopes(reml):
    """The fit's criterion and GLS beta equal dense numpy's at the fit's estimates."""
    df = sleep()
    fit = hlm.fit(SLOPE, df, weights="w", reml=reml)
    subj = pd.factorize(df["Subject"], sort=True)[0]
    Z = np.zeros((len(df), 36))
    Z[np.arange(len(df)), 2 * subj] = 1.0
    Z[np.arange(len(df)), 2 * subj + 1] = df["Days"]
    cov = fit.varcorr
    s0, s1 = cov.sdcor[0], cov.sdcor[1]
    c01 = cov.vcov[2]
    G = np.kron(np.eye(18), np.array([[s0**2, c01], [c01, s1**2]])) / fit.sigma**2
    X = np.column_stack([np.ones(len(df)), df["Days"]])
    y, w = df["Reaction"].to_numpy(float), df["w"].to_numpy(float)
    Vi = np.linalg.inv(Z @ G @ Z.T + np.diag(1 / w))
    beta = np.linalg.solve(X.T @ Vi @ X, X.T @ Vi @ y)
    np.testing.assert_allclose(fit.fixef, beta, rtol=1e-9)
    crit = dense_deviance(y, X, Z, w, G * fit.sigma**2, beta, fit.sigma, reml)
    assert fit.profiled.objective == pytest.approx(crit, rel=1e-9)


def three_level(seed=3, parents=200, children=10, rows=3):
    """Random intercepts at two nested levels; weights constant within each leaf group."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(parents * children), rows)
    school = g // children
    x = rng.normal(size=len(g))
    y = (
        1
        + 0.5 * x
        + rng.normal(size=parents)[school]
        + 0.7 * rng.normal(size=parents * children)[g]
        + rng.normal(size=len(g))
    )
    w = np.where(rng.random(parents * children) < 0.5, 1.0, 2.5)[g]
    return pd.DataFrame({"y": y, "x": x, "school": school, "cls": g, "w": w})


def test_nested_pooled_recursion_matches_general():
    """Nested random intercepts: the compiled recursion with leaf groups pooled by weight sum gives
    the general block recursion's log|H| and K'H^{-1}K (minus sum log w) at any theta."""
    df = three_level()
    spec = parse_model("y ~ x + (1 | school/cls)")
    agg = aggregate_frame(build_frame(spec, df, "w"))
    struct = build_structure(agg, tuple(t.name for t in spec.random))
    dev = DevianceFunction.build(agg, struct, True)
    assert dev.pooled is not None and len(dev.pooled.counts) == 2  # W_g in {3, 7.5}
    for theta in ([0.8, 0.5], [0.1, 2.0]):
        logdet, Q = dev.terms(np.array(theta))
        ref_logdet, ref_Q = nested_terms(agg, struct, struct.lambdas(np.array(theta)))
        assert logdet == pytest.approx(ref_logdet - agg.log_weights, rel=1e-12)
        np.testing.assert_allclose(Q, ref_Q, rtol=1e-10)


def test_nested_fit_matches_dense_numpy():
    df = three_level(parents=30, children=4, rows=3)
    fit = hlm.fit("y ~ x + (1 | school/cls)", df, weights="w", reml=False)
    n = len(df)
    Z = np.zeros((n, 30 + 120))
    Z[np.arange(n), df["school"]] = 1.0
    Z[np.arange(n), 30 + df["cls"]] = 1.0
    vc = fit.varcorr.set_index("group").vcov
    G = np.diag(np.r_[np.full(30, vc["school"]), np.full(120, vc["cls:school"])])
    X = np.column_stack([np.ones(n), df["x"]])
    y, w = df["y"].to_numpy(), df["w"].to_numpy()
    crit = dense_deviance(y, X, Z, w, G, fit.fixef.to_numpy(), fit.sigma, False)
    assert fit.deviance == pytest.approx(crit, rel=1e-9)
    # conditional modes b = G Z'V^{-1}(y - X beta) and sds: (G^{-1} + Z'WZ / sigma^2)^{-1}
    V = Z @ G @ Z.T + fit.sigma**2 * np.diag(1 / w)
    b = G @ Z.T @ np.linalg.solve(V, y - X @ fit.fixef.to_numpy())
    cond = np.linalg.inv(np.linalg.inv(G) + Z.T @ (w[:, None] * Z) / fit.sigma**2)
    re = fit.ranef()
    school = re[re.group == "school"]
    np.testing.assert_allclose(school.estimate, b[:30], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(school.std_error, np.sqrt(np.diag(cond))[:30], rtol=1e-7)


def test_crossed_random_slopes_match_dense_numpy():
    """The general sparse crossed path (a random slope on crossed factors) under weights."""
    rng = np.random.default_rng(11)
    a, b = rng.integers(0, 12, 300), rng.integers(0, 8, 300)
    x = rng.normal(size=300)
    y = 2 + x + rng.normal(size=12)[a] + 0.5 * rng.normal(size=12)[a] * x + rng.normal(size=8)[b] + rng.normal(size=300)
    w = rng.uniform(0.3, 3.0, 300)
    df = pd.DataFrame({"y": y, "x": x, "a": a, "b": b, "w": w})
    fit = quiet_fit("y ~ x + (x | a) + (1 | b)", df, weights="w", reml=False)
    Z = np.zeros((300, 24 + 8))
    Z[np.arange(300), 2 * a] = 1.0
    Z[np.arange(300), 2 * a + 1] = x
    Z[np.arange(300), 24 + b] = 1.0
    vc = fit.varcorr
    Ga = np.array([[vc.vcov[0], vc.vcov[2]], [vc.vcov[2], vc.vcov[1]]])
    G = np.zeros((32, 32))
    G[:24, :24] = np.kron(np.eye(12), Ga)
    G[24:, 24:] = vc.vcov[3] * np.eye(8)
    X = np.column_stack([np.ones(300), x])
    crit = dense_deviance(y, X, Z, w, G, fit.fixef.to_numpy(), fit.sigma, False)
    assert fit.deviance == pytest.approx(crit, rel=1e-9)


def test_crossed_fit_matches_dense_numpy():
    df = dataset("Penicillin")
    df["w"] = np.random.default_rng(5).uniform(0.5, 2.0, len(df))
    fit = quiet_fit("diameter ~ 1 + (1 | plate) + (1 | sample)", df, weights="w", reml=True)
    n = len(df)
    plate, sample = pd.factorize(df["plate"], sort=True)[0], pd.factorize(df["sample"], sort=True)[0]
    Z = np.zeros((n, 24 + 6))
    Z[np.arange(n), plate] = 1.0
    Z[np.arange(n), 24 + sample] = 1.0
    vc = fit.varcorr.set_index("group").vcov
    G = np.diag(np.r_[np.full(24, vc["plate"]), np.full(6, vc["sample"])])
    crit = dense_deviance(
        df["diameter"].to_numpy(float), np.ones((n, 1)), Z, df["w"].to_numpy(), G, fit.fixef.to_numpy(), fit.sigma, True
    )
    assert fit.profiled.objective == pytest.approx(crit, rel=1e-9)


# ------------------------------------------------------------------------ backends and inputs
def test_duckdb_parquet_and_sql_match_memory(tmp_path):
    df = sleep()
    path = tmp_path / "s.parquet"
    df.to_parquet(path)
    mem = hlm.fit(SLOPE, df, weights="w")
    for other in (
        hlm.fit(SLOPE, str(path), weights="w"),
        hlm.fit(SLOPE, sql=f"SELECT * FROM '{path}'", weights="w"),
        hlm.fit(SLOPE, df, weights=df["w"].to_numpy(), backend="duckdb"),
    ):
        p1, p2 = mem.devfun.profiled(mem.theta), other.devfun.profiled(mem.theta)
        assert p2.objective == pytest.approx(p1.objective, rel=1e-8)
        np.testing.assert_allclose(p2.beta, p1.beta, rtol=1e-8)
        assert p2.sigma2 == pytest.approx(p1.sigma2, rel=1e-8)
        np.testing.assert_allclose(other.fixef, mem.fixef, rtol=1e-6)
        assert other.nobs == mem.nobs


def test_duckdb_nested_weighted_matches_memory(tmp_path):
    df = three_level(parents=40, children=5)
    df.loc[::7, "w"] = 0.0
    path = tmp_path / "n.parquet"
    df.to_parquet(path)
    mem = hlm.fit("y ~ x + (1 | school/cls)", df, weights="w")
    db = hlm.fit("y ~ x + (1 | school/cls)", str(path), weights="w")
    assert db.nobs == mem.nobs == len(df) - len(df.loc[::7])
    assert db.aggregates.zero_weights == mem.aggregates.zero_weights == len(df.loc[::7])
    assert db.aggregates.log_weights == pytest.approx(mem.aggregates.log_weights, rel=1e-12)
    assert db.devfun.profiled(mem.theta).objective == pytest.approx(mem.profiled.objective, rel=1e-8)


def test_array_weights_equal_column():
    df = sleep()
    a = hlm.fit(SLOPE, df, weights="w")
    b = hlm.fit(SLOPE, df.drop(columns="w"), weights=df["w"].to_numpy())
    c = hlm.fit(SLOPE, df.drop(columns="w"), weights=list(df["w"]))
    for other in (b, c):
        assert other.profiled.objective == a.profiled.objective
        np.testing.assert_allclose(other.residuals(), a.residuals())
    assert b.aggregates.weights == "(weights)"
    with pytest.raises(OptionError, match="name the weights column"):
        hlm.fit(SLOPE, str(DATA / "sleepstudyF.csv"), weights=df["w"].to_numpy())


@pytest.mark.parametrize("backend", ["memory", "duckdb"])
def test_zero_weights_drop_rows(backend):
    df = sleep()
    zero = df.index % 9 == 4
    df.loc[zero, "w"] = 0.0
    fit = hlm.fit(SLOPE, df, weights="w", backend=backend)
    kept = hlm.fit(SLOPE, df.loc[~zero], weights="w")
    assert fit.nobs == 180 - zero.sum() and fit.ndropped == 0
    assert f"{zero.sum()} rows dropped for a zero weight" in fit.notes
    assert fit.profiled.objective == pytest.approx(kept.profiled.objective, rel=1e-10)
    if backend == "memory":
        assert len(fit.residuals()) == fit.nobs
        np.testing.assert_allclose(fit.fitted(), kept.fitted(), rtol=1e-8)


@pytest.mark.parametrize("backend", ["memory", "duckdb"])
@pytest.mark.parametrize(
    "bad, message",
    [
        (-1.0, "weights column 'w' has 1 negative values"),
        (np.nan, "weights column 'w' has 1 missing values"),
        (np.inf, "weights column 'w' has 1 infinite values"),
    ],
)
def test_bad_weights(backend, bad, message):
    df = sleep()
    df.loc[5, "w"] = bad
    with pytest.raises(DataError, match=message):
        hlm.fit(SLOPE, df, weights="w", backend=backend)


def test_bad_weight_columns():
    df = sleep().assign(txt="a", flag=True)
    with pytest.raises(DataError, match="weights column 'txt' is not numeric"):
        hlm.fit(SLOPE, df, weights="txt")
    with pytest.raises(DataError, match="weights column 'flag' is not numeric"):
        hlm.fit(SLOPE, df, weights="flag")
    with pytest.raises(DataError, match="weights column 'txt' is not numeric"):
        hlm.fit(SLOPE, df, weights="txt", backend="duckdb")
    with pytest.raises(DataError, match="shape"):
        hlm.fit(SLOPE, df, weights=np.ones(5))
    with pytest.raises(Exception, match="nope"):
        hlm.fit(SLOPE, df, weights="nope")


def test_unweighted_fit_is_unchanged():
    """weights=None takes the unweighted path: no weight fields, and the sleepstudy reference
    fit's objective exactly as before."""
    fit = hlm.fit(SLOPE, sleep())
    agg = fit.aggregates
    assert agg.weights is None and agg.log_weights == 0.0 and agg.zero_weights == 0
    assert "weights" not in " ".join(fit.notes)


# ------------------------------------------------------------------------ inference
def test_linear_model_lr_and_compare():
    df = sleep()
    fit = hlm.fit("Reaction ~ Days + (1 | Subject)", df, weights="w", reml=False)
    X = np.column_stack([np.ones(len(df)), df["Days"]])
    y, w = df["Reaction"].to_numpy(float), df["w"].to_numpy(float)
    beta = np.linalg.solve(X.T @ (w[:, None] * X), X.T @ (w * y))
    rss = float(w @ (y - X @ beta) ** 2)
    wls = len(y) * (1 + LOG2PI + math.log(rss / len(y))) - np.log(w).sum()  # WLS -2 log L
    lr = fit.lr_test_linear()
    assert lr.statistic == pytest.approx(wls - fit.deviance, rel=1e-9)
    unweighted = hlm.fit("Reaction ~ Days + (1 | Subject)", df, reml=False)
    with pytest.raises(ComparisonError, match="different precision weights"):
        hlm.compare(fit, unweighted)
    bigger = hlm.fit(SLOPE, df, weights="w", reml=False)
    table = hlm.compare(fit, bigger)
    assert table.chisq.iloc[1] == pytest.approx(2 * (bigger.loglik - fit.loglik), rel=1e-9)


def test_profile_ci_and_r2_and_icc():
    fit = hlm.fit("Reaction ~ Days + (1 | Subject)", sleep(), weights="w")
    ci = fit.confint(method="profile").set_index("parameter")
    wald = fit.confint(method="wald").set_index("parameter")
    for term in ("(Intercept)", "Days"):  # profile ~ Wald for fixed effects here
        assert ci.loc[term, "conf_low"] == pytest.approx(wald.loc[term, "conf_low"], rel=2e-2)
    with pytest.raises(DataError, match="precision weights"):
        fit.r2()
    icc = fit.icc()
    v = fit.varcorr.vcov.to_numpy()
    assert icc.icc.iloc[0] == pytest.approx(v[0] / v.sum(), rel=1e-9)


def test_row_bootstrap_draws_weighted_errors():
    """Crossed factors: the row simulator draws e_i ~ N(0, sigma^2 / w_i); the sigma of refits
    centres on the estimate."""
    df = dataset("Penicillin")
    df["w"] = np.random.default_rng(5).uniform(0.5, 4.0, len(df))
    fit = quiet_fit("diameter ~ 1 + (1 | plate) + (1 | sample)", df, weights="w")
    res = bootstrap(fit, nsim=60, seed=1, progress=False)
    k = res.names.index(".sigma")
    assert res.how == "rows"
    assert np.median(res.replicates[:, k]) == pytest.approx(fit.sigma, rel=0.1)


def test_cli_weights(capsys):
    from hlm.cli import run
    from hlm.cli.app import app

    csv = str(DATA / "sleepstudyF.csv")
    assert run(["fit", csv, "Reaction ~ Days + (1 | Subject)", "--weights", "w", "--ml", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["weights"] == "w"
    assert data["deviance"] == pytest.approx(fixture(False)["deviance"], rel=1e-6)
    assert run(["fit", csv, "Reaction ~ Days + (1 | Subject)", "--weights", "expo2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "expo2" in err and len(err.strip().splitlines()) == 1
    assert "PRECISION" in CliRunner().invoke(app, ["fit", "--help"]).output
