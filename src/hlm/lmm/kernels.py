"""Compiled (numba) kernels of the engine: the per-group q x q work, written out so an
evaluation has no Python loop over groups and no temporaries.

* :class:`OneLevel`: one grouping factor with vector effects.  Per group g (q effects,
  k = p + 1 columns of K = [X y]):  L_g L_g' = I + lam' (Z'Z)_g lam,
  y_g = L_g^{-1} lam' (Z'K)_g,  log|H| = 2 sum_g log diag L_g,  K'H^{-1}K = K'K - sum_g y_g'y_g.
* :func:`vector_level`: one level of the nested recursion of :mod:`hlm.lmm.nested`.
* :class:`SchurGram`: the Schur block I + D (B22 - B21 diag(w) B21') D of crossed scalar
  factors, memory O(nnz(B21)); :func:`schur_cells` the same from stored products.
* :func:`fixed_solve` (compiled: :func:`cholesky_fixed`): beta and log|X'H^{-1}X| from Q by a p x p Cholesky.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

from hlm.aggregate.stats import Aggregates
from hlm.lmm.structure import Structure


@numba.njit(cache=True, nogil=True)
def _one_level(ztz: np.ndarray, ztk: np.ndarray, lam: np.ndarray, Q: np.ndarray) -> float:
    """Subtract sum_g y_g'y_g from Q in place and return 2 sum log diag L_g (module docstring),
    or nan where a block is not positive definite."""
    G, q, k = ztk.shape
    A = np.empty((q, q))
    T = np.empty((q, q))
    Y = np.empty((q, k))
    logdet = 0.0
    for g in range(G):
        for a in range(q):  # T = (Z'Z)_g lam
            for b in range(q):
                s = 0.0
                for c in range(q):
                    s += ztz[g, a, c] * lam[c, b]
                T[a, b] = s
        for a in range(q):  # A = I + lam' T (lower triangle)
            for b in range(a + 1):
                s = 1.0 if a == b else 0.0
                for c in range(q):
                    s += lam[c, a] * T[c, b]
                A[a, b] = s
        for j in range(q):  # Cholesky, lower, in place
            s = A[j, j]
            for c in range(j):
                s -= A[j, c] * A[j, c]
            if s <= 0.0:
                return np.nan
            d = np.sqrt(s)
            A[j, j] = d
            logdet += 2.0 * np.log(d)
            for i in range(j + 1, q):
                s = A[i, j]
                for c in range(j):
                    s -= A[i, c] * A[j, c]
                A[i, j] = s / d
        for a in range(q):  # Y = L^{-1} lam' (Z'K)_g
            for col in range(k):
                s = 0.0
                for c in range(q):
                    s += lam[c, a] * ztk[g, c, col]
                for c in range(a):
                    s -= A[a, c] * Y[c, col]
                Y[a, col] = s / A[a, a]
        for i in range(k):
            for j in range(i + 1):
                s = 0.0
                for a in range(q):
                    s += Y[a, i] * Y[a, j]
                Q[i, j] -= s
                if i != j:
                    Q[j, i] -= s
    return logdet


@dataclass(frozen=True)
class OneLevel:
    """The factor's blocks of Z'Z and Z'K restricted to its columns (contiguous, once per fit)."""

    factor: int
    ztz: np.ndarray  # (G, q, q)
    ztk: np.ndarray  # (G, q, k)
    ktk: np.ndarray

    def terms(self, lambdas: list[np.ndarray]) -> tuple[float, np.ndarray]:
        Q = np.array(self.ktk, dtype=float, order="C")
        logdet = _one_level(self.ztz, self.ztk, np.ascontiguousarray(lambdas[self.factor]), Q)
        if not np.isfinite(logdet):
            raise np.linalg.LinAlgError("I + Lambda'Z'Z Lambda is not positive definite")
        return float(logdet), Q


def one_level(agg: Aggregates, struct: Structure) -> OneLevel | None:
    """The compiled single-factor evaluator where it applies: one grouping factor with
    per-group blocks, more than one random effect (a scalar one has its own path)."""
    if agg.chain is None or len(agg.chain) != 1 or len(agg.factors) != 1:
        return None
    fac = agg.factors[0]
    J = list(struct.factor_cols[0])
    if fac.ztz is None or fac.ztk is None or len(J) < 2:
        return None
    return OneLevel(0, np.ascontiguousarray(fac.ztz[:, J][:, :, J]), np.ascontiguousarray(fac.ztk[:, J, :]), agg.ktk)


