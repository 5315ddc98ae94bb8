"""The GLMM maximum-likelihood fit: -2 logLik (Laplace, or adaptive Gauss-Hermite for
``nagq > 1``) minimised over (theta, beta[, log phi]) jointly by BOBYQA from a GLM start, with
a second BOBYQA run from the optimum to polish it.  Standard errors come, as glmer's, from the
finite-difference Hessian H of -2 logLik over all parameters: vcov(beta) = 2 H^-1, beta block.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from hlm.glmm.family import Family, link_function
from hlm.glmm.frame import GlmmFrame
from hlm.glmm.laplace import Modes, pirls
from hlm.glmm.theta import lambda_matrix, start_and_lower
from hlm.numerics.bobyqa import OptSummary, bobyqa
from hlm.numerics.derivatives import derivatives


def glm_start(family: Family, f: GlmmFrame) -> np.ndarray:
    """beta of the GLM without random effects: least squares on g(smoothed y), then Fisher scoring."""
    mean = (f.y + 0.5) / (f.n + 1.0) if family.name == "binomial" else f.y + 0.5
    beta = np.linalg.lstsq(f.X, link_function(family.link, mean) - f.offset, rcond=None)[0]
    for _ in range(50):
        s, w = family.score_weight(f.y, f.n, f.offset + f.X @ beta)
        step = np.linalg.lstsq(f.X.T @ (w[:, None] * f.X), f.X.T @ s, rcond=None)[0]
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


@dataclass
class Objective:
    """-2 logLik at x = (theta, beta[, log phi]); the last modes start the next PIRLS."""

    family: Family
    frame: GlmmFrame
    nagq: int = 1
    u: Any = None

    @property
    def ntheta(self) -> int:
        return sum(k * (k + 1) // 2 for k in self.frame.dims)

    def split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, Family]:
        k, p = self.ntheta, self.frame.X.shape[1]
        fam = (
            replace(self.family, phi=float(np.exp(x[k + p])))
            if self.family.name == "negative_binomial"
            else self.family
        )
        return x[:k], x[k : k + p], fam

    def modes(self, x: np.ndarray) -> Modes:
        theta, beta, fam = self.split(x)
        A = sp.csc_matrix(self.frame.A0 @ lambda_matrix(theta, self.frame.dims, self.frame.blocks))
        u0 = self.u if self.u is not None else np.zeros(A.shape[1])
        m = pirls(fam, self.frame.y, self.frame.n, A, self.frame.offset + self.frame.X @ beta, u0)
        self.u = m.u
        return m

    def __call__(self, x: np.ndarray) -> float:
        if self.nagq > 1:
            from hlm.glmm.agq import agq_deviance

            return agq_deviance(self, x)
        dev = self.modes(x).deviance
        return dev if np.isfinite(dev) else np.inf


def estimate(obj: Objective) -> tuple[np.ndarray, OptSummary, np.ndarray]:
    """The estimates, the optimizer's summary and the Hessian of -2 logLik at them."""
    t0 = time.perf_counter()
    f = obj.frame
    beta0 = glm_start(replace(obj.family, phi=1.0) if obj.family.name == "negative_binomial" else obj.family, f)
    theta0, theta_lower = start_and_lower(f.dims)
    x0 = np.concatenate([theta0, beta0, [0.0] if obj.family.name == "negative_binomial" else []])
    lower = np.concatenate([theta_lower, np.full(len(x0) - obj.ntheta, -np.inf)])
    run = bobyqa(obj, x0, lower, step=0.2, ftol_abs=1e-6, ftol_rel=1e-12, xtol_abs=1e-6, maxeval=20_000)
    polish = bobyqa(obj, run.x, lower, step=0.01, ftol_abs=1e-10, ftol_rel=1e-14, xtol_abs=1e-9, maxeval=20_000)
    x = polish.x if obj(polish.x) <= obj(run.x) else run.x
    f0, g, H = derivatives(lambda v: np.array([obj(v)]), x, np.full(len(x), 1e-4), levels=1)
    g, H = g[:, 0], H[:, :, 0]
    obj(x)  # leave the modes at the estimates
    finite = bool(np.all(np.isfinite(H)))
    ev = np.linalg.eigvalsh(H) if finite else np.array([-1.0])
    free = x > lower  # a theta on its bound 0 has a one-sided gradient
    scaled = float(np.max(np.abs(np.linalg.solve(H, g))[free], initial=0.0)) if ev.min() > 0 else float(np.inf)
    summary = OptSummary(
        optimizer="bobyqa",
        theta0=tuple(float(v) for v in x0),
        theta=tuple(float(v) for v in x),
        lower=tuple(float(v) for v in lower),
        fmin=float(f0[0]),
        feval=run.feval + polish.feval,
        seconds=time.perf_counter() - t0,
        return_code=polish.code,
        gradient=tuple(float(v) for v in g),
        scaled_gradient=scaled,
        hessian_pd=bool(ev.min() > 0),
    )
    return x, summary, H
