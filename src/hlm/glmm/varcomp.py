"""Standard errors and Wald limits of a GLMM's variance components, on the latent (link) scale.

The table of linear fits (:mod:`hlm.inference.varcomp`, Stata's ``mixed``) for a GLMM: per random
term with L its relative factor (Sigma = L L', no residual scale), the SDs sd_i = sqrt(Sigma_ii) and
correlations r_ij = Sigma_ij / (sd_i sd_j) in lme4's order (``.sig01`` ...), then nbinom2's
dispersion phi.  Their natural parameters eta = (log sd, atanh r, log phi) get the covariance

    Cov(eta) = J Cov(theta, log phi) J',   Cov = 2 H^-1  (H: the fit's Hessian of -2 loglik),

J the exact Jacobian of eta in theta (dSigma = E L' + L E' for each entry E of L); then
se(sd) = sd se(log sd) with CI exp(log sd -+ z se), se(r) = (1 - r^2) se(atanh r) with CI
tanh(atanh r -+ z se), likewise phi.  Parameters on the boundary (an SD below 1e-4, |r| = 1, a
correlation of a zero SD) get no SE; diagonals of L below 1e-4 (lme4's singular tolerance) are
held fixed at their bound 0 (their rows and columns of H are left out before inverting).
Profile limits of scalar terms' SDs: ``confint(method="profile")``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from hlm.glmm.theta import diagonal_positions, lower_triangles
from hlm.inference.varcomp import VARCOMP_COLUMNS
from hlm.lmm.params import ONE_COR, ZERO_SD
from hlm.numerics.bobyqa import SINGULAR_TOL

if TYPE_CHECKING:
    from hlm.glmm.result import GlmmResult


def _natural(L: np.ndarray) -> tuple[list[tuple[int, int]], np.ndarray, list[bool], np.ndarray]:
    """A term's parameters in theta's (column-major lower-triangle) order, their values (sd, r),
    whether each is inside its range (module docstring) and the Jacobian of (log sd, atanh r) in
    the entries of L."""
    k = L.shape[0]
    pos = [(i, j) for j in range(k) for i in range(j, k)]
    C = L @ L.T
    sd = np.sqrt(np.diag(C))
    value = np.array([sd[i] if i == j else C[i, j] / (sd[i] * sd[j]) if sd[i] * sd[j] > 0 else 0.0 for i, j in pos])
    J = np.zeros((len(pos), len(pos)))
    for col, (a, b) in enumerate(pos):
        E = np.zeros((k, k))
        E[a, b] = 1.0
        dC = E @ L.T + L @ E.T
        for row, (i, j) in enumerate(pos):
            if i == j:
                J[row, col] = dC[i, i] / (2.0 * C[i, i]) if C[i, i] > 0 else 0.0
            elif sd[i] * sd[j] > 0 and abs(value[row]) < 1.0:
                r = value[row]
                dr = dC[i, j] / (sd[i] * sd[j]) - 0.5 * r * (dC[i, i] / C[i, i] + dC[j, j] / C[j, j])
                J[row, col] = dr / (1.0 - r * r)
    inside = [sd[i] > ZERO_SD if i == j else sd[i] > ZERO_SD and sd[j] > ZERO_SD and abs(v) < ONE_COR
              for (i, j), v in zip(pos, value)]  # fmt: skip
    return pos, value, inside, J


def varcomp(fit: GlmmResult, *, level: float = 0.95) -> pd.DataFrame:
    """SDs, correlations (and nbinom2's phi) with delta-method SEs and Wald limits (module docstring);
    the columns of linear fits' ``varcomp()``."""
    f = fit.frame
    k = fit.ntheta
    rows: list[tuple] = []
    values: list[float] = []
    free: list[bool] = []
    blocks = []
    for (group, names), L in zip(f.term_labels, lower_triangles(fit.theta, f.dims)):
        pos, value, inside, J = _natural(L)
        for i, j in pos:
            kind, var2 = ("sd", None) if i == j else ("cor", names[j])
            rows.append((f".sig{len(rows) + 1:02d}", kind, group, names[i], var2))
        values += list(value)
        free += inside
        blocks.append(J)
    J = np.zeros((k + (fit.dispersion is not None), len(fit.estimates)))
    at = 0
    for B in blocks:
        J[at : at + len(B), at : at + len(B)] = B
        at += len(B)
    if fit.dispersion is not None:  # d log phi / d log phi, the last estimate
        rows.append(("phi", "dispersion", "Residual", None, None))
        values.append(fit.dispersion)
        free.append(True)
        J[-1, -1] = 1.0
    held = np.zeros(len(fit.estimates), dtype=bool)  # diagonals of L on their bound 0: fixed, not estimated
    held[:k] = diagonal_positions(f.dims) & (fit.theta < SINGULAR_TOL)
    keep = np.flatnonzero(~held)
    try:
        cov = 2.0 * np.linalg.inv(fit.hessian[np.ix_(keep, keep)])
    except np.linalg.LinAlgError:
        cov = np.full((len(keep), len(keep)), np.nan)
    sub = J[:, keep]
    se = np.sqrt(np.maximum(np.diag(sub @ cov @ sub.T), 0.0))  # NaN stays NaN
    se = np.where(np.array(free), se, np.nan)
    q = stats.norm.ppf(0.5 + level / 2.0)
    out = []
    for (name, kind, group, var1, var2), v, s in zip(rows, values, se):
        if kind == "cor":
            nat = np.arctanh(np.clip(v, -1.0, 1.0))
            est_se, lo, hi = (1.0 - v * v) * s, np.tanh(nat - q * s), np.tanh(nat + q * s)
        else:
            with np.errstate(divide="ignore"):
                nat = np.log(v)
            est_se, lo, hi = v * s, np.exp(nat - q * s), np.exp(nat + q * s)
        out.append((name, kind, group, var1, var2, v, est_se, lo, hi, s))
    return pd.DataFrame(out, columns=VARCOMP_COLUMNS)
