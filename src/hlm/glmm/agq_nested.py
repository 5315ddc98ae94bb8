"""Adaptive Gauss-Hermite quadrature through a chain of nested random intercepts (Stata's
``melogit`` default; Pinheiro & Chao 2006's multilevel AGQ).

With levels l = 0 (finest) .. L-1 (top), each group g of level l inside one group of level
l+1, and eta_i = offset + x_i'beta + sum_l a_il u_l(i) (a_il = theta_l z_il, u ~ N(0, 1)), the
marginal likelihood factorises over top groups and is integrated bottom-up:
    h_g(c) = Int phi(u) prod_{i in g} p(y_i | x_i'beta + c + a_i0 u) du            (leaves)
    h_p(c) = Int phi(u) prod_{g child of p} h_g(c + a_p u) du                      (parents)
Adaptive: G = A'WA + I at the joint conditional modes u^ (the Laplace ones) is eliminated
level by level, leaves first (a Cholesky without fill: a group meets only its ancestors), which
gives each group's conditional precision D_g and the regression r_gm of its mode on its
ancestors' deviations.  Group g's nodes, given its ancestors' values u_m, are
    u_g = u^_g - sum_{m>l} r_gm (u_m - u^_m) + z_k / sqrt(D_g),
so  log h_g = -log sqrt(D_g) + logsumexp_k [log w_k + z_k^2/2 + log phi(u_g) + log(children or rows)],
with the probabilists' Gauss-Hermite nodes z_k and weights w_k (weight exp(-z^2/2)).  With one
level this is :mod:`hlm.glmm.agq`'s rule.  Each row is evaluated at K^L node combinations;
the value is the full marginal log-likelihood (saturated term included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numba
import numpy as np
from numpy.polynomial.hermite_e import hermegauss

from hlm.errors import OptionError
from hlm.glmm.kernels import BINOMIAL, LOGIT, loglik_row, weights_rows
from hlm.glmm.laplace import family_code
from hlm.glmm.rows import EngineRows

if TYPE_CHECKING:
    from hlm.glmm.optimize import Objective

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


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


def ancestors(chain: Chain) -> list[np.ndarray]:
    """anc[l][g, m]: the level-m group above group g of level l (m >= l; anc[l][g, l] = g)."""
    L = len(chain.sizes)
    out = []
    for lev in range(L):
        a = np.zeros((chain.sizes[lev], L), np.int64)
        a[:, lev] = np.arange(chain.sizes[lev])
        for m in range(lev + 1, L):
            a[:, m] = chain.parent[m - 1][a[:, m - 1]]
        out.append(a)
    return out


def eliminate(chain: Chain, a: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per level l and group: D (the conditional precision) and r[l, m, g] (the regression on
    the level-m ancestor), from G = A'WA + I eliminated leaves first (module docstring)."""
    L, Gmax = len(chain.sizes), max(chain.sizes)
    anc = ancestors(chain)
    # G's entries of level-l group g: with itself (m == l) and with its level-m ancestor (m > l)
    G = np.zeros((L, L, Gmax))
    for lev in range(L):
        for m in range(lev, L):
            G[lev, m, : chain.sizes[lev]] = np.bincount(chain.group[:, lev], w * a[:, lev] * a[:, m], chain.sizes[lev])
        G[lev, lev, : chain.sizes[lev]] += 1.0
    D, r = np.ones((L, Gmax)), np.zeros((L, L, Gmax))
    for lev in range(L):
        n = chain.sizes[lev]
        D[lev, :n] = G[lev, lev, :n]
        r[lev, :, :n] = G[lev, :, :n] / D[lev, :n]
        for m in range(lev + 1, L):
            for m2 in range(m, L):
                upd = G[lev, m, :n] * G[lev, m2, :n] / D[lev, :n]
                G[m, m2, : chain.sizes[m]] -= np.bincount(anc[lev][:, m], upd, chain.sizes[m])
    return D, r


def nested_agq_deviance(obj: Objective, x: np.ndarray) -> float:
    """-2 logLik by nested adaptive Gauss-Hermite with ``obj.nagq`` nodes per level."""
    rows = obj.pls.rows
    chain = nested_chain(rows, obj.frame.dims)
    modes = obj.modes(x)
    theta, beta, fam = obj.split(x)
    code = family_code(fam)
    slots = list(chain.slots)
    a = np.ascontiguousarray(rows.z[:, slots] * theta[slots][None, :])
    uhat = np.zeros((len(slots), max(chain.sizes)))
    for lev, t in enumerate(slots):
        uhat[lev, chain.group[:, lev]] = modes.u[rows.cols[:, t]]
    w = weights_rows(*code, rows.y, rows.n, modes.eta)
    D, r = eliminate(chain, a, w)
    z, wk = hermegauss(obj.nagq)
    order = np.argsort(chain.group[:, 0], kind="stable")
    start = np.searchsorted(chain.group[order, 0], np.arange(chain.sizes[0] + 1))
    parent = np.full((len(slots), max(chain.sizes)), -1, np.int64)
    for lev, par in enumerate(chain.parent):
        parent[lev, : len(par)] = par
    total = _nested_loglik(
        code, rows.y[order], rows.n[order], (rows.offset + rows.X @ beta)[order], a[order], start,
        parent, np.array(chain.sizes, np.int64), uhat, 1.0 / np.sqrt(D), r, z, np.log(wk) + z**2 / 2,
    )  # fmt: skip
    total += rows.constant
    return -2.0 * total if np.isfinite(total) else np.inf


