"""Richardson-extrapolated central differences (numDeriv's idea) for vector-valued functions.

For a step h the central estimates of the gradient and Hessian,

    g_i   = (f(x + h e_i) - f(x - h e_i)) / 2h
    H_ii  = (f(x + h e_i) - 2 f(x) + f(x - h e_i)) / h^2
    H_ij  = (f(x+h e_i+h e_j) - f(x+h e_i-h e_j) - f(x-h e_i+h e_j) + f(x-h e_i-h e_j)) / 4h^2,

have errors in even powers of h; with the steps h, h/2 (, h/4, ...) Neville's table
R_{k,m} = (4^m R_{k,m-1} - R_{k-1,m-1}) / (4^m - 1) removes them order by order.  ``f`` may
return an array: every output is differentiated from the same evaluations.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _extrapolate(estimates: list[np.ndarray]) -> np.ndarray:
    table = list(estimates)
    for m in range(1, len(table)):
        factor = 4.0**m
        table = [(factor * table[k + 1] - table[k]) / (factor - 1.0) for k in range(len(table) - 1)]
    return table[0]


def _central(
    f: Callable[[np.ndarray], np.ndarray | float],
    x: np.ndarray,
    f0: np.ndarray,
    step: np.ndarray,
    idx: np.ndarray,
    cross: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Central-difference gradient and Hessian over the coordinates ``idx`` (the mixed
    second differences only with ``cross``); zero elsewhere."""
    n = len(x)
    g = np.zeros((n,) + f0.shape)
    H = np.zeros((n, n) + f0.shape)
    for i in idx:
        e = np.zeros(n)
        e[i] = step[i]
        fp, fm = np.asarray(f(x + e)), np.asarray(f(x - e))
        g[i] = (fp - fm) / (2.0 * step[i])
        H[i, i] = (fp - 2.0 * f0 + fm) / step[i] ** 2
    if cross:
        for a, i in enumerate(idx):
            for j in idx[a + 1 :]:
                ei, ej = np.zeros(n), np.zeros(n)
                ei[i], ej[j] = step[i], step[j]
                val = (
                    np.asarray(f(x + ei + ej))
                    - np.asarray(f(x + ei - ej))
                    - np.asarray(f(x - ei + ej))
                    + np.asarray(f(x - ei - ej))
                ) / (4.0 * step[i] * step[j])
                H[i, j] = H[j, i] = val
    return g, H


def derivatives(
    f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, h: np.ndarray, *, levels: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """f(x), the gradient (n, ...) and the Hessian (n, n, ...) of every output of f."""
    x = np.asarray(x, dtype=float)
    f0 = np.asarray(f(x), dtype=float)
    grads, hessians = [], []
    for level in range(levels):
        step = np.asarray(h, dtype=float) / 2.0**level
        g, H = _central(f, x, f0, step, np.arange(len(x)), True)
        grads.append(g)
        hessians.append(H)
    return f0, _extrapolate(grads), _extrapolate(hessians)


def fd_derivatives(
    fun: Callable[[np.ndarray], float], x: np.ndarray, free: np.ndarray, *, hessian: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Central-difference gradient and (unless ``hessian=False``) Hessian over the free
    coordinates with steps h_i = 1e-4 max(|x_i|, 0.01), no extrapolation (lme4's convergence
    check); the mixed terms by lme4's ``deriv12`` scheme (n^2 + n evaluations, not 2 n^2):
    with f_+j = f(x + h_j e_j) and f_+j-i = f(x + h_j e_j - h_i e_i),

        H_ij = (f_+j + f_-j - f_+j-i - f_-j+i + H_ii h_i^2) / (2 h_i h_j)        (i < j),

    O(h^2) as the central terms.  The Hessian is the identity on the fixed coordinates, and
    in place of the Hessian without ``hessian``."""
    n = len(x)
    x = np.asarray(x, dtype=float)
    h = 1e-4 * np.maximum(np.abs(x), 1e-2)
    idx = np.flatnonzero(free)
    e = np.diag(h)
    plus = {i: float(fun(x + e[i])) for i in idx}
    minus = {i: float(fun(x - e[i])) for i in idx}
    g = np.zeros(n)
    for i in idx:
        g[i] = (plus[i] - minus[i]) / (2.0 * h[i])
    if not hessian:
        return g, np.eye(n)
    f0 = float(fun(x)) if len(idx) else 0.0
    H = np.zeros((n, n))
    H[np.setdiff1d(np.arange(n), idx), np.setdiff1d(np.arange(n), idx)] = 1.0
    for i in idx:
        H[i, i] = (plus[i] - 2.0 * f0 + minus[i]) / h[i] ** 2
    for a, i in enumerate(idx):
        for j in idx[a + 1 :]:
            cross = plus[j] + minus[j] - float(fun(x + e[j] - e[i])) - float(fun(x - e[j] + e[i]))
            H[i, j] = H[j, i] = (cross + H[i, i] * h[i] ** 2) / (2.0 * h[i] * h[j])
    return g, H


def gradient_hessian(grad: Callable[[np.ndarray], np.ndarray], x: np.ndarray, free: np.ndarray) -> np.ndarray:
    """The Hessian from central differences of an analytic gradient over the free
    coordinates (2 gradients each, the step of :func:`fd_derivatives`), symmetrised; the
    identity on the fixed coordinates."""
    n = len(x)
    h = 1e-4 * np.maximum(np.abs(x), 1e-2)
    H = np.eye(n)
    idx = np.flatnonzero(free)
    for i in idx:
        e = np.zeros(n)
        e[i] = h[i]
        H[idx, i] = (grad(x + e)[idx] - grad(x - e)[idx]) / (2.0 * h[i])
    H[np.ix_(idx, idx)] = (H[np.ix_(idx, idx)] + H[np.ix_(idx, idx)].T) / 2.0
    return H


def hessian(f: Callable[[np.ndarray], float], x: np.ndarray, h: np.ndarray, *, levels: int = 2) -> np.ndarray:
    """The Hessian of a scalar function."""
    return derivatives(lambda v: np.array([f(v)]), x, h, levels=levels)[2][..., 0]


def deriv12(f: Callable[[np.ndarray], float], x: np.ndarray, h: float) -> tuple[float, np.ndarray, np.ndarray]:
    """f(x), the central gradient and Hessian by lme4's ``deriv12`` scheme: n^2 + n evaluations
    instead of 2 n^2.  With f_+j = f(x + h e_j) and f_+j-i = f(x + h e_j - h e_i),
        H_jj = (f_+j - 2 f + f_-j) / h^2,
        H_ij = ((f_+j - f_+j-i - f_-j+i + f_-j) / h^2 + H_ii) / 2   (i < j),
    both with O(h^2) error (the odd terms cancel in each symmetric pair)."""
    x = np.asarray(x, dtype=float)
    n = len(x)
    fx = float(f(x))
    g, H = np.zeros(n), np.zeros((n, n))
    e = np.eye(n) * h
    plus = [float(f(x + e[j])) for j in range(n)]
    minus = [float(f(x - e[j])) for j in range(n)]
    for j in range(n):
        H[j, j] = (plus[j] - 2.0 * fx + minus[j]) / h**2
        g[j] = (plus[j] - minus[j]) / (2.0 * h)
    for j in range(n):
        for i in range(j):
            cross = plus[j] - float(f(x + e[j] - e[i])) - float(f(x - e[j] + e[i])) + minus[j]
            H[i, j] = H[j, i] = (cross / h**2 + H[i, i]) / 2.0
    return fx, g, H
