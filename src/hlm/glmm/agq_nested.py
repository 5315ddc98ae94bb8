"""Adaptive Gauss-Hermite quadrature through a chain of nested random intercepts (Stata's
``melogit`` default; Pinheiro & Chao 2006's multilevel AGQ).

With levels l = 0 (finest) .. L-1 (top), each group g of level l inside one group of level
l+1, and eta_i = offset + x_i'beta + sum_l a_il u_l(i) (a_il = theta_l z_il, u ~ N(0, 1)), the
marginal likelihood factorises over top groups and is integrated bottom-up:
    h_g(c) = Int phi(u) prod_{i in g} p(y_i | x_i'beta + c + a_i0 u) du            (leaves)
    h_p(c) = Int phi(u) prod_{g child of p} h_g(c + a_p u) du                      (parents)
Every h depends on its ancestors only through the scalar c = sum_{m>l} a_m u_m (intercepts:
a_m = theta_m), so each is a smooth function of one variable.  Fully adaptive: for each c the
K-point rule of h_g is centred at the mode u*(c) of its integrand f(u) = log phi(u) + inner(c + a u)
(Newton) and scaled by s = (-f''(u*))^{-1/2} (observed; for logit and log links the PIRLS weight's, as glmer):
    log h_g(c) = log s + logsumexp_k [log w_k + z_k^2/2 + f(u* + s z_k)],
with the probabilists' Gauss-Hermite nodes z_k and weights w_k (weight exp(-z^2/2)).  Bottom-up,
each group's log h is computed at the Chebyshev points of the interval its parent asks it at
(:mod:`hlm.glmm.chebyshev`), summed into the parent, and the parent's inner(.) is that series
(more points while its tail is above SERIES_TOL: on the seed's designs the log-likelihood moves
by < 1e-9 when the tolerance is 1e-10):
the cost is linear in the levels, not K^L.  The interval of c + a_l u_g, which g's children
see, is its parent's plus a_l (u^_g +- (max |z_k| + MODE_SLACK)) around the joint (Laplace)
mode u^_g: u*(c) is monotone in c, s <= 1 (log-concave families), and the slack holds u*'s
distance from u^ (a node outside the interval doubles the intervals).  With one level this is
:mod:`hlm.glmm.agq`'s rule (glmer's nAGQ).  The value is the full marginal log-likelihood
(saturated term included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numba
import numpy as np
from numpy.polynomial.hermite_e import hermegauss

from hlm.errors import OptionError
from hlm.glmm.chebyshev import coefficient_matrix, evaluate, lobatto
from hlm.glmm.kernels import BINOMIAL, CLOGLOG, NEWTON_SURE, PROBIT, loglik_row, row_terms
from hlm.glmm.laplace import family_code
from hlm.glmm.rows import EngineRows

if TYPE_CHECKING:
    from hlm.glmm.optimize import Objective

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
SERIES_POINTS = (33, 49, 65, 97, 129, 193, 257, 385, 513)  # Chebyshev points per interval, more while a
SERIES_TOL = 1e-9  # series' largest last 8 coefficients are above this (plus its values' round-off)
MODE_SLACK, MARGIN = 1.0, 0.1  # intervals: room for a conditional mode away from the joint one (module docstring)
WIDENINGS = 3  # an interval missed all the same: twice as wide
INTERVAL_MISS, SERIES_SHORT = -1.0, -2.0  # _nested_loglik's failures
_LAST_POINTS: dict[tuple[int, int], int] = {}  # the points the rows' last evaluation needed: where the next starts
MODE_TOL = 1e-10  # Newton stops below this step: the rule's value moves only at second order


@dataclass(frozen=True)
class Chain:
    """The nested levels of the engine's rows: ``group[i, l]`` row i's group at level l (0-based
    within the level, finest level first), ``parent[l][g]`` the level-(l+1) group holding group g,
    ``slots`` the terms' places in the rows' design, finest first."""

    group: np.ndarray
    parent: tuple[np.ndarray, ...]
    sizes: tuple[int, ...]
    slots: tuple[int, ...]


def nested_chain(rows: EngineRows, dims: tuple[int, ...]) -> Chain:
    """The levels of a model of nested scalar random intercepts; OptionError otherwise."""
    if any(k != 1 for k in dims) or not np.all(rows.z == 1.0):  # intercepts only: a slope's z is its covariate
        raise OptionError(
            "nagq > 1 needs nested scalar random intercepts (1 | a/b); use nagq=1 (Laplace; Stata: the laplace option)"
        )
    group = np.empty((len(rows.y), len(dims)), np.int64)
    sizes = []
    for t in range(len(dims)):
        _, group[:, t] = np.unique(rows.cols[:, t], return_inverse=True)
        sizes.append(int(group[:, t].max()) + 1 if len(rows.y) else 0)
    order = sorted(range(len(dims)), key=lambda t: -sizes[t])  # finest first
    group = np.ascontiguousarray(group[:, order])
    sizes = [sizes[t] for t in order]
    parent = []
    for lev in range(len(dims) - 1):
        par = np.full(sizes[lev], -1, np.int64)
        par[group[:, lev]] = group[:, lev + 1]
        if np.any(par[group[:, lev]] != group[:, lev + 1]):
            raise OptionError(
                "nagq > 1 needs nested random intercepts (1 | a/b); use nagq=1 (Laplace; in Stata: the laplace option)"
            )
        parent.append(par)
    return Chain(group, tuple(parent), tuple(sizes), tuple(order))


def intervals(chain: Chain, a: np.ndarray, uhat: np.ndarray, zmax: float) -> tuple[np.ndarray, np.ndarray]:
    """mid[l, g] and half[l, g] (l >= 1): the range of c + a_l u_g that group g's children are asked
    at, top-down: the parent's range plus a_l (u^_g +- (zmax + MODE_SLACK)) (module docstring)."""
    L, Gmax = len(chain.sizes), max(chain.sizes)
    mid, half = np.zeros((L, Gmax)), np.zeros((L, Gmax))
    for lev in range(L - 1, 0, -1):
        n = chain.sizes[lev]
        above = chain.parent[lev] if lev < L - 1 else np.zeros(n, np.int64)
        mid[lev, :n] = a[lev] * uhat[lev, :n] + (mid[lev + 1, above] if lev < L - 1 else 0.0)
        half[lev, :n] = abs(a[lev]) * (zmax + MODE_SLACK) + MARGIN + (half[lev + 1, above] if lev < L - 1 else 0.0)
    return mid, half


