"""Variance shares of a GLMM on the latent (link) scale: Stata's ``estat icc`` and Nakagawa's R^2.

The latent-variable model writes a binary outcome as y* = eta + e with e logistic (variance
pi^2/3), standard normal (probit, 1) or Gumbel (cloglog, pi^2/6).  With random-intercept
variances s_1..s_L (scalar ``(1 | g)`` terms only) and c the distribution's variance:

- ICC (binomial only, random intercepts only): for nested levels (each level's groups inside
  one group of the next level), Stata's ``estat icc``: level l's ICC is the correlation of two
  latent responses that share the groups of level l and of every level above it,
  (s_l + ... + s_top) / (sum s + c), labelled ``class|school``; for crossed factors,
  s_l / (sum s + c).  SEs by the delta method from the covariance of theta (2 H^-1), CIs on the
  logit scale of the ICC (as Stata).  Poisson and negative-binomial fits are refused (as by
  ``estat icc``): use :func:`r2`, whose observation-level variance is Nakagawa's.  With random
  slopes the correlation of two responses depends on their covariate values (Goldstein et al.
  2010), so there is no single ICC per level: refused, naming :func:`r2` (whose ``var_random``
  / (``var_random`` + ``var_distribution``) is ``performance::icc``'s "adjusted ICC").
- R^2 (Nakagawa, Johnson & Schielzeth 2017; random slopes as Johnson 2014): with v_f the sample
  variance (n - 1) of X beta and v_r = sum_t mean_i z_ti' Sigma_t z_ti over the data rows (z_ti
  row i's random-effect covariates in term t: 1 for an intercept, so a scalar term gives its
  variance s_t; ``performance::r2_nakagawa`` and ``MuMIn::r.squaredGLMM`` do the same),
  marginal = v_f / (v_f + v_r + c) and conditional = (v_f + v_r) / (v_f + v_r + c).  For Poisson
  c = log(1 + 1/lambda) and for nbinom2 c = log(1 + 1/lambda + 1/phi) (the lognormal
  approximation, ``performance::r2_nakagawa``'s default), lambda = exp(b0 + v0 / 2) from the
  intercept-only model with the same random effects (refitted here; b0 its intercept, v0 its
  v_r).  Rows summed upstream (a GROUP BY) count as the data rows they stand for.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from hlm.errors import OptionError
from hlm.glmm.theta import lower_triangles

if TYPE_CHECKING:
    from hlm.glmm.frame import GlmmFrame
    from hlm.glmm.result import GlmmResult

LATENT_VARIANCE = {"logit": math.pi**2 / 3, "probit": 1.0, "cloglog": math.pi**2 / 6}
ICC_COLUMNS = ["level", "icc", "std_error", "conf_low", "conf_high"]


def _intercept_variances(fit: GlmmResult) -> np.ndarray:
    if any(names != ("(Intercept)",) for _, names in fit.frame.term_labels):
        raise OptionError(
            "icc() for GLMMs needs random intercepts (1 | g) only: with random slopes the ICC varies with the "
            "covariates; r2() gives Nakagawa's variances (performance::icc's adjusted ICC is var_random / "
            "(var_random + var_distribution))"
        )
    return fit.theta**2


def _row_weights(frame: GlmmFrame) -> np.ndarray:
    """Data rows each frame row stands for (more than one where rows were summed upstream)."""
    return np.ones(len(frame.y)) if frame.rows is None else np.asarray(frame.rows, dtype=float)


def random_variance(frame: GlmmFrame, theta: np.ndarray) -> float:
    """v_r of the module docstring: sum over terms of the mean over data rows of z_i' Sigma_t z_i."""
    w = _row_weights(frame)
    A = frame.A0.tocsr()
    total, start = 0.0, 0
    for L, nlev, k in zip(lower_triangles(theta, frame.dims), frame.blocks, frame.dims):
        fold = sp.kron(np.ones((nlev, 1)), sp.identity(k), format="csr")  # level-major columns -> the k effects
        Z = np.asarray((A[:, start : start + nlev * k] @ fold).todense())  # one level per row: its z_i
        total += float(w @ np.einsum("ij,jk,ik->i", Z, L @ L.T, Z)) / w.sum()
        start += nlev * k
    return total


