"""Adaptive Gauss-Hermite quadrature for one scalar random term (glmer's ``nAGQ > 1``).

The groups j are independent given (theta, beta); with u_j's conditional mode u^_j and
s_j = (1 + theta^2 sum_{i in j} w_i a_i^2)^{-1/2} (the PIRLS curvature at the mode),
    log Int prod_i p(y_i | u) phi(u) du
      ~ log s_j + logsumexp_k [log w_k + z_k^2/2 + sum_i log p(y_i | u^_j + s_j z_k) + log phi(u^_j + s_j z_k)]
with the probabilists' Gauss-Hermite nodes z_k and weights w_k (weight exp(-z^2/2)).  The value
is the full marginal log-likelihood (saturated term included, unlike lme4's logLik for
nAGQ > 1); with one node it is the Laplace approximation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import logsumexp

from hlm.glmm.kernels import loglik_rows, weights_rows
from hlm.glmm.laplace import family_code

if TYPE_CHECKING:
    from hlm.glmm.optimize import Objective


def agq_deviance(obj: Objective, x: np.ndarray) -> float:
    """-2 logLik by adaptive Gauss-Hermite with ``obj.nagq`` nodes (see the module docstring)."""
    r = obj.pls.rows
    modes = obj.modes(x)
    theta, beta, fam = obj.split(x)
    fam_code = family_code(fam)
    a, code = r.z[:, 0], r.cols[:, 0]
    groups = obj.pls.q
    w = weights_rows(*fam_code, r.y, r.n, modes.eta)
    s = 1.0 / np.sqrt(1.0 + theta[0] ** 2 * np.bincount(code, w * a * a, minlength=groups))
    z, wk = hermegauss(obj.nagq)
    uj = modes.u[:, None] + s[:, None] * z[None, :]  # (groups, nodes)
    eta = (r.offset + r.X @ beta)[:, None] + (a * theta[0])[:, None] * uj[code]
    K = len(z)
    ll = loglik_rows(*fam_code, np.repeat(r.y, K), np.repeat(r.n, K), eta.ravel()).reshape(-1, K)
    per_group = np.stack([np.bincount(code, ll[:, k], minlength=groups) for k in range(K)], axis=1)
    terms = np.log(wk) + z**2 / 2 + per_group - uj**2 / 2 - 0.5 * np.log(2 * np.pi)
    total = r.constant + float(np.sum(np.log(s) + logsumexp(terms, axis=1)))
    return -2.0 * total if np.isfinite(total) else np.inf