def nested_agq_deviance(obj: Objective, x: np.ndarray) -> float:
    """-2 logLik by nested adaptive Gauss-Hermite with ``obj.nagq`` nodes per level."""
    rows = obj.pls.rows
    chain = nested_chain(rows, obj.frame.dims)
    modes = obj.modes(x)
    theta, beta, fam = obj.split(x)
    code = family_code(fam)
    slots = list(chain.slots)
    a = np.ascontiguousarray(theta[slots], dtype=float)
    uhat = np.zeros((len(slots), max(chain.sizes)))
    for lev, t in enumerate(slots):
        uhat[lev, chain.group[:, lev]] = modes.u[rows.cols[:, t]]
    z, wk = hermegauss(obj.nagq)
    mid, half = intervals(chain, a, uhat, float(np.max(np.abs(z))))
    order = np.argsort(chain.group[:, 0], kind="stable")
    start = np.searchsorted(chain.group[order, 0], np.arange(chain.sizes[0] + 1))
    parent = np.full((len(slots), max(chain.sizes)), -1, np.int64)
    for lev, par in enumerate(chain.parent):
        parent[lev, : len(par)] = par
    base = (rows.offset + rows.X @ beta)[order]
    key = (id(rows), obj.nagq)
    widen, points = 1.0, iter(SERIES_POINTS[SERIES_POINTS.index(_LAST_POINTS.get(key, SERIES_POINTS[0])) :])
    N = next(points)
    for _ in range(WIDENINGS + len(SERIES_POINTS)):
        total, fail = _nested_loglik(
            code, rows.y[order], rows.n[order], base, start, parent, np.array(chain.sizes, np.int64), a, uhat,
            mid, widen * half, lobatto(N), coefficient_matrix(N), z, np.log(wk) + z**2 / 2, SERIES_TOL,
        )  # fmt: skip
        if fail == INTERVAL_MISS:  # a conditional mode's nodes left an interval: wider ones
            widen *= 2.0
        elif fail == SERIES_SHORT:
            N = next(points, 0)
        if not fail or not N:
            break
    _LAST_POINTS[key] = N if N else SERIES_POINTS[0]
    total = total + rows.constant if not fail else np.nan
    return -2.0 * total if np.isfinite(total) else np.inf


