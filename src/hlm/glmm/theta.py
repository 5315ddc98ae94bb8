"""lme4's theta for the GLMM's random terms: per term with k effects, the k(k+1)/2 entries of
the lower-triangular relative factor L_t in column-major order (a scalar term: its SD), and
Lambda_theta = blockdiag_t(I_{levels_t} kron L_t), so that b = Lambda_theta u, Cov(b) = Lambda Lambda'.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def lower_triangles(theta: np.ndarray, dims: tuple[int, ...]) -> list[np.ndarray]:
    """L_t for every term."""
    out, at = [], 0
    for k in dims:
        L = np.zeros((k, k))
        rows, cols = np.tril_indices(k)
        order = np.lexsort((rows, cols))  # column-major
        L[rows[order], cols[order]] = theta[at : at + k * (k + 1) // 2]
        out.append(L)
        at += k * (k + 1) // 2
    return out


def start_and_lower(dims: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """theta's start (L = I) and lower bounds (0 on diagonals, none off them)."""
    start, lower = [], []
    for k in dims:
        for c in range(k):
            for r in range(c, k):
                start.append(1.0 if r == c else 0.0)
                lower.append(0.0 if r == c else -np.inf)
    return np.array(start), np.array(lower)


def lambda_matrix(theta: np.ndarray, dims: tuple[int, ...], levels: tuple[int, ...]) -> sp.csc_matrix:
    """Lambda_theta (q x q) with A0's column order: term by term, level-major."""
    blocks = [sp.kron(sp.identity(n), sp.csr_matrix(L)) for L, n in zip(lower_triangles(theta, dims), levels)]
    return sp.csc_matrix(sp.block_diag(blocks))


def diagonal_positions(dims: tuple[int, ...]) -> np.ndarray:
    """Which theta entries are diagonals of the L_t."""
    return np.array([r == c for k in dims for c in range(k) for r in range(c, k)], dtype=bool)
