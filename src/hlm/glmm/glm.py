"""The generalized linear model without the random effects (Stata's "LR test vs. logistic
model" compares with it): beta by Fisher scoring (:func:`hlm.glmm.optimize.glm_start`), and
for nbinom2 phi by maximising the profile log-likelihood over log phi.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from scipy import optimize

from hlm.glmm.family import Family
from hlm.glmm.optimize import glm_start
from hlm.inference.boundary import LRTest, boundary_test

if TYPE_CHECKING:
    from hlm.glmm.result import GlmmResult


def glm_loglik(fit: GlmmResult) -> float:
    """The maximised log-likelihood of the model's fixed part alone (full, as ``fit.loglik``)."""
    f = fit.frame

    def loglik(fam: Family) -> float:
        beta = glm_start(fam, f)
        return float(fam.loglik(f.y, f.n, f.offset + f.X @ beta).sum())

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
