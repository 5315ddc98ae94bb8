"""The analytic gradient of the profiled criterion (crossed factors) against finite
differences of the criterion itself, ML and REML, vector and scalar crossed effects."""

from __future__ import annotations

import numpy as np
import pytest

from hlm.lmm.collinear import remove_collinear
from hlm.lmm.objective import DevianceFunction
from hlm.lmm.pipeline import aggregate
from hlm.lmm.structure import build_structure
from hlm.spec import parse_model
from support import dataset

TWENTY = "rt ~ spkr*prec*load + (1+spkr+prec+load | subj) + (1+spkr+prec+load | item)"
INTERCEPTS = "rt ~ spkr*prec*load + (1 | subj) + (1 | item)"
ZEROCORR = "rt ~ spkr*prec*load + (1+spkr*prec*load || subj) + (1+spkr*prec*load || item)"


def _devfun(formula: str, reml: bool) -> DevianceFunction:
    spec = parse_model(formula)
    agg, _ = aggregate(spec, dataset("kb07like"))
    agg, _ = remove_collinear(agg)
    struct = build_structure(agg, tuple(t.name for t in spec.random), tuple(t.cov for t in spec.random))
    return DevianceFunction.build(agg, struct, reml)


def _five_point(f, x: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """(-f(x+2h) + 8 f(x+h) - 8 f(x-h) + f(x-2h)) / 12h per coordinate: error O(h^4)."""
    g = np.zeros(len(x))
    for i in range(len(x)):
        e = np.zeros(len(x))
        e[i] = h * max(1.0, abs(x[i]))
        g[i] = (-f(x + 2 * e) + 8 * f(x + e) - 8 * f(x - e) + f(x - 2 * e)) / (12 * e[i])
    return g


@pytest.mark.parametrize(
    ("formula", "reml"), [(TWENTY, True), (TWENTY, False), (INTERCEPTS, True), (INTERCEPTS, False), (ZEROCORR, True)]
)
def test_gradient_matches_finite_differences(formula, reml):
    devfun = _devfun(formula, reml)
    assert devfun.has_gradient
    rng = np.random.default_rng(11)
    theta = devfun.struct.theta0() + 0.3 * rng.standard_normal(devfun.struct.ntheta)
    theta = np.where(np.isfinite(devfun.struct.lower), np.abs(theta), theta)  # inside the bounds
    g = devfun.gradient(theta)
    fd = _five_point(devfun, theta)
    assert np.max(np.abs(g - fd)) <= 1e-6 * np.max(np.abs(fd))


def test_gradient_at_lme4_singular_optimum():
    """At lme4's (singular, boundary) optimum of the kb07-like ML fixture's model."""
    from support import reference

    ref = reference("kb07like__crossed_slopes_ML")
    devfun = _devfun(ref["formula"], ref["REML"])
    theta = np.array(ref["theta_vector"])
    g = devfun.gradient(theta)
    fd = _five_point(devfun, theta, 1e-5)
    assert np.allclose(g, fd, atol=1e-5 * max(1.0, np.max(np.abs(fd))))
