"""Structure warnings and singular-fit explanations say only what is so.

* The implicit-nesting warning: silent on a genuinely crossed design whose cross is
  modelled (every Part measured by every Operator, with the Operator:Part cells as a term),
  on properly coded nested ids and on the nested fix; given for ids numbered within
  their parent.
* The singular-fit explanation of a vector-valued term names what is on the boundary: a
  zero SD, a +-1 correlation, or a rank-deficient covariance whose correlations are all
  well inside (-1, 1).  Each case is a real fit whose data put the optimum on that
  boundary; the covariance matrix behind the message is recomputed here with numpy from
  ``fit.varcorr`` (SDs and correlations), independently of the message code.  And lme4's
  own singular optimum for a kb07-like design (R's theta and covariance, stored), whose
  4x4 covariance has rank 2 with every correlation inside (-0.98, 0.98).
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import hlm
from hlm.errors import SingularFitWarning, StructureWarning
from hlm.lmm.checks import boundary_messages
from support import dataset, reference


def fit_quietly(model: str, data: pd.DataFrame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularFitWarning)
        return hlm.fit(model, data)


def structure_warnings(model: str, data: pd.DataFrame) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hlm.fit(model, data)
    return [str(w.message) for w in caught if issubclass(w.category, StructureWarning)]


# ---- implicit nesting --------------------------------------------------------------------
@pytest.fixture(scope="module")
def gauge() -> pd.DataFrame:
    """A gauge study: 10 parts, each measured 3 times by each of 3 operators (a full cross)."""
    rng = np.random.default_rng(7)
    part_effect, op_effect = rng.normal(0, 2, 10), rng.normal(0, 0.5, 3)
    rows = [
        (f"op{o}", p + 1, 20 + part_effect[p] + op_effect[o] + rng.normal(0, 0.3))
        for o in range(3)
        for p in range(10)
        for _ in range(3)
    ]
    return pd.DataFrame(rows, columns=["Operator", "Part", "y"])


def test_modelled_cross_is_not_called_nested(gauge):
    assert structure_warnings("y ~ 1 + (1|Operator) + (1|Part) + (1|Operator:Part)", gauge) == []
    assert structure_warnings("y ~ 1 + (1|Part) + (1|Operator) + (1|Part:Operator)", gauge) == []


def test_unmodelled_full_cross_says_both_readings(gauge):
    """Without the cell term a full cross with replicates is also what within-parent numbering
    of equal-sized parents looks like (Pastes): the warning says so rather than calling it nested."""
    msgs = structure_warnings("y ~ 1 + (1|Operator) + (1|Part)", gauge)
    assert len(msgs) == 1
    assert "every Operator has the same 10 Part ids" in msgs[0]
    assert "right if every Part is measured in every Operator" in msgs[0] and "(1|Operator/Part)" in msgs[0]


@pytest.fixture(scope="module")
def schools() -> pd.DataFrame:
    """Schools numbered 1..n_d within each district (n_d from 3 to 6), 4 pupils each."""
    rng = np.random.default_rng(8)
    rows = []
    for d in range(8):
        for s in range(1, 3 + d % 4 + 1):
            rows += [(d, s, f"{d}-{s}", rng.normal()) for _ in range(4)]
    return pd.DataFrame(rows, columns=["district", "school", "school_id", "y"])


def test_ids_numbered_within_parent_warn(schools):
    msgs = structure_warnings("y ~ 1 + (1|district) + (1|school)", schools)
    assert len(msgs) == 1 and "write (1|district/school)" in msgs[0]
    assert "school 1 occurs in 8 of 8" in msgs[0].replace("'", "").replace('"', "")


def test_properly_coded_nested_ids_and_the_fix_do_not_warn(schools):
    assert structure_warnings("y ~ 1 + (1|district) + (1|school_id)", schools) == []
    assert structure_warnings("y ~ 1 + (1|district/school)", schools) == []


# ---- singular-fit explanations -----------------------------------------------------------
def covariance(fit, group: str, names: list[str]) -> np.ndarray:
    """The group's covariance matrix from fit.varcorr's SDs and correlations."""
    vc = fit.varcorr
    rows = vc[vc["group"] == group]
    sd = {r.var1: r.sdcor for r in rows.itertuples() if pd.isna(r.var2)}
    cor = {(r.var1, r.var2): r.sdcor for r in rows.itertuples() if not pd.isna(r.var2)}
    s = np.array([sd[n] for n in names])
    r = np.eye(len(names))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i != j:
                r[i, j] = cor.get((a, b), cor.get((b, a)))
    return r * np.outer(s, s)


def test_zero_slope_sd_in_a_vector_term():
    """Every group's least-squares slope is exactly 0.5 (residuals orthogonal to (1, x) in
    each group): the slope SD is estimated at zero, and that alone is said."""
    rng = np.random.default_rng(5)
    G, m = 10, 6
    g = np.repeat(np.arange(G), m)
    x = np.tile(np.arange(m), G) - 2.5
    e = rng.normal(size=G * m)
    for k in range(G):
        rows = g == k
        X = np.column_stack([np.ones(m), x[rows]])
        e[rows] -= X @ np.linalg.lstsq(X, e[rows], rcond=None)[0]
    fit = fit_quietly("y ~ x + (1 + x|g)", pd.DataFrame({"y": 3 * rng.normal(size=G)[g] + 0.5 * x + e, "x": x, "g": g}))
    cov = covariance(fit, "g", ["(Intercept)", "x"])
    assert np.sqrt(cov[1, 1]) < 1e-6 * fit.sigma and np.sqrt(cov[0, 0]) > 0.5 * fit.sigma
    msgs = boundary_messages(fit)
    assert msgs == [m for m in msgs if m.startswith("the variance of the x slope across g is estimated at zero")]
    assert len(msgs) == 1 and "correlation" not in msgs[0] and "rank" not in msgs[0]


def test_correlation_of_minus_one_in_a_vector_term():
    """Slope SDs without intercept variation, x not centred: the optimum has r = -1."""
    rng = np.random.default_rng(5)
    G, m = 12, 6
    g = np.repeat(np.arange(G), m)
    x = np.tile(np.arange(m), G).astype(float)
    fit = fit_quietly(
        "y ~ x + (1 + x|g)", pd.DataFrame({"y": rng.normal(size=G)[g] * x + rng.normal(size=G * m), "x": x, "g": g})
    )
    cov = covariance(fit, "g", ["(Intercept)", "x"])
    r = cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])
    assert r < -1 + 1e-6 and min(np.diag(cov)) > 1e-4 * fit.sigma**2
    msgs = boundary_messages(fit)
    assert len(msgs) == 1
    assert msgs[0].startswith(
        "the correlation of (Intercept) and x across g is estimated at -1.00: the two effects are perfectly dependent"
    )


def test_rank_deficient_covariance_with_no_extreme_correlation():
    """Effects (b0, b1, b0 - b1) with b0, b1 independent: the three correlations are about
    0, +0.7 and -0.7, yet the 3x3 covariance is singular (rank 2): so the message says, and
    says nothing of a zero SD or a perfect correlation."""
    rng = np.random.default_rng(0)
    G, m = 30, 8
    b0, b1 = rng.normal(size=G), rng.normal(size=G)
    g = np.repeat(np.arange(G), m)
    x, z = rng.normal(size=G * m), rng.normal(size=G * m)
    y = b0[g] + b1[g] * x + (b0 - b1)[g] * z + rng.normal(size=G * m) * 0.5
    fit = fit_quietly("y ~ x + z + (1 + x + z|g)", pd.DataFrame({"y": y, "x": x, "z": z, "g": g}))
    names = ["(Intercept)", "x", "z"]
    cov = covariance(fit, "g", names)
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    assert np.abs(corr[np.tril_indices(3, -1)]).max() < 0.9 and sd.min() > 0.5 * fit.sigma
    eig = np.linalg.eigvalsh(corr)
    assert eig[0] < 1e-8 and eig[1] > 0.1  # rank 2 of 3
    msgs = boundary_messages(fit)
    assert msgs == [
        "the covariance matrix of (Intercept), x, z across g is rank-deficient (rank 2 of 3): some "
        "combination of these effects does not vary between g groups, although no two of them are "
        "perfectly correlated, so the data support fewer random effects than modelled; consider "
        "independent effects (x + z || g) or dropping a slope"
    ]
    assert "rank-deficient (rank 2 of 3)" in fit.summary()


def test_lme4_optimum_of_a_rank_deficient_kb07_fit():
    """lme4's optimum for kb07like ``(1 + spkr + prec + load | subj)`` (ML) is singular with
    no correlation at +-1 (R's largest is -0.975) and no zero SD, but R's 4x4 covariance has
    two zero eigenvalues: at R's theta the message is the rank deficiency, rank 2 of 4."""
    ref = reference("kb07like__crossed_slopes_ML")
    subj = ref["varcorr"]["groups"][0]
    cov = np.array(subj["cov"]["values"])
    eig = np.linalg.eigvalsh(cov / np.outer(subj["sd"], subj["sd"]))
    assert eig[1] < 1e-6 and eig[2] > 1e-2 and min(subj["sd"]) > 0.05 * ref["sigma"]
    assert np.abs(np.array(subj["corr"]["values"])[np.tril_indices(4, -1)]).max() < 0.98
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularFitWarning)
        fit = hlm.fit(ref["formula"], dataset("kb07like"), reml=False)
    at_r = replace(fit, optsummary=replace(fit.optsummary, theta=tuple(ref["theta_vector"])))
    msgs = boundary_messages(at_r)
    assert len(msgs) == 1
    assert msgs[0].startswith(
        "the covariance matrix of (Intercept), spkr, prec, load across subj is rank-deficient "
        "(rank 2 of 4): some combination of these effects does not vary between subj groups, "
        "although no two of them are perfectly correlated"
    )
