"""Chebyshev interpolation of a smooth function of one variable on [mid - half, mid + half].

From its values f_j at the N Chebyshev-Lobatto points x_j = cos(pi j / (N - 1)) (c_j = mid +
half x_j) the interpolant sum_k a_k T_k(x) has a = T f with (the discrete cosine transform)
    T[k, j] = 2 / (N - 1) cos(pi j k / (N - 1)), halved for j in {0, N-1} and for k in {0, N-1};
for a function analytic around the interval the error falls geometrically in N.
"""

from __future__ import annotations

import numba
import numpy as np


def lobatto(n: int) -> np.ndarray:
    """The N Chebyshev-Lobatto points cos(pi j / (N - 1)) on [-1, 1], from +1 down to -1."""
    return np.cos(np.pi * np.arange(n) / (n - 1))


def coefficient_matrix(n: int) -> np.ndarray:
    """T with a = T f: the interpolant's Chebyshev coefficients from its values at :func:`lobatto`."""
    jk = np.outer(np.arange(n), np.arange(n))
    T = 2.0 / (n - 1) * np.cos(np.pi * jk / (n - 1))
    T[:, [0, -1]] *= 0.5
    T[[0, -1], :] *= 0.5
    return T


@numba.njit(cache=True)
def evaluate(a: np.ndarray, x: float) -> tuple[float, float, float]:
    """sum_k a_k T_k(x) and its first two derivatives in x (three-term recurrences of T_k,
    T_k' and T_k'')."""
    t0, t1, d0, d1, s0, s1 = 1.0, x, 0.0, 1.0, 0.0, 0.0
    f = a[0] + a[1] * x
    df = a[1]
    d2f = 0.0
    for k in range(1, len(a) - 1):
        t2 = 2.0 * x * t1 - t0
        d2 = 2.0 * t1 + 2.0 * x * d1 - d0
        s2 = 4.0 * d1 + 2.0 * x * s1 - s0
        f += a[k + 1] * t2
        df += a[k + 1] * d2
        d2f += a[k + 1] * s2
        t0, t1, d0, d1, s0, s1 = t1, t2, d1, d2, s1, s2
    return f, df, d2f
