"""Precision of the top level's SD in a balanced nested design, checked by simulation.

The ANOVA estimator tau^2_hat = (MS_top - MS_next) / c is computed here from simulated balanced
data with numpy, and the simulated spread compared with hlm.power.sd_margin's formula
(Searle, Casella & McCulloch 1992: independent scaled chi^2 mean squares).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import hlm
from hlm.errors import HLMError, OptionError


def _anova_top_variance(y: np.ndarray) -> np.ndarray:
    """ANOVA estimator of the top variance; y has shape (reps, N_top, m_1, ...)."""
    reps, n_top, m1 = y.shape[:3]
    c = int(np.prod(y.shape[2:]))
    flat = y.reshape(reps, n_top, m1, -1)
    top_means = flat.mean(axis=(2, 3))
    next_means = flat.mean(axis=3)
    below = c // m1  # observations under one unit of the next level
    ms_top = c * ((top_means - top_means.mean(axis=1, keepdims=True)) ** 2).sum(axis=1) / (n_top - 1)
    ms_next = below * ((next_means - top_means[:, :, None]) ** 2).sum(axis=(1, 2)) / (n_top * (m1 - 1))
    return (ms_top - ms_next) / c


def _simulate(sizes, icc, reps, rng):
    variances = list(icc) + [1 - sum(icc)]
    y = np.zeros((reps,) + tuple(sizes))
    for k, v in enumerate(variances):
        shape = (reps,) + tuple(sizes[: k + 1]) + (1,) * (len(sizes) - k - 1)
        y = y + rng.normal(0, np.sqrt(v), shape)
    return y


@pytest.mark.parametrize(
    "sizes,icc",
    [
        ((20, 5), (0.2,)),
        ((15, 3, 4), (0.15, 0.2)),
        ((12, 3, 2, 3), (0.2, 0.1, 0.1)),
        ((12, 3, 2, 2, 2), (0.2, 0.1, 0.1, 0.15)),
    ],
)
def test_margin_matches_simulated_spread(sizes, icc):
    rng = np.random.default_rng(7)
    tau2 = _anova_top_variance(_simulate(sizes, icc, 6000, rng))
    assert tau2.mean() == pytest.approx(icc[0], rel=0.05)  # unbiased
    simulated = stats.norm.ppf(0.975) * tau2.std(ddof=1) / (2 * icc[0])  # delta method: SE(tau)/tau
    assert hlm.power.sd_margin(sizes, icc) == pytest.approx(simulated, rel=0.06)


def test_two_level_formula_is_searles_one_way_result():
    a, n, tau2, sigma2 = 30, 8, 0.25, 0.75
    var = 2 / n**2 * ((sigma2 + n * tau2) ** 2 / (a - 1) + sigma2**2 / (a * (n - 1)))
    assert hlm.power.sd_margin((a, n), tau2, confidence=0.9) == pytest.approx(
        stats.norm.ppf(0.95) * var**0.5 / (2 * tau2), rel=1e-12
    )


def test_sample_size_is_the_fewest_reaching_the_margin():
    k = hlm.power.sd_sample_size((None, 10, 20, 25), (0.1, 0.1, 0.2), margin=0.25)
    assert hlm.power.sd_margin((k, 10, 20, 25), (0.1, 0.1, 0.2)) <= 0.25
    assert hlm.power.sd_margin((k - 1, 10, 20, 25), (0.1, 0.1, 0.2)) > 0.25


@pytest.mark.parametrize(
    "call,text",
    [
        (lambda: hlm.power.sd_margin((1, 5), 0.2), "whole number >= 2"),
        (lambda: hlm.power.sd_margin((10, 5), 0.0), "ICC is 0"),
        (lambda: hlm.power.sd_margin((10, 5, 3), 0.2), "icc must list 2"),
        (lambda: hlm.power.sd_margin((None, 5), 0.2), "sd_sample_size"),
        (lambda: hlm.power.sd_sample_size((10, None), 0.2, 0.25), "None at the top level"),
        (lambda: hlm.power.sd_sample_size((None, 5), 0.2, 1.5), "margin"),
    ],
)
def test_precision_refusals(call, text):
    with pytest.raises(OptionError) as info:
        call()
    assert isinstance(info.value, HLMError) and text in str(info.value)