@numba.njit(cache=True, inline="always")
def _loglik(family: int, link: int, phi: float, y: float, n: float, eta: float) -> float:
    """:func:`hlm.glmm.kernels.loglik_row`, with logit's one exponential and one logarithm inline."""
    if family == BINOMIAL and link == LOGIT:
        lmu = -math.log1p(math.exp(-abs(eta))) + min(eta, 0.0)  # log mu; log(1 - mu) = log mu - eta
        return y * lmu + (n - y) * (lmu - eta)
    return loglik_row(family, link, phi, y, n, eta)


@numba.njit(cache=True)
def _node_values(
    lev: int, g: int, parent: np.ndarray, uhat: np.ndarray, s: np.ndarray, r: np.ndarray, z: np.ndarray, U: np.ndarray
) -> None:
    """U[C, m] (m >= lev): the values of group g's chain at node combination C, digit m - lev
    of C (base K) being level m's node; top-down, each centred on its ancestors' values."""
    L, K = uhat.shape[0], len(z)
    chain = np.empty(L, np.int64)
    chain[lev] = g
    for m in range(lev + 1, L):
        chain[m] = parent[m - 1, chain[m - 1]]
    power = np.empty(L + 1, np.int64)
    power[0] = 1
    for m in range(1, L + 1):
        power[m] = power[m - 1] * K
    for C in range(U.shape[0]):
        for m in range(L - 1, lev - 1, -1):
            h = chain[m]
            v = uhat[m, h] + s[m, h] * z[(C // power[m - lev]) % K]
            for m2 in range(m + 1, L):
                v -= r[m, m2, h] * (U[C, m2] - uhat[m2, chain[m2]])
            U[C, m] = v


@numba.njit(cache=True)
def _integrate(logs: float, u: np.ndarray, inner: np.ndarray, logw: np.ndarray, out: np.ndarray) -> None:
    """out[c] = log s + logsumexp_k [logw_k + log phi(u[k + K c]) + inner[k + K c]]."""
    K = len(logw)
    terms = np.empty(K)
    for c in range(len(out)):
        best = -np.inf
        for k in range(K):
            v = u[k + K * c]
            terms[k] = logw[k] - 0.5 * v * v - _LOG_SQRT_2PI + inner[k + K * c]
            best = max(best, terms[k])
        acc = 0.0
        for k in range(K):
            acc += math.exp(terms[k] - best)
        out[c] = logs + best + math.log(acc) if np.isfinite(best) else -np.inf


@numba.njit(cache=True)
def _leaf_levels(
    fam: tuple[int, int, float],
    y: np.ndarray,
    n: np.ndarray,
    base: np.ndarray,
    a: np.ndarray,
    start: np.ndarray,
    parent: np.ndarray,
    sizes: np.ndarray,
    uhat: np.ndarray,
    s: np.ndarray,
    r: np.ndarray,
    z: np.ndarray,
    logw: np.ndarray,
) -> np.ndarray:
    """log h_g(c) of every leaf g at every combination c of its ancestors' nodes; the leaves
    are visited parent by parent, so each parent's node values are computed once."""
    L, K = uhat.shape[0], len(z)
    width = K ** (L - 1)
    out = np.empty((sizes[0], width))
    up = np.zeros((width, L))  # the parent's chain values (none for one level)
    u0 = np.empty(K * width)
    acc = np.empty(K * width)
    anc = np.empty(L, np.int64)
    order = np.argsort(parent[0, : sizes[0]]) if L > 1 else np.arange(sizes[0])
    last = -1
    for g in order:
        anc[0] = g
        for m in range(1, L):
            anc[m] = parent[m - 1, anc[m - 1]]
        if L > 1 and anc[1] != last:
            _node_values(1, anc[1], parent, uhat, s, r, z, up)
            last = anc[1]
        for c in range(width):
            d = 0.0
            for m in range(1, L):
                d += r[0, m, g] * (up[c, m] - uhat[m, anc[m]])
            for k in range(K):
                u0[k + K * c] = uhat[0, g] + s[0, g] * z[k] - d
        acc[:] = 0.0
        for i in range(start[g], start[g + 1]):
            for c in range(width):
                e = base[i]
                for m in range(1, L):
                    e += a[i, m] * up[c, m]
                for k in range(K):
                    acc[k + K * c] += _loglik(fam[0], fam[1], fam[2], y[i], n[i], e + a[i, 0] * u0[k + K * c])
        _integrate(math.log(s[0, g]), u0, acc, logw, out[g])
    return out


@numba.njit(cache=True)
def _nested_loglik(
    fam: tuple[int, int, float],
    y: np.ndarray,
    n: np.ndarray,
    base: np.ndarray,
    a: np.ndarray,
    start: np.ndarray,
    parent: np.ndarray,
    sizes: np.ndarray,
    uhat: np.ndarray,
    s: np.ndarray,
    r: np.ndarray,
    z: np.ndarray,
    logw: np.ndarray,
) -> float:
    """sum over top groups of log h (module docstring); rows sorted by leaf, leaf g's rows
    start[g]:start[g+1]."""
    L, K = uhat.shape[0], len(z)
    below = _leaf_levels(fam, y, n, base, a, start, parent, sizes, uhat, s, r, z, logw)
    for lev in range(1, L):
        width = K ** (L - lev)
        inner = np.zeros((sizes[lev], width))
        for g in range(sizes[lev - 1]):
            inner[parent[lev - 1, g]] += below[g]
        below = np.empty((sizes[lev], width // K))
        V = np.empty((width, L))
        for p in range(sizes[lev]):
            _node_values(lev, p, parent, uhat, s, r, z, V)
            _integrate(math.log(s[lev, p]), V[:, lev].copy(), inner[p], logw, below[p])
    return float(np.sum(below))