@numba.njit(cache=True, nogil=True)
def cholesky_fixed(Q: np.ndarray, p: int) -> tuple[np.ndarray, float]:
    """beta = Q_XX^{-1} Q_Xy and log|Q_XX| by a Cholesky of Q_XX (the leading p x p block);
    log|Q_XX| is nan when Q_XX is not positive definite."""
    L = np.zeros((p, p))
    logdet = 0.0
    for j in range(p):
        s = Q[j, j]
        for c in range(j):
            s -= L[j, c] * L[j, c]
        if s <= 0.0:
            return np.zeros(p), np.nan
        d = np.sqrt(s)
        L[j, j] = d
        logdet += 2.0 * np.log(d)
        for i in range(j + 1, p):
            s = Q[i, j]
            for c in range(j):
                s -= L[i, c] * L[j, c]
            L[i, j] = s / d
    z = np.empty(p)
    for i in range(p):
        s = Q[i, p]
        for c in range(i):
            s -= L[i, c] * z[c]
        z[i] = s / L[i, i]
    beta = np.empty(p)
    for i in range(p - 1, -1, -1):
        s = z[i]
        for c in range(i + 1, p):
            s -= L[c, i] * beta[c]
        beta[i] = s / L[i, i]
    return beta, logdet


def fixed_solve(Q: np.ndarray) -> tuple[np.ndarray, float]:
    """beta and log|Q_XX| for Q = K'H^{-1}K with K = [X y] (p = Q's order - 1)."""
    beta, logdet = cholesky_fixed(np.ascontiguousarray(Q, dtype=float), Q.shape[0] - 1)
    if not np.isfinite(logdet):
        raise np.linalg.LinAlgError("X'H^{-1}X is not positive definite")
    return beta, float(logdet)


@numba.njit(cache=True, nogil=True)
def _weighted_gram(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, w: np.ndarray, out: np.ndarray) -> None:
    """out[a, b] += sum_s w_s B[a, s] B[b, s] for a >= b (CSC columns with sorted rows)."""
    for s in range(len(indptr) - 1):
        ws = w[s]
        for p in range(indptr[s], indptr[s + 1]):
            a = indices[p]
            va = ws * data[p]
            for r in range(indptr[s], p + 1):
                out[a, indices[r]] += va * data[r]


@numba.njit(cache=True, nogil=True)
def _scale_lower(
    out: np.ndarray, b22_indptr: np.ndarray, b22_indices: np.ndarray, b22_data: np.ndarray, lam: np.ndarray
) -> None:
    """out[a, b] = [a == b] + lam_a lam_b (B22[a, b] - out[a, b]) for a >= b, in place; B22's
    lower triangle given as CSR (sparse: one factor's B22 is its diagonal of counts)."""
    for a in range(out.shape[0]):
        for b in range(a + 1):
            out[a, b] = -out[a, b]
        for p in range(b22_indptr[a], b22_indptr[a + 1]):
            out[a, b22_indices[p]] += b22_data[p]
        for b in range(a + 1):
            out[a, b] *= lam[a] * lam[b]
        out[a, a] += 1.0


@numba.njit(cache=True, nogil=True)
def _fill_cells(
    row: np.ndarray,
    col: np.ndarray,
    start: np.ndarray,
    cls: np.ndarray,
    value: np.ndarray,
    w: np.ndarray,
    lam: np.ndarray,
    out: np.ndarray,
) -> None:
    """out[a, b] = lam_a lam_b sum_k w[cls_k] value_k over the entries k of cell t = (a, b)
    (b = col[t] for t from row[a] to row[a + 1]; k from start[t] to start[t + 1]), then 1
    added to the diagonal."""
    for a in range(out.shape[0]):
        for t in range(row[a], row[a + 1]):
            s = 0.0
            for k in range(start[t], start[t + 1]):
                s += w[cls[k]] * value[k]
            b = col[t]
            out[a, b] = lam[a] * lam[b] * s
        out[a, a] += 1.0


def schur_cells(
    row: np.ndarray,
    col: np.ndarray,
    start: np.ndarray,
    cls: np.ndarray,
    value: np.ndarray,
    w: np.ndarray,
    lam: np.ndarray,
) -> np.ndarray:
    """Dense (m, m), m = len(lam), whose lower triangle is I + diag(lam) S diag(lam) with
    S = sum_k w[cls_k] value_k summed into its cells (:class:`hlm.lmm.crossed.SchurPairs`)."""
    out = np.zeros((len(lam), len(lam)))
    _fill_cells(row, col, start, cls, value, w, lam, out)
    return out


