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


def derivatives(
    f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, h: np.ndarray, *, levels: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """f(x), the gradient (n, ...) and the Hessian (n, n, ...) of every output of f."""
    x = np.asarray(x, dtype=float)
    n = len(x)
    f0 = np.asarray(f(x), dtype=float)
    grads, hessians = [], []
    for level in range(levels):
        step = np.asarray(h, dtype=float) / 2.0**level
        g = np.zeros((n,) + f0.shape)
        H = np.zeros((n, n) + f0.shape)
        for i in range(n):
            e = np.zeros(n)
            e[i] = step[i]
            fp, fm = np.asarray(f(x + e)), np.asarray(f(x - e))
            g[i] = (fp - fm) / (2.0 * step[i])
            H[i, i] = (fp - 2.0 * f0 + fm) / step[i] ** 2
        for i in range(n):
            for j in range(i + 1, n):
                ei, ej = np.zeros(n), np.zeros(n)
                ei[i], ej[j] = step[i], step[j]
                val = (
                    np.asarray(f(x + ei + ej))
                    - np.asarray(f(x + ei - ej))
                    - np.asarray(f(x - ei + ej))
                    + np.asarray(f(x - ei - ej))
                ) / (4.0 * step[i] * step[j])
                H[i, j] = H[j, i] = val
        grads.append(g)
        hessians.append(H)
    return f0, _extrapolate(grads), _extrapolate(hessians)


def hessian(f: Callable[[np.ndarray], float], x: np.ndarray, h: np.ndarray, *, levels: int = 2) -> np.ndarray:
    """The Hessian of a scalar function."""
    return derivatives(lambda v: np.array([f(v)]), x, h, levels=levels)[2][..., 0]