@numba.njit(cache=True)
def _row_terms(fam: tuple[int, int, float], y: float, n: float, eta: float) -> tuple[float, float, float]:
    """:func:`hlm.glmm.kernels.row_terms`, but probit's and cloglog's score and observed curvature
    from log mu and log(1 - mu): Fisher's clamps mu and loses both far in the tails, where the
    conditional modes of extreme ancestors' values lie.  With lam(e) = phi(e) / Phi(e) (probit),
    k = e^eta / (exp(e^eta) - 1) (cloglog, d log mu / d eta):
      probit   score y lam(eta) - (n-y) lam(-eta),
               curvature y lam(eta) (eta + lam(eta)) + (n-y) lam(-eta) (lam(-eta) - eta);
      cloglog  score y k - (n-y) e^eta,  curvature y k (e^eta + k - 1) + (n-y) e^eta."""
    ll, score, w = row_terms(fam[0], fam[1], fam[2], y, n, eta)
    if fam[0] != BINOMIAL or (fam[1] != PROBIT and fam[1] != CLOGLOG):
        return ll, score, w
    if fam[1] == PROBIT:
        log_phi = -0.5 * eta * eta - _LOG_SQRT_2PI
        up = math.exp(log_phi - loglik_row(BINOMIAL, PROBIT, 0.0, 1.0, 1.0, eta))
        down = math.exp(log_phi - loglik_row(BINOMIAL, PROBIT, 0.0, 0.0, 1.0, eta))
        return ll, y * up - (n - y) * down, y * up * (eta + up) + (n - y) * down * (down - eta)
    e = math.exp(min(eta, 700.0))
    k = e / math.expm1(e) if e > 0.0 else 1.0
    return ll, y * k - (n - y) * e, y * k * (e + k - 1.0) + (n - y) * e


@numba.njit(cache=True)
def _integrand(
    fam: tuple[int, int, float],
    y: np.ndarray,
    n: np.ndarray,
    base: np.ndarray,
    rows: tuple[int, int],
    coef: np.ndarray,
    mid: float,
    half: float,
    a: float,
    c: float,
    u: float,
) -> tuple[float, float, float]:
    """f(u) = -u^2/2 + inner(c + a u), f'(u) and the curvature -f''(u) (:func:`_row_terms`'): inner
    is the log-likelihood of rows[0]:rows[1] (a leaf) or the children's series ``coef`` on
    [mid - half, mid + half]."""
    if len(coef) == 0:
        f = g = w = 0.0
        for i in range(rows[0], rows[1]):
            li, si, wi = _row_terms(fam, y[i], n[i], base[i] + c + a * u)
            f += li
            g += si
            w += wi
        return f - 0.5 * u * u, a * g - u, 1.0 + a * a * w
    v, d1, d2 = evaluate(coef, (c + a * u - mid) / half)
    return v - 0.5 * u * u, a * d1 / half - u, 1.0 - a * a * d2 / (half * half)


