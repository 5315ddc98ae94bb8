"""The generalized linear model without the random effects (Stata's "LR test vs. logistic
model" compares with it): beta by Fisher scoring from least squares on g(smoothed y), and for
nbinom2 phi by maximising the profile log-likelihood over log phi.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from scipy import optimize

from hlm.glmm.family import Family
from hlm.glmm.kernels import loglik_rows, score_weights_rows
from hlm.glmm.laplace import family_code
from hlm.glmm.optimize import linear_start
from hlm.glmm.rows import EngineRows, engine_rows
from hlm.inference.boundary import LRTest, boundary_test

if TYPE_CHECKING:
    from hlm.glmm.result import GlmmResult


def _glm_beta(fam: Family, r: EngineRows) -> np.ndarray:
    """beta of the GLM without random effects (Fisher scoring; Newton for canonical links)."""
    code = family_code(fam)
    beta = linear_start(fam, r)
    for _ in range(100):
        s, w = score_weights_rows(*code, r.y, r.n, r.offset + r.X @ beta)
        step = np.linalg.lstsq(r.X.T @ (w[:, None] * r.X), r.X.T @ s, rcond=None)[0]
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


def glm_loglik(fit: GlmmResult) -> float:
    """The maximised log-likelihood of the model's fixed part alone (full, as ``fit.loglik``)."""

    def loglik(fam: Family) -> float:
        r = engine_rows(fam, fit.frame, collapse=False)
        eta = r.offset + r.X @ _glm_beta(fam, r)
        return r.constant + float(loglik_rows(*family_code(fam), r.y, r.n, eta).sum())

    if fit.family != "negative_binomial":
        return loglik(fit.family_info)
    best = optimize.minimize_scalar(
        lambda lp: -loglik(replace(fit.family_info, phi=float(np.exp(lp)))),
        bounds=(-12.0, 12.0),
        method="bounded",
        options={"xatol": 1e-8},
    )
    return -float(best.fun)


def lr_vs_glm(fit: GlmmResult) -> LRTest:
    """The LR test of all variance parameters (chibar2(01) for one; see :func:`boundary_test`)."""
    return boundary_test(-2.0 * glm_loglik(fit), fit.deviance, fit.ntheta)
