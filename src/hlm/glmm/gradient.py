"""The exact gradient of the Laplace deviance over (theta, beta), for the links whose PIRLS
weight is the observed information (binomial logit, Poisson log).

F(theta, beta) = D(u_hat) + log det M,  D(u) = -2 sum log p(y_i | eta_i) + ||u||^2,
M = A'WA + I at u_hat, eta_i = offset_i + x_i'beta + a_i'u, a_i = Lambda_theta' z_i (row i's
r entries, :meth:`hlm.glmm.laplace.Pls.design_values`).  For a parameter phi, with s_i the
score, w_i the weight and w'_i = dw_i/deta_i at u_hat, and d_i = d eta_i/d phi at fixed u:

  dF/dphi = -2 sum s_i d_i                    (u_hat is D's stationary point)
            + sum w'_i h_i (d_i + a_i'du/dphi) + 2 sum w_i (da_i/dphi)'M^-1 a_i,
  M du/dphi = sum s_i da_i/dphi - A'W d,      h_i = a_i'M^-1 a_i,

so with v = M^-1 A'(w' h) (one solve: the adjoint of du/dphi) and e_i = -2 s_i + w'_i h_i
- w_i a_i'v every parameter's derivative is one sum over the rows:
  dF/dbeta_j = sum x_ij e_i,
  dF/dL_t[r, c] = sum z_i[r] (u_{col(i, c)} e_i + s_i v_{col(i, c)} + 2 w_i (M^-1 a_i)_{col(i, c)}),
(theta_t is the entry (r, c) of term t's L_t, which enters a_i only in the term's slot c).
The entries of M^-1 needed (pairs of columns sharing a row) lie on L's pattern: the selected
inverse (:func:`hlm.glmm.cholesky.selected_inverse`) gives them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numba
import numpy as np

from hlm.glmm import kernels
from hlm.glmm.cholesky import selected_inverse, solve
from hlm.glmm.family import Family
from hlm.glmm.laplace import Modes, Pls, family_code

OBSERVED = {("binomial", "logit"), ("poisson", "log")}


def has_gradient(family: Family) -> bool:
    """Whether the family's PIRLS weight is the observed information (module docstring)."""
    return (family.name, family.link) in OBSERVED


@numba.njit(cache=True)
def _lower_positions(Mp: np.ndarray, Mi: np.ndarray, Lp: np.ndarray, Li: np.ndarray, q: int, p: int) -> np.ndarray:
    """For every stored entry (k, j <= k) of M's random block, its place in L's column j."""
    out = np.empty(Mp[q], np.int64)
    for k in range(q):
        for t in range(Mp[k], Mp[k + 1]):
            j = Mi[t]
            s = Lp[j]
            if j != k:
                s += 1
                while Li[s] != k:
                    s += 1
            out[t] = s
    return out


@numba.njit(cache=True)
def _gradient(
    family: int,
    y: np.ndarray,
    n: np.ndarray,
    X: np.ndarray,
    eta: np.ndarray,
    cols: np.ndarray,
    z: np.ndarray,
    a: np.ndarray,
    u: np.ndarray,
    Zx: np.ndarray,
    lpos: np.ndarray,
    pair: np.ndarray,
    factor: tuple,
    zslot: np.ndarray,
    aslot: np.ndarray,
) -> np.ndarray:
    """(dF/dtheta, dF/dbeta) at the modes (module docstring)."""
    Lp, Li, Lx, p = factor
    N, r = cols.shape
    q, nb, k = len(u), X.shape[1], len(zslot)
    s, w, hw = np.empty(N), np.empty(N), np.empty(N)
    m = np.empty((N, r))
    rhs = np.zeros(q)
    for i in range(N):
        if family == kernels.POISSON:
            w[i] = n[i] * math.exp(eta[i])
            s[i], dw = y[i] - w[i], w[i]
        else:
            mu = 1.0 / (1.0 + math.exp(-eta[i]))
            w[i] = n[i] * mu * (1.0 - mu)
            s[i], dw = y[i] - n[i] * mu, w[i] * (1.0 - 2.0 * mu)
        h = 0.0
        for b in range(r):
            acc = 0.0
            for c in range(r):
                acc += Zx[lpos[i, pair[b, c]]] * a[i, c]
            m[i, b] = acc
            h += a[i, b] * acc
        hw[i] = dw * h
        for b in range(r):
            rhs[cols[i, b]] += a[i, b] * hw[i]
    v = solve(Lp, Li, Lx, rhs, q, p, q)
    grad = np.zeros(k + nb)
    for i in range(N):
        av = 0.0
        for b in range(r):
            av += a[i, b] * v[cols[i, b]]
        e = -2.0 * s[i] + hw[i] - w[i] * av
        for j in range(nb):
            grad[k + j] += X[i, j] * e
        for t in range(k):
            c = cols[i, aslot[t]]
            grad[t] += z[i, zslot[t]] * (u[c] * e + s[i] * v[c] + 2.0 * w[i] * m[i, aslot[t]])
    return grad


def theta_slots(dims: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per theta entry L_t[r, c] (lme4's column-major order), the slots of z_i[r] and a_i[c]."""
    zslot, aslot, start = [], [], 0
    for k in dims:
        for c in range(k):
            for r in range(c, k):
                zslot.append(start + r)
                aslot.append(start + c)
        start += k
    return np.array(zslot, np.int64), np.array(aslot, np.int64)


@dataclass
class LaplaceGradient:
    """dF/d(theta, beta) at converged Laplace modes of one fit's engine (module docstring)."""

    pls: Pls
    lpos: np.ndarray = field(init=False, repr=False)
    pair: np.ndarray = field(init=False, repr=False)
    slots: tuple[np.ndarray, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        pos, Mp, Mi, Lp, Li, _, _ = self.pls.pattern
        r = self.pls.rows.cols.shape[1]
        self.lpos = _lower_positions(Mp, Mi, Lp, Li, self.pls.q, self.pls.rows.X.shape[1])[pos]
        bb, cc = np.triu_indices(r)
        self.pair = np.zeros((r, r), np.int64)
        self.pair[bb, cc] = self.pair[cc, bb] = np.arange(len(bb))
        self.slots = theta_slots(self.pls.dims)

    def __call__(self, family: Family, theta: np.ndarray, modes: Modes) -> np.ndarray:
        assert modes.factor is not None
        Lp, Li, Lx, p = modes.factor
        r = self.pls.rows
        Zx = selected_inverse(Lp, Li, Lx, self.pls.q, p)
        a = self.pls.design_values(theta)
        code = family_code(family)[0]
        return _gradient(code, r.y, r.n, r.X, modes.eta, r.cols, r.z, a, modes.u, Zx, self.lpos, self.pair,
                         modes.factor, *self.slots)  # fmt: skip
