"""Conditional modes and conditional SDs (lme4's ``ranef(condVar=TRUE)``).

Tolerances: modes and conditional SDs within 1e-4 relative of lme4 (1e-6 absolute for
modes that are zero, as in singular fits); the nested top-down pass equals a dense solve
of (Lambda'Z'Z Lambda + I) u = Lambda'Z'(y - X beta) to 1e-8.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

import hlm
import hlm.lmm.ranef as ranef_module
from support import MIXED, reference


def _check_against(table: pd.DataFrame, ref: dict) -> None:
    for block in ref["ranef"]:
        assert (table["group"] == block["group"]).sum() == block["n_levels"] * len(block["terms"])
        for term in block["terms"]:
            sub = table[(table["group"] == block["group"]) & (table["term"] == term)].set_index("level")
            sub = sub.loc[block["levels"]]
            np.testing.assert_allclose(sub["estimate"], block["mode"][term], rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(sub["std_error"], block["cond_sd"][term], rtol=1e-4)


@pytest.mark.parametrize("name", MIXED)  # every reference fit carries lme4's ranef
def test_ranef_matches_lme4(name, fits):
    fit = fits(name)
    table = fit.ranef()
    assert list(table.columns) == ["group", "level", "term", "estimate", "std_error"]
    _check_against(table, reference(name))


def test_crossed_sparse_lu_path(fits, monkeypatch):
    """The sparse-LU branch (used when later crossed factors are too many for a dense block)."""
    fit = fits("Penicillin__crossed_REML")
    monkeypatch.setattr(ranef_module, "DENSE_LIMIT", 0)
    modes = ranef_module.crossed_modes(fit)
    _check_against(ranef_module.ranef_frame(fit, modes), reference("Penicillin__crossed_REML"))


def _three_level(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(6):
        ur = rng.normal(0, 1.5)
        for s in range(rng.integers(2, 5)):
            us, vs = rng.normal(0, 1.0), rng.normal(0, 0.5)
            for c in range(rng.integers(1, 4)):
                uc = rng.normal(0, 0.8)
                for _ in range(rng.integers(2, 6)):
                    x = rng.normal()
                    rows.append(
                        (f"r{r}", f"s{s}", f"c{c}", x, 1 + 0.5 * x + ur + us + vs * x + uc + rng.normal(0, 0.7))
                    )
    return pd.DataFrame(rows, columns=["region", "school", "cls", "x", "y"])


def test_nested_pass_equals_dense_solve():
    """Theory: the top-down pass gives A^{-1} b and the diagonal blocks of A^{-1}."""
    data = _three_level()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hlm.fit("y ~ x + (1 | region) + (x | region:school) + (1 | region:school:cls)", data)
    assert fit.aggregates.nested and len(fit.aggregates.chain) == 3
    # dense Z and Lambda from the rows, factor by factor in Aggregates order
    lambdas = fit.structure.lambdas(fit.theta)
    blocks, lams, spans = [], [], []
    start = 0
    for f, fac in enumerate(fit.aggregates.factors):
        key = data[list(fac.columns)].astype(str).agg(":".join, axis=1)
        codes = pd.Index(fac.labels).get_indexer(key)
        assert (codes >= 0).all()
        cols = [fit.aggregates.pool[j] for j in fit.structure.factor_cols[f]]
        zcols = np.column_stack([np.ones(len(data)) if c == "(Intercept)" else data[c].to_numpy() for c in cols])
        q, G = len(cols), fac.nlevels
        Zf = np.zeros((len(data), G * q))
        for a in range(q):
            Zf[np.arange(len(data)), codes * q + a] = zcols[:, a]
        blocks.append(Zf)
        lams.append(np.kron(np.eye(G), lambdas[f]))
        spans.append((start, G, q))
        start += G * q
    Z = np.hstack(blocks)
    Lam = np.zeros((start, start))
    for (s0, G, q), L in zip(spans, lams):
        Lam[s0 : s0 + G * q, s0 : s0 + G * q] = L
    X = np.column_stack([np.ones(len(data)), data["x"]])
    resid = data["y"].to_numpy() - X @ fit.fixef.to_numpy()
    A = Lam.T @ Z.T @ Z @ Lam + np.eye(start)
    u = np.linalg.solve(A, Lam.T @ Z.T @ resid)
    b = Lam @ u
    cov = fit.sigma**2 * Lam @ np.linalg.inv(A) @ Lam.T
    modes = ranef_module.nested_modes(fit)
    for f, (s0, G, q) in enumerate(spans):
        np.testing.assert_allclose(modes.modes[f].reshape(-1), b[s0 : s0 + G * q], rtol=1e-8, atol=1e-10)
        for g in range(G):
            sl = slice(s0 + g * q, s0 + (g + 1) * q)
            np.testing.assert_allclose(modes.condvar[f][g], cov[sl, sl], rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ x + (1 | region/school/cls)",
        "y ~ x + (1 | region) + (1 | region:school)",
        "y ~ x + (1 | region:school:cls)",
    ],
)
def test_intercept_chain_equals_block_pass(formula):
    """The scalar recursion for nested intercepts equals the general block pass (to 1e-10),
    also with a level at zero variance (theta forced to 0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hlm.fit(formula, _three_level())
    assert fit.aggregates.pool == ("(Intercept)",)
    fits = [fit]
    if fit.structure.ntheta > 1:
        theta = list(fit.theta)
        theta[1] = 0.0  # the second-innermost level
        fits.append(dataclasses.replace(fit, optsummary=dataclasses.replace(fit.optsummary, theta=tuple(theta))))
    for f in fits:
        fast, block = ranef_module.intercept_chain_modes(f), ranef_module.nested_modes(f)
        for a, b in zip(fast.modes + fast.condvar, block.modes + block.condvar):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def seed_data(ndist: int = 50, seed: int = 1) -> pd.DataFrame:
    """The seed's design: districts x 5 schools x 8 teachers x 20 students x 2 semesters."""
    rng = np.random.default_rng(seed)
    per = 5 * 8 * 20 * 2
    n = ndist * per
    d = np.repeat(np.arange(ndist), per)
    s = np.repeat(np.arange(ndist * 5), per // 5)
    t = np.repeat(np.arange(ndist * 40), per // 40)
    st = np.repeat(np.arange(ndist * 800), 2)
    tut = rng.binomial(1, 0.2, n)
    y = (
        2 * tut
        + rng.normal(0, 2, ndist)[d]
        + rng.normal(0, 3, ndist * 5)[s]
        + rng.normal(0, 4, ndist * 40)[t]
        + rng.normal(0, 5, ndist * 800)[st]
        + rng.normal(0, 6, n)
    )
    return pd.DataFrame({"perform": y, "tutoring": tut, "dist_id": d, "school_id": s, "teach_id": t, "student_id": st})


def test_seed_scale_modes():
    """40,000 students + 2,000 teachers + 250 schools + 50 districts (its speed: make bench)."""
    fit = hlm.fit("perform tutoring || dist_id: || school_id: || teach_id: || student_id:", seed_data())
    modes = ranef_module.conditional_modes(fit)
    assert [len(m) for m in modes.modes] == [50, 250, 2000, 40000]
    # every level's conditional SD is below its prior SD
    for f, fac in enumerate(fit.aggregates.factors):
        prior = fit.varcorr.set_index("group").loc[fac.name, "sdcor"]
        assert np.all(np.sqrt(modes.condvar[f][:, 0, 0]) < prior)