@numba.njit(cache=True)
def _log_integral(
    fam: tuple[int, int, float],
    y: np.ndarray,
    n: np.ndarray,
    base: np.ndarray,
    rows: tuple[int, int],
    coef: np.ndarray,
    mid: float,
    half: float,
    a: float,
    c: float,
    u: float,
    z: np.ndarray,
    logw: np.ndarray,
) -> tuple[float, float]:
    """(log Int phi(u) exp(inner(c + a u)) du, the mode): K points centred at the integrand's mode
    (Newton with step halving from u) and scaled by its curvature there; nan when a node of a
    series' integrand leaves the series' interval."""
    lo, hi = -np.inf, np.inf
    if len(coef) and a > 0:
        lo, hi = (mid - half - c) / a, (mid + half - c) / a
    u = min(max(u, lo), hi)
    f, g, info = _integrand(fam, y, n, base, rows, coef, mid, half, a, c, u)
    for _ in range(100):
        step, t = g / max(info, 1.0), 1.0
        while True:
            new = min(max(u + t * step, lo), hi)
            f_new, g_new, info_new = _integrand(fam, y, n, base, rows, coef, mid, half, a, c, new)
            if f_new >= f or abs(new - u) < NEWTON_SURE or t < MODE_TOL:
                break
            t *= 0.5
        done = abs(new - u) < MODE_TOL
        u, f, g, info = new, f_new, g_new, info_new
        if done:
            break
    if info <= 0.0:
        return np.nan, u
    s = 1.0 / math.sqrt(info)
    best, acc = -np.inf, 0.0  # a running log-sum-exp
    for k in range(len(z)):
        uk = u + s * z[k]
        if len(coef) and abs(c + a * uk - mid) > half * (1.0 + 1e-12):
            return np.nan, u
        term = logw[k] + _integrand(fam, y, n, base, rows, coef, mid, half, a, c, uk)[0]
        if term > best:
            acc = acc * math.exp(best - term) + 1.0 if np.isfinite(best) else 1.0
            best = term
        else:
            acc += math.exp(term - best)
    return math.log(s) - _LOG_SQRT_2PI + best + math.log(acc), u


@numba.njit(cache=True)
def _nested_loglik(
    fam: tuple[int, int, float],
    y: np.ndarray,
    n: np.ndarray,
    base: np.ndarray,
    start: np.ndarray,
    parent: np.ndarray,
    sizes: np.ndarray,
    a: np.ndarray,
    uhat: np.ndarray,
    mid: np.ndarray,
    half: np.ndarray,
    xs: np.ndarray,
    T: np.ndarray,
    z: np.ndarray,
    logw: np.ndarray,
    tol: float,
) -> tuple[float, float]:
    """(sum over top groups of log h (module docstring), 0) bottom-up: level l's log h_g at the
    series points of its parent's interval summed into the parent's values; (nan, INTERVAL_MISS)
    when a node leaves an interval, (nan, SERIES_SHORT) when a series' tail is above tol.
    Rows sorted by leaf, leaf g's rows start[g]:start[g+1]."""
    L, N = len(sizes), len(xs)
    vals = np.zeros((L, max(sizes), N))
    total = 0.0
    for lev in range(L):
        for g in range(sizes[lev]):
            rows = (start[g], start[g + 1]) if lev == 0 else (0, 0)
            coef = np.empty(0) if lev == 0 else T @ vals[lev, g]
            if lev and np.max(np.abs(coef[-8:])) > tol + 1e-14 * np.max(np.abs(vals[lev, g])):
                return np.nan, SERIES_SHORT
            u = uhat[lev, g]
            if lev == L - 1:  # a top group: c = 0
                total += _log_integral(fam, y, n, base, rows, coef, mid[lev, g], half[lev, g], a[lev], 0.0, u, z, logw)[
                    0
                ]
                continue
            p = parent[lev, g]
            for j in range(N):
                c = mid[lev + 1, p] + half[lev + 1, p] * xs[j]
                logh, u = _log_integral(fam, y, n, base, rows, coef, mid[lev, g], half[lev, g], a[lev], c, u, z, logw)
                if np.isnan(logh):
                    return np.nan, INTERVAL_MISS
                vals[lev + 1, p, j] += logh
    return total, 0.0 if np.isfinite(total) or total == -np.inf else INTERVAL_MISS
