"""Compiled (numba) per-row kernels of the GLMM engine: the family's log-density and PIRLS
weight, and one whole penalized IRLS solve.

Rows are the engine's (possibly collapsed, see :mod:`hlm.glmm.rows`): y successes (or a count
sum), n trials (or the number of Poisson rows summed), eta = offset + X beta + sum_r a_ir u_{c_ir}.
Only the parameter-dependent part of log p is computed here (log choose(n, y), -log y! are
the constant the caller adds once):
  binomial  y log mu + (n - y) log(1 - mu)           Poisson  y eta - n exp(eta)
  nbinom2   lgamma(y + phi) - lgamma(phi) + phi log phi - (phi + y) log(phi + mu) + y eta.
The PIRLS weight is the expected (Fisher) one, (dm/deta)^2 / Var with m = n mu (equal to the
observed one for logit and Poisson's log), and for nbinom2 the observed phi mu (phi + y) / (mu + phi)^2.

:func:`pirls` minimises D(u[, beta]) = -2 sum log p + ||u||^2 by Newton steps on the system
M = [[A'WA + I, A'WX], [X'WA, X'WX]] (only its u block unless ``joint``) factored by the
fixed-pattern sparse Cholesky of :mod:`hlm.glmm.cholesky`, with step halving; it stops when
the Newton step is below ``tol``, so the weights of the returned factor are those at the mode.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from hlm.glmm.cholesky import factor, solve

BINOMIAL, POISSON, NBINOM2 = 0, 1, 2
LOGIT, PROBIT, CLOGLOG, LOG = 0, 1, 2, 3
_EPS = 1e-12
FLOOR = 1e-9  # below this a Newton step that no longer shrinks is round-off
NEWTON_SURE = 1e-5  # a Newton step this small is taken whole: the objective's round-off cannot judge it
_SQRT2 = math.sqrt(2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


@numba.njit(cache=True, inline="always")
def _softplus(x: float) -> float:
    return x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))


@numba.njit(cache=True)
def _log_ncdf(x: float) -> float:
    """log Phi(x), with the asymptotic series in the far lower tail."""
    if x > -30.0:
        return math.log(0.5 * math.erfc(-x / _SQRT2))
    x2 = x * x
    return -0.5 * x2 - math.log(-x) - _LOG_SQRT_2PI + math.log1p(-1.0 / x2 + 3.0 / (x2 * x2))


@numba.njit(cache=True)
def _log_mu_pair(link: int, eta: float) -> tuple[float, float]:
    """log mu and log(1 - mu) for the binomial links."""
    if link == LOGIT:
        return -_softplus(-eta), -_softplus(eta)
    if link == PROBIT:
        return _log_ncdf(eta), _log_ncdf(-eta)
    e = math.exp(min(eta, 700.0))  # cloglog: 1 - mu = exp(-e^eta)
    return math.log(-math.expm1(-e)) if e > 0 else -math.inf, -e


@numba.njit(cache=True)
def loglik_row(family: int, link: int, phi: float, y: float, n: float, eta: float) -> float:
    """The parameter-dependent part of log p(y | eta) (module docstring)."""
    if family == BINOMIAL:
        lmu, l1mu = _log_mu_pair(link, eta)
        out = 0.0
        if y > 0:
            out += y * lmu
        if n - y > 0:
            out += (n - y) * l1mu
        return out
    if family == POISSON:
        return y * eta - n * math.exp(eta)
    mu = math.exp(eta)
    return math.lgamma(y + phi) - math.lgamma(phi) + phi * math.log(phi) - (phi + y) * math.log(phi + mu) + y * eta


@numba.njit(cache=True)
def score_weight_row(family: int, link: int, phi: float, y: float, n: float, eta: float) -> tuple[float, float]:
    """d log p / d eta and the PIRLS weight (module docstring)."""
    if family == POISSON:
        m = n * math.exp(eta)
        return y - m, m
    if family == NBINOM2:
        mu = math.exp(eta)
        return phi * (y - mu) / (mu + phi), phi * mu * (phi + y) / ((mu + phi) * (mu + phi))
    if link == LOGIT:
        mu = 1.0 / (1.0 + math.exp(-eta))
        return y - n * mu, n * mu * (1.0 - mu)
    if link == PROBIT:
        mu = 0.5 * math.erfc(-eta / _SQRT2)
        dmu = math.exp(-0.5 * eta * eta - _LOG_SQRT_2PI)
    else:
        e = math.exp(min(eta, 700.0))
        mu = -math.expm1(-e)
        dmu = e * math.exp(-e)
    mu = min(max(mu, _EPS), 1.0 - _EPS)
    var = n * mu * (1.0 - mu)
    dm = n * dmu
    return (y - n * mu) / var * dm, dm * dm / var


@numba.njit(cache=True)
def loglik_rows(family: int, link: int, phi: float, y: np.ndarray, n: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """:func:`loglik_row` for every row."""
    out = np.empty(len(y))
    for i in range(len(y)):
        out[i] = loglik_row(family, link, phi, y[i], n[i], eta[i])
    return out


@numba.njit(cache=True)
def score_weights_rows(
    family: int, link: int, phi: float, y: np.ndarray, n: np.ndarray, eta: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`score_weight_row` for every row: the scores and the PIRLS weights."""
    s = np.empty(len(y))
    w = np.empty(len(y))
    for i in range(len(y)):
        s[i], w[i] = score_weight_row(family, link, phi, y[i], n[i], eta[i])
    return s, w