def term_codes(fit: GlmmResult) -> list[np.ndarray]:
    """Each term's level per row, read off A0 (a term's k columns per level are adjacent)."""
    out, start = [], 0
    A = abs(fit.frame.A0.tocsr())
    for nlev, k in zip(fit.frame.blocks, fit.frame.dims):
        block = A[:, start : start + nlev * k]
        out.append(np.asarray(block.argmax(axis=1)).ravel() // k)
        start += nlev * k
    return out


def nested_chain(fit: GlmmResult) -> bool:
    """True when every term's groups lie inside one group of the next coarser term."""
    codes = term_codes(fit)  # terms are ordered by decreasing number of levels
    for inner, outer in zip(codes, codes[1:]):
        pairs = np.unique(np.stack([inner, outer]), axis=1)
        if len(np.unique(pairs[0])) != pairs.shape[1]:
            return False
    return True


def level_label(fit: GlmmResult, t: int) -> str:
    """A nested level's own variable (BROOD for BROOD:LOCATION inside LOCATION), else its name."""
    f = fit.frame
    name = f.term_labels[t][0]
    if t + 1 < len(f.factor_columns):
        extra = set(f.factor_columns[t]) - set(f.factor_columns[t + 1])
        if len(extra) == 1 and len(f.factor_columns[t]) > 1:
            return extra.pop()
    return name


def icc(fit: GlmmResult, *, level: float = 0.95) -> pd.DataFrame:
    """Latent-scale ICCs, outermost level first (see the module docstring)."""
    if fit.family != "binomial":
        raise OptionError(
            f"icc() is on the latent scale of binomial models (as Stata's estat icc); for {fit.family} "
            "use r2(), which uses Nakagawa's observation-level variance"
        )
    s = _intercept_variances(fit)
    c = LATENT_VARIANCE[fit.link]
    total = float(s.sum()) + c
    k = fit.ntheta
    cov_theta = fit.vcov_all[:k, :k]
    nested = nested_chain(fit)
    labels = [level_label(fit, t) for t in range(len(s))]
    z = stats.norm.ppf(0.5 + level / 2)
    rows = []
    for t in reversed(range(len(s))):  # outermost (fewest levels) first
        members = list(range(t, len(s))) if nested else [t]
        S = float(s[members].sum())
        value = S / total
        # logit(ICC) = log S - log(total - S): d/d theta_t = 2 theta_t / S in S, -2 theta_t / (total - S) outside
        grad = -2.0 * fit.theta / (total - S)
        grad[members] = 2.0 * fit.theta[members] / S if S > 0 else np.nan
        se_logit = math.sqrt(max(float(grad @ cov_theta @ grad), 0.0)) if S > 0 else float("nan")
        logit = math.log(S / (total - S)) if S > 0 else -math.inf
        label = "|".join(labels[t:]) if nested else labels[t]
        rows.append(
            (
                label,
                value,
                value * (1 - value) * se_logit,
                float(stats.logistic.cdf(logit - z * se_logit)),
                float(stats.logistic.cdf(logit + z * se_logit)),
            )
        )
    out = pd.DataFrame(rows, columns=ICC_COLUMNS)
    out.attrs["note"] = f"latent scale: residual variance {c:.6g} ({fit.link})" + (
        "" if nested or len(s) == 1 else "; crossed factors: each ICC shares only that factor's group"
    )
    return out


def _distribution_variance(fit: GlmmResult) -> float:
    """c of the module docstring (a refit of the intercept-only model for count families)."""
    if fit.family == "binomial":
        return LATENT_VARIANCE[fit.link]
    from hlm.glmm.optimize import Objective, estimate

    f = fit.frame
    if np.any(f.offset != 0):
        raise OptionError("Nakagawa's R^2 of a count model with an offset is not defined here (lambda would vary)")
    null_frame = replace(f, X=np.ones((len(f.y), 1)), xnames=("(Intercept)",))
    start_phi = 1.0 if fit.family == "negative_binomial" else None
    obj = Objective(replace(fit.family_info, phi=start_phi), null_frame, fit.nagq)
    x = estimate(obj)[0]
    theta0, beta0, _ = obj.split(x)
    lam = math.exp(float(beta0[0]) + 0.5 * random_variance(f, theta0))
    extra = 0.0 if fit.dispersion is None else 1.0 / fit.dispersion
    return math.log1p(1.0 / lam + extra)


def r2(fit: GlmmResult) -> dict[str, float]:
    """Nakagawa's marginal and conditional R^2 with their pieces (see the module docstring)."""
    s = random_variance(fit.frame, fit.theta)
    w = _row_weights(fit.frame)
    fixed = fit.frame.X @ fit.fixef.to_numpy()
    v_fixed = float(w @ (fixed - w @ fixed / w.sum()) ** 2) / (w.sum() - 1.0)
    c = _distribution_variance(fit)
    total = v_fixed + s + c
    return {
        "marginal": v_fixed / total,
        "conditional": (v_fixed + s) / total,
        "var_fixed": v_fixed,
        "var_random": s,
        "var_distribution": c,
    }
