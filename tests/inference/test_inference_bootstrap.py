"""Parametric bootstrap.  There is no R reference for random draws, so the aggregate-level
simulator (sufficient statistics drawn directly, no rows) is checked against the row-level
one: their simulated aggregates must have the same means and variances (Monte Carlo
tolerances of ~5 standard errors), and the exact expectations E[y*'y*] = |X beta|^2 + n sigma^2
+ sigma^2 tr(Z T Z') hold for both."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import hlm
from hlm.errors import OptionError
from hlm.inference.bootstrap import _AggregateSimulator, _RowSimulator, bootstrap
from support import dataset


@pytest.fixture(scope="module")
def sleep_ml():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hlm.fit("Reaction ~ Days + (Days | Subject)", dataset("sleepstudy"), reml=False)


def _draws(sim, fit, n, seed):
    rng = np.random.default_rng(seed)
    p = fit.aggregates.p
    leaf = fit.aggregates.chain[0]
    out = []
    for _ in range(n):
        agg = sim.aggregates(rng, fit.profiled.beta, fit.sigma, np.asarray(fit.theta))
        out.append(np.concatenate([agg.ktk[: p + 1, p], agg.factors[leaf].ztk[:3, :, p].ravel()]))
    return np.array(out)


def test_aggregate_simulator_matches_rows(sleep_ml):
    a = _draws(_AggregateSimulator(sleep_ml), sleep_ml, 3000, 1)
    r = _draws(_RowSimulator(sleep_ml), sleep_ml, 3000, 2)
    se = np.sqrt((a.var(0) + r.var(0)) / 3000)
    assert np.all(np.abs(a.mean(0) - r.mean(0)) < 5 * se)
    np.testing.assert_allclose(a.std(0), r.std(0), rtol=0.1)


def test_expected_sum_of_squares(sleep_ml):
    fit = sleep_ml
    p = fit.aggregates.p
    beta = fit.profiled.beta
    mean_part = beta @ fit.aggregates.ktk[:p, :p] @ beta
    leaf = fit.aggregates.factors[fit.aggregates.chain[0]]
    lam = fit.structure.lambdas(np.asarray(fit.theta))[0]
    tr_re = fit.sigma**2 * np.einsum("gab,ab->", leaf.ztz, lam @ lam.T)
    expected = mean_part + fit.nobs * fit.sigma**2 + tr_re
    draws = _draws(_AggregateSimulator(fit), fit, 4000, 3)[:, p]
    assert abs(draws.mean() - expected) < 5 * draws.std() / np.sqrt(len(draws))


def test_boot_confint(sleep_ml):
    table = sleep_ml.confint(method="boot", nsim=40, seed=1, progress=False)
    assert list(table.parameter) == [".sig01", ".sig02", ".sig03", ".sigma", "(Intercept)", "Days"]
    assert (table.method == "boot").all()
    assert (table.conf_low < table.estimate).all() and (table.estimate < table.conf_high).all()
    again = sleep_ml.confint(method="boot", nsim=40, seed=1, progress=False)
    assert np.allclose(table.conf_low, again.conf_low)


def test_crossed_needs_rows(fits):
    fit = fits("Penicillin__crossed_REML")
    with pytest.raises(OptionError):
        bootstrap(fit, nsim=2, how="aggregates", progress=False)
    res = bootstrap(fit, nsim=2, seed=0, progress=False)
    assert res.how == "rows" and res.replicates.shape == (2, 4)