def weights_rows(family: int, link: int, phi: float, y: np.ndarray, n: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """The PIRLS weight of every row."""
    return score_weights_rows(family, link, phi, y, n, eta)[1]


@numba.njit(cache=True)
def _eta(
    X: np.ndarray, beta: np.ndarray, offset: np.ndarray, cols: np.ndarray, a: np.ndarray, u: np.ndarray, eta: np.ndarray
) -> None:
    N, p = X.shape
    r = cols.shape[1]
    for i in range(N):
        s = offset[i]
        for j in range(p):
            s += X[i, j] * beta[j]
        for t in range(r):
            s += a[i, t] * u[cols[i, t]]
        eta[i] = s


@numba.njit(cache=True)
def row_terms(family: int, link: int, phi: float, y: float, n: float, eta: float) -> tuple[float, float, float]:
    """(log p part, score, weight) of one row; logit and Poisson share their exponentials."""
    if family == BINOMIAL and link == LOGIT:
        e = math.exp(-abs(eta))  # log mu = -softplus(-eta), log(1 - mu) = log mu - eta
        lmu = -math.log1p(e) + (eta if eta < 0 else 0.0)
        mu = 1.0 / (1.0 + e) if eta >= 0 else e / (1.0 + e)
        return y * lmu + (n - y) * (lmu - eta), y - n * mu, n * mu * (1.0 - mu)
    if family == POISSON:
        m = n * math.exp(eta)
        return y * eta - m, y - m, m
    s, w = score_weight_row(family, link, phi, y, n, eta)
    return loglik_row(family, link, phi, y, n, eta), s, w


@numba.njit(cache=True)
def row_terms_all(
    fam: tuple[int, int, float], y: np.ndarray, n: np.ndarray, eta: np.ndarray, s: np.ndarray, w: np.ndarray
) -> float:
    """:func:`row_terms` of every row: scores and weights into s, w; returns sum log p.  One
    loop before the scatter into M (the compiler inlines the row function and hoists its
    family test out of the loop)."""
    total = 0.0
    for i in range(len(y)):
        ll, s[i], w[i] = row_terms(fam[0], fam[1], fam[2], y[i], n[i], eta[i])
        total += ll
    return total


@numba.njit(cache=True)
def score(
    fam: tuple[int, int, float],
    y: np.ndarray,
    n: np.ndarray,
    X: np.ndarray,
    offset: np.ndarray,
    cols: np.ndarray,
    a: np.ndarray,
    u: np.ndarray,
    beta: np.ndarray,
    joint: bool,
) -> np.ndarray:
    """-dD/d(u[, beta]) / 2 = (A's - u[, X's]) at (u, beta): PIRLS's right-hand side."""
    eta = np.empty(len(y))
    _eta(X, beta, offset, cols, a, u, eta)
    q, p = len(u), X.shape[1]
    out = np.zeros(q + p if joint else q)
    out[:q] -= u
    sw = np.empty((2, len(y)))
    row_terms_all(fam, y, n, eta, sw[0], sw[1])
    for i in range(len(y)):
        s = sw[0, i]
        for b in range(cols.shape[1]):
            out[cols[i, b]] += a[i, b] * s
        if joint:
            for f in range(p):
                out[q + f] += X[i, f] * s
    return out


@numba.njit(cache=True)
def score_jacobian(
    fam: tuple[int, int, float],
    y: np.ndarray,
    n: np.ndarray,
    X: np.ndarray,
    offset: np.ndarray,
    cols: np.ndarray,
    z: np.ndarray,
    a: np.ndarray,
    u: np.ndarray,
    beta: np.ndarray,
    joint: bool,
) -> np.ndarray:
    """dg/dx of PIRLS's right-hand side g = A's - u[, X's] at fixed (u[, beta]), scalar terms
    (a_it = theta_t z_it) and a canonical link (ds_i/deta_i = -w_i), x = theta, then beta
    unless ``joint``: d eta_i/d theta_t = z_it u_col(i,t), d eta_i/d beta_f = x_if, and
    dg/dx_j = sum_i (da_i/dx_j) s_i - (a_i[, x_i]) w_i d eta_i/dx_j."""
    N, r = cols.shape
    q, p = len(u), X.shape[1]
    nx = r if joint else r + p
    out = np.zeros((q + p if joint else q, nx))
    eta = np.empty(N)
    _eta(X, beta, offset, cols, a, u, eta)
    sw = np.empty((2, N))
    row_terms_all(fam, y, n, eta, sw[0], sw[1])
    for i in range(N):
        s, w = sw[0, i], sw[1, i]
        for j in range(nx):
            if j < r:
                de = z[i, j] * u[cols[i, j]]
                out[cols[i, j], j] += z[i, j] * s
            else:
                de = X[i, j - r]
            wd = w * de
            for b in range(r):
                out[cols[i, b], j] -= a[i, b] * wd
            if joint:
                for f in range(p):
                    out[q + f, j] -= X[i, f] * wd
    return out


@numba.njit(cache=True)
def _assemble(
    fam: tuple[int, int, float],
    y: np.ndarray,
    n: np.ndarray,
    X: np.ndarray,
    eta: np.ndarray,
    cols: np.ndarray,
    a: np.ndarray,
    pos: np.ndarray,
    Mp: np.ndarray,
    Mx: np.ndarray,
    rhs: np.ndarray,
    u: np.ndarray,
    joint: bool,
    sw: np.ndarray,
) -> float:
    """M (lower rows, the pattern of :mod:`hlm.glmm.cholesky`) and the Newton right-hand side
    at eta; returns -2 sum log p there.  ``sw`` (2 x N) is scratch for the scores and weights."""
    N, p = X.shape
    r = cols.shape[1]
    q = len(u)
    Mx[:] = 0.0
    rhs[:] = 0.0
    for k in range(q):
        Mx[Mp[k + 1] - 1] = 1.0  # the diagonal is the last entry of a row
    total = row_terms_all(fam, y, n, eta, sw[0], sw[1])
    for i in range(N):
        s, w = sw[0, i], sw[1, i]
        t = 0
        for b in range(r):
            wb = w * a[i, b]
            rhs[cols[i, b]] += a[i, b] * s
            for c in range(b, r):
                Mx[pos[i, t]] += wb * a[i, c]
                t += 1
    if joint:
        for i in range(N):
            s, w = sw[0, i], sw[1, i]
            for f in range(p):
                wx = w * X[i, f]
                base = Mp[q + f]
                for b in range(r):
                    Mx[base + cols[i, b]] += wx * a[i, b]
                for g in range(f + 1):
                    Mx[base + q + g] += wx * X[i, g]
                rhs[q + f] += X[i, f] * s
    for k in range(q):
        rhs[k] -= u[k]
    return -2.0 * total


@numba.njit(cache=True)
def pirls(
    fam: tuple[int, int, float],
    y: np.ndarray,
    n: np.ndarray,
    X: np.ndarray,
    offset: np.ndarray,
    cols: np.ndarray,
    a: np.ndarray,
    pattern: tuple,
    u0: np.ndarray,
    beta0: np.ndarray,
    joint: bool,
    tol: float,
    maxit: int,
) -> tuple:
    """The conditional modes (and beta when ``joint``); returns u, beta, eta, -2 sum log p,
    log det(A'WA + I), L's values and the number of Newton steps (module docstring)."""
    pos, Mp, Mi, Lp, Li, Rp, Rj = pattern
    q, p = len(u0), X.shape[1]
    nsys = q + p if joint else q
    u, beta = u0.copy(), beta0.copy()
    eta, new_eta = np.empty(len(y)), np.empty(len(y))
    Mx, Lx = np.empty(Mp[-1]), np.empty(Lp[-1])
    rhs, work, cursor = np.empty(q + p), np.zeros(q + p), np.empty(q + p, np.int64)
    _eta(X, beta, offset, cols, a, u, eta)
    sw = np.empty((2, len(y)))
    m2 = _assemble(fam, y, n, X, eta, cols, a, pos, Mp, Mx, rhs, u, joint, sw)
    obj = m2 + float(np.dot(u, u))
    steps = 0
    logdet, last = np.nan, np.inf
    for _ in range(maxit):
        if not (np.isfinite(obj) and factor(Mp, Mi, Mx, Rp, Rj, Lp, Li, Lx, nsys, q, work, cursor)):
            return u, beta, eta, np.inf, np.inf, Lx, steps
        logdet = 0.0
        for k in range(q):
            logdet += 2.0 * math.log(Lx[Lp[k]])
        delta = solve(Lp, Li, Lx, rhs[:nsys], q, p, nsys)
        size = np.max(np.abs(delta))
        if size < tol or (size < FLOOR and size >= last):  # converged, or at round-off's floor
            break
        last = size
        step = 1.0
        while True:  # the candidate's M and rhs overwrite the current ones: L is already factored
            nu, nb = u + step * delta[:q], beta.copy()
            if joint:
                nb += step * delta[q:]
            _eta(X, nb, offset, cols, a, nu, new_eta)
            new_m2 = _assemble(fam, y, n, X, new_eta, cols, a, pos, Mp, Mx, rhs, nu, joint, sw)
            new_obj = new_m2 + float(np.dot(nu, nu))
            if new_obj <= obj + 1e-12 * abs(obj) or step < 1e-8 or size < NEWTON_SURE:
                break
            step *= 0.5
        if not new_obj < obj and size >= NEWTON_SURE:  # no progress: L above is at the mode
            break
        steps += 1
        u, beta, obj, m2 = nu, nb, new_obj, new_m2
        eta[:] = new_eta
    return u, beta, eta, m2, logdet, Lx, steps