@dataclass(frozen=True)
class SchurGram:
    """The Schur block I + D (B22 - B21 diag(w) B21') D of crossed scalar factors (D = diag(lam)),
    computed per evaluation by a compiled pass over the columns of B21 (one per group of the
    first factor): memory O(nnz(B21)) where :class:`hlm.lmm.crossed.SchurPairs` stores every
    product pair; used when those pairs are many (the ml-1m shape: 6,000 users rating ~170
    of 3,700 items each)."""

    classes: np.ndarray  # distinct counts of the first factor's groups
    cls: np.ndarray  # class of each column
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    b22: sp.csr_matrix  # (m, m) lower triangle of B22

    @classmethod
    def of(cls, b21: sp.csr_matrix, counts: np.ndarray, b22: np.ndarray | sp.spmatrix) -> SchurGram:
        classes, of_col = np.unique(counts, return_inverse=True)
        csc = b21.tocsc()
        csc.sort_indices()
        low = sp.tril(b22, format="csr")
        return cls(
            classes.astype(float),
            of_col,
            csc.indptr.astype(np.int64),
            csc.indices.astype(np.int64),
            csc.data.astype(float),
            sp.csr_matrix(
                (low.data.astype(float), low.indices.astype(np.int64), low.indptr.astype(np.int64)), low.shape
            ),
        )

    def schur(self, w_of_count: np.ndarray, lam: np.ndarray) -> np.ndarray:
        """Dense (m, m) whose lower triangle is I + D (B22 - B21 diag(w) B21') D; w per class."""
        out = np.zeros(self.b22.shape)
        _weighted_gram(self.indptr, self.indices, self.data, w_of_count[self.cls], out)
        _scale_lower(out, self.b22.indptr, self.b22.indices, self.b22.data, lam)
        return out


def product_pairs(b21: sp.csr_matrix) -> int:
    """How many products b_si b_sj (i >= j) the columns of B21 hold."""
    k = np.diff(b21.tocsc().indptr).astype(np.int64)
    return int((k * (k + 1) // 2).sum())


@numba.njit(cache=True, nogil=True)
def _vector_level(Mzz: np.ndarray, Mzk: np.ndarray, J: np.ndarray, lam: np.ndarray, Q: np.ndarray) -> float:
    """One level of the nested recursion (:mod:`hlm.lmm.nested`) in place: per group g,
    with P = lam' M_zz[J, :], R = lam' M_zk[J, :] and L L' = I + P[:, J] lam,
    Q -= R'(LL')^{-1}R, M_zz -= P'(LL')^{-1}P, M_zk -= P'(LL')^{-1}R; returns log|LL'| summed
    (nan when a block is not positive definite)."""
    G, z, k = Mzk.shape
    q = len(J)
    A = np.empty((q, q))
    P = np.empty((q, z))
    R = np.empty((q, k))
    logdet = 0.0
    for g in range(G):
        for a in range(q):
            for col in range(z):
                s = 0.0
                for c in range(q):
                    s += lam[c, a] * Mzz[g, J[c], col]
                P[a, col] = s
            for col in range(k):
                s = 0.0
                for c in range(q):
                    s += lam[c, a] * Mzk[g, J[c], col]
                R[a, col] = s
        for a in range(q):
            for b in range(a + 1):
                s = 1.0 if a == b else 0.0
                for c in range(q):
                    s += P[a, J[c]] * lam[c, b]
                A[a, b] = s
        for j in range(q):
            s = A[j, j]
            for c in range(j):
                s -= A[j, c] * A[j, c]
            if s <= 0.0:
                return np.nan
            d = np.sqrt(s)
            A[j, j] = d
            logdet += 2.0 * np.log(d)
            for i in range(j + 1, q):
                s = A[i, j]
                for c in range(j):
                    s -= A[i, c] * A[j, c]
                A[i, j] = s / d
        for a in range(q):  # P <- L^{-1} P, R <- L^{-1} R
            for col in range(z):
                s = P[a, col]
                for c in range(a):
                    s -= A[a, c] * P[c, col]
                P[a, col] = s / A[a, a]
            for col in range(k):
                s = R[a, col]
                for c in range(a):
                    s -= A[a, c] * R[c, col]
                R[a, col] = s / A[a, a]
        for i in range(k):
            for j in range(k):
                s = 0.0
                for a in range(q):
                    s += R[a, i] * R[a, j]
                Q[i, j] -= s
        for i in range(z):
            for j in range(z):
                s = 0.0
                for a in range(q):
                    s += P[a, i] * P[a, j]
                Mzz[g, i, j] -= s
            for j in range(k):
                s = 0.0
                for a in range(q):
                    s += P[a, i] * R[a, j]
                Mzk[g, i, j] -= s
    return logdet


def vector_level(
    Mzz: np.ndarray, Mzk: np.ndarray, J: list[int], lam: np.ndarray, Q: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """:func:`_vector_level` on copies of M_zz and M_zk (Q is updated in place)."""
    Mzz, Mzk = np.array(Mzz, dtype=float, order="C"), np.array(Mzk, dtype=float, order="C")
    logdet = _vector_level(Mzz, Mzk, np.asarray(J, dtype=np.int64), np.ascontiguousarray(lam, dtype=float), Q)
    if not np.isfinite(logdet):
        raise np.linalg.LinAlgError("I + Lambda'M Lambda is not positive definite")
    return float(logdet), Mzz, Mzk
