"""The exact gradient of the Laplace deviance over (theta, beta) for scalar random terms and a
canonical link (binomial logit, Poisson log: the PIRLS weight is then the observed one).

With f = D(u_hat) + log det M, M = A'WA + I, A = A0 Lambda_theta, g(u) = u - A's the gradient
of D/2 in u (zero at u_hat), s the scores, w the weights and w' = dw/deta per row:
    df/dphi = dD/dphi|u + sum_i w'_i h_i deta_i/dphi + tr(M^-1 dM/dphi|eta),
h_i = a_i' M^-1 a_i (the selected inverse holds every pair a row touches), and
deta/dphi = d eta/dphi|u + A du_hat/dphi with du_hat/dphi = -M^-1 dg/dphi; the last term's
sum over rows is folded into one solve (the adjoint lambda = M^-1 A'(w' h)).  Per row, with
c = w' h, l = (A lambda)_i and e = -2 s + c - l w:
    df/dbeta_j  = sum_i X_ij e_i,
    df/dtheta_t = sum_i z_it (e_i u_c + 2 w_i (M^-1 a_i)_c + s_i lambda_c),  c the row's level of term t.
One gradient costs a selected inverse, one solve and two row passes: about one PIRLS step.
"""

from __future__ import annotations

import numba
import numpy as np

from hlm.glmm import kernels
from hlm.glmm.cholesky import selected_inverse, solve
from hlm.glmm.family import Family
from hlm.glmm.laplace import Modes, Pls

CANONICAL = {("binomial", "logit"), ("poisson", "log")}


def has_exact_gradient(family: Family, dims: tuple[int, ...]) -> bool:
    """Whether :func:`laplace_gradient` applies: scalar random terms and a canonical link."""
    return (family.name, family.link) in CANONICAL and all(k == 1 for k in dims)


@numba.njit(cache=True)
def _find(Li: np.ndarray, lo: int, hi: int, row: int) -> int:
    while lo < hi:
        mid = (lo + hi) // 2
        if Li[mid] < row:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True)
def m_to_l(Mp: np.ndarray, Mi: np.ndarray, Lp: np.ndarray, Li: np.ndarray, q: int, p: int) -> np.ndarray:
    """Where each entry (k, j) of M's random block lies in L's values (column j, row k)."""
    out = np.empty(Mp[q], np.int64)
    for k in range(q):
        for t in range(Mp[k], Mp[k + 1]):
            j = Mi[t]
            out[t] = Lp[k] if j == k else _find(Li, Lp[j] + 1, Lp[j + 1] - p, k)
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
    where: np.ndarray,
    Lp: np.ndarray,
    Li: np.ndarray,
    Lx: np.ndarray,
    Zx: np.ndarray,
) -> np.ndarray:
    """(df/dtheta, df/dbeta) by the module docstring's two row passes around one solve."""
    N, r = cols.shape
    p, q = X.shape[1], len(u)
    s, w, c = np.empty(N), np.empty(N), np.empty(N)
    kernels.row_terms_all((family, kernels.LOG if family == kernels.POISSON else kernels.LOGIT, 1.0), y, n, eta, s, w)
    v = np.zeros((N, r))
    rhs = np.zeros(q)
    for i in range(N):
        dw = w[i]  # Poisson: dw/deta = w; logit: w (1 - 2 mu), mu = (y - s) / n
        if family != kernels.POISSON and n[i] > 0:
            dw *= 1.0 - 2.0 * (y[i] - s[i]) / n[i]
        t = 0
        for b in range(r):
            for d in range(b, r):
                zbd = Zx[where[i, t]]
                v[i, b] += zbd * a[i, d]
                if d != b:
                    v[i, d] += zbd * a[i, b]
                t += 1
        h = 0.0
        for b in range(r):
            h += a[i, b] * v[i, b]
        c[i] = dw * h
        for b in range(r):
            rhs[cols[i, b]] += a[i, b] * c[i]
    lam = solve(Lp, Li, Lx, rhs, q, p, q)
    grad = np.zeros(r + p)
    for i in range(N):
        lev = 0.0
        for b in range(r):
            lev += a[i, b] * lam[cols[i, b]]
        e = -2.0 * s[i] + c[i] - lev * w[i]
        for j in range(p):
            grad[r + j] += X[i, j] * e
        for b in range(r):
            k = cols[i, b]
            grad[b] += z[i, b] * (e * u[k] + 2.0 * w[i] * v[i, b] + s[i] * lam[k])
    return grad


def laplace_gradient(pls: Pls, family: Family, theta: np.ndarray, modes: Modes) -> np.ndarray:
    """d(-2 logLik)/d(theta, beta) at the converged ``modes`` of (theta, modes.beta)."""
    assert modes.factor is not None
    r = pls.rows
    pos, Mp, Mi, Lp, Li, _, _ = pls.pattern
    Lp, Li, Lx, p = modes.factor
    if pls.gradient_map is None:  # where each row's pairs lie in L
        pls.gradient_map = m_to_l(Mp, Mi, Lp, Li, pls.q, p)[pos]
    Zx = selected_inverse(Lp, Li, Lx, pls.q, p)
    code = kernels.POISSON if family.name == "poisson" else kernels.BINOMIAL
    a = r.z * theta  # A's row entries: every term scalar, so slot t holds z_it theta_t
    return _gradient(code, r.y, r.n, r.X, modes.eta, r.cols, r.z, a, modes.u, pls.gradient_map, Lp, Li, Lx, Zx)
