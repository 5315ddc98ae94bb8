"""The exact gradient of the Laplace deviance (hlm.glmm.gradient) against central differences:
of an independent numpy Laplace deviance (one random intercept) and of the engine's deviance
(nested and crossed intercepts, binomial with trials and Poisson), at points off the optimum."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_glmm_engine import laplace_scalar

from hlm.glmm.family import Family
from hlm.glmm.frame import glmm_frame
from hlm.glmm.gradient import has_exact_gradient, laplace_gradient
from hlm.glmm.optimize import Objective


def nested(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    school = np.repeat(np.arange(12), 30)
    klass = np.repeat(np.arange(60), 6)
    item = rng.integers(0, 8, len(school))
    x = rng.normal(size=len(school))
    eta = -0.3 + 0.5 * x + rng.normal(0, 0.6, 12)[school] + rng.normal(0, 0.8, 60)[klass] + rng.normal(0, 0.4, 8)[item]
    trials = rng.integers(1, 5, len(school))
    succ = rng.binomial(trials, 1 / (1 + np.exp(-eta)))
    count = rng.poisson(np.exp(0.2 + 0.3 * eta))
    return pd.DataFrame({"school": school.astype(str), "klass": klass.astype(str), "item": item.astype(str),
                         "x": x, "s": succ, "f": trials - succ, "c": count})  # fmt: skip


def gradient_and_differences(model: str, family: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fam = Family.of(family, None)
    obj = Objective(fam, glmm_frame(model, nested(), fam))
    assert obj.exact_gradient
    g = laplace_gradient(obj.pls, fam, x[: obj.ntheta], obj.modes(x))
    h = 1e-5
    fd = np.array([(obj(x + h * e) - obj(x - h * e)) / (2 * h) for e in np.eye(len(x))])
    return g, fd


@pytest.mark.parametrize(
    ("model", "family", "x"),
    [
        ("cbind(s, f) ~ x + (1 | school/klass)", "binomial", [0.9, 0.4, -0.1, 0.3]),
        ("c ~ x + (1 | school/klass)", "poisson", [0.5, 0.2, 0.1, 0.2]),
        ("cbind(s, f) ~ x + (1 | school/klass) + (1 | item)", "binomial", [0.7, 0.5, 0.3, 0.0, 0.6]),
        ("cbind(s, f) ~ x + (1 | school/klass)", "binomial", [0.0, 0.4, -0.1, 0.3]),  # a theta on its bound
    ],
)
def test_gradient_equals_central_differences(model: str, family: str, x: list[float]) -> None:
    g, fd = gradient_and_differences(model, family, np.array(x))
    assert g == pytest.approx(fd, rel=1e-5, abs=1e-4)


def test_gradient_of_one_intercept_equals_numpy_laplace() -> None:
    """One random intercept: against differences of the independent numpy Laplace deviance."""
    data = nested()
    fam = Family.of("binomial", None)
    obj = Objective(fam, glmm_frame("cbind(s, f) ~ x + (1 | klass)", data, fam))
    x = np.array([0.8, -0.2, 0.4])
    g = laplace_gradient(obj.pls, fam, x[:1], obj.modes(x))
    y, n = data["s"].to_numpy(float), (data["s"] + data["f"]).to_numpy(float)
    X = np.column_stack([np.ones(len(y)), data["x"]])
    codes = pd.factorize(data["klass"])[0]

    def dev(v: np.ndarray) -> float:
        return laplace_scalar(y, n, X, codes, v[0], v[1:])[2]

    h = 1e-5
    fd = np.array([(dev(x + h * e) - dev(x - h * e)) / (2 * h) for e in np.eye(3)])
    assert g == pytest.approx(fd, rel=1e-6, abs=1e-5)


def test_only_scalar_terms_and_canonical_links() -> None:
    assert has_exact_gradient(Family.of("binomial", None), (1, 1))
    assert has_exact_gradient(Family.of("poisson", None), (1,))
    assert not has_exact_gradient(Family.of("binomial", "probit"), (1,))
    assert not has_exact_gradient(Family.of("negative_binomial", None), (1,))
    assert not has_exact_gradient(Family.of("binomial", None), (2, 1))
