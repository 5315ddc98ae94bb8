"""Crossed (non-nested) factors: blocked Cholesky of A = Lambda'Z'Z Lambda + I.

Random effects are ordered by factor, largest factor first.  As in MixedModels.jl the
first factor's block of A is block diagonal (one q1 x q1 block per group), so

    L = [[L1, 0], [C21, L22]],   L1 L1' = A11,   C21 = A21 L1^{-T},
    L22 L22' = A22 - C21 C21'                       (dense, the smaller factors)

and with R = L^{-1} Lambda'Z'K:  log|H| = 2 sum log diag L,  K'H^{-1}K = K'K - R'R.
When the remaining factors have more than ``DENSE_LIMIT`` effects (vector effects), a sparse LU
of the whole SPD matrix (SuperLU, diagonal pivoting, minimum-degree ordering) is used instead;
scalar factors keep the dense Schur block up to ``SCALAR_LIMIT`` effects, since eliminating the
first factor's diagonal block exactly leaves the smaller factor's block near-dense anyway and a
minimum-degree LU of the whole matrix fills far more (12,000 x 4,000 Zipf-crossed: 66M entries
in L and 67 s, against 8M and 0.5 s for the dense Cholesky of the 4,000-wide Schur block).

When every factor has one random effect per group (scalar Lambda_f = lambda_f), the
blocks are rescalings of fixed matrices: A11 = 1 + lambda_1^2 n, C21 = diag(lambda_r)
B21 diag(lambda_1 / sqrt(A11)), A22 = I + (lambda_r lambda_r') * B22 with B = Z'Z; only
the numbers change between evaluations, never the sparsity, so nothing is rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from hlm.aggregate.stats import Aggregates, FactorStats
from hlm.lmm.kernels import SchurGram, product_pairs, schur_cells
from hlm.lmm.structure import Structure

DENSE_LIMIT = 4000
SCALAR_LIMIT = 20_000  # scalar factors: dense Schur block up to this order (8 m^2 bytes: 3.2 GB at 20,000)
PAIR_LIMIT = 2_000_000  # above this many products of B21's columns, :class:`SchurGram` (no stored pairs)


@dataclass(frozen=True)
class CrossedSystem:
    """Z'Z and Z'K laid out for the blocked Cholesky (built once per fit)."""

    order: tuple[int, ...]  # factors, largest first
    sizes: tuple[int, ...]  # G_f * q_f in that order
    ztz: sp.csr_matrix  # (q, q)
    ztk: np.ndarray  # (q, k)
    first_ztz: np.ndarray  # (G1, q1, q1)
    lambda_template: tuple[np.ndarray, np.ndarray, np.ndarray]  # csr indices, indptr, block sizes
    scalar: ScalarBlocks | None = None


@dataclass(frozen=True)
class ScalarBlocks:
    """Fixed pieces of Z'Z for the all-scalar case (see the module docstring)."""

    counts: np.ndarray  # (G1,) diagonal of B11
    b21: sp.csr_matrix  # (m, G1)
    rest_factor: np.ndarray  # (m,) position in ``order`` of each remaining effect
    schur: SchurPairs | SchurGram


@dataclass(frozen=True)
class SchurPairs:
    """The Schur block I + D (B22 - B21 diag(w) B21') D (lower triangle, D = diag(lam)) as a
    function of w and lam, where w depends on a group of the first factor only through its
    count: the products b_si b_sj of every column s are summed once per count class and kept
    with B22's entries (one more class, of weight -1), sorted by cell, so an evaluation is one
    compiled pass over them (:func:`hlm.lmm.kernels.schur_cells`)."""

    classes: np.ndarray  # (c,) distinct counts of the first factor's groups
    row: np.ndarray  # (m + 1,) cells row[i] to row[i + 1] - 1 are in row i (those with sums)
    col: np.ndarray  # column j <= i of each cell, ascending within its row
    start: np.ndarray  # the cell's sums are entries start[t] to start[t + 1] of the next two
    cls: np.ndarray  # count class of each sum; c for an entry of B22
    value: np.ndarray  # sum over the class's groups of b_si b_sj, or B22's entry

    def schur(self, w_of_count: np.ndarray, lam: np.ndarray) -> np.ndarray:
        """Dense (m, m) whose lower triangle is I + D (B22 - B21 diag(w) B21') D; w per class."""
        return schur_cells(self.row, self.col, self.start, self.cls, self.value, np.append(-w_of_count, 1.0), lam)


def schur_pairs(b21: sp.csr_matrix, counts: np.ndarray, b22: np.ndarray | sp.spmatrix) -> SchurPairs:
    """Precompute :class:`SchurPairs` from B21 (m x G1), the first factor's counts and B22.

    Every product pair of a column is keyed by (cell, count class); one sort of the keys
    (``np.unique``) and one bincount sum the pairs of each class into its cells."""
    m = b21.shape[0]
    classes, cls_of_col = np.unique(counts, return_inverse=True)
    nclass = len(classes) + 1  # the last one holds B22
    csc = b21.tocsc()
    csc.sort_indices()
    k = np.diff(csc.indptr)
    col = np.repeat(np.arange(csc.shape[1]), k)
    pos = np.arange(csc.nnz) - csc.indptr[col]  # position of each entry within its column
    a = np.repeat(np.arange(csc.nnz), pos + 1)  # entry a pairs with the column's entries 0..pos
    offsets = np.repeat(np.cumsum(pos + 1) - (pos + 1), pos + 1)
    b = csc.indptr[col[a]] + (np.arange(len(a)) - offsets)
    cell = csc.indices[a].astype(np.int64) * m + csc.indices[b]
    low = sp.tril(b22, format="coo")
    i22, j22 = low.row, low.col
    key = np.concatenate([cell * nclass + cls_of_col[col[a]], (i22.astype(np.int64) * m + j22) * nclass + nclass - 1])
    unique, which = np.unique(key, return_inverse=True)
    value = np.bincount(which, weights=np.concatenate([csc.data[a] * csc.data[b], low.data]))
    keep = value != 0.0
    unique, value = unique[keep], value[keep]
    cell, first = np.unique(unique // nclass, return_index=True)
    start = np.append(first, len(unique)).astype(np.int64)
    row = np.searchsorted(cell // m, np.arange(m + 1)).astype(np.int64)
    cls = (unique % nclass).astype(np.min_scalar_type(nclass))
    return SchurPairs(classes.astype(float), row, (cell % m).astype(np.int64), start, cls, value)


def group_arrays(fac: FactorStats) -> tuple[np.ndarray, np.ndarray]:
    """Z_g'Z_g and Z_g'K_g of every group of ``fac``, a factor not pooled by size (crossed
    factors never are)."""
    assert fac.ztz is not None and fac.ztk is not None, f"'{fac.name}' has no per-group arrays"
    return fac.ztz, fac.ztk


def build_crossed(agg: Aggregates, struct: Structure) -> CrossedSystem:
    """Assemble sparse Z'Z and dense Z'K from the per-group and cross-block aggregates."""
    order = tuple(sorted(range(len(agg.factors)), key=lambda f: -agg.factors[f].nlevels))
    q = [len(struct.factor_cols[f]) for f in range(len(agg.factors))]
    sizes = tuple(agg.factors[f].nlevels * q[f] for f in order)
    offset = {f: int(sum(sizes[:i])) for i, f in enumerate(order)}
    rows, cols, vals = [], [], []

    def put(f: int, h: int, gf: np.ndarray, gh: np.ndarray, blocks: np.ndarray) -> None:
        for a in range(q[f]):
            for b in range(q[h]):
                rows.append(offset[f] + gf * q[f] + a)
                cols.append(offset[h] + gh * q[h] + b)
                vals.append(blocks[:, a, b])

    for f, stats in enumerate(agg.factors):
        J = list(struct.factor_cols[f])
        g = np.arange(stats.nlevels)
        put(f, f, g, g, group_arrays(stats)[0][:, J][:, :, J])
    for blk in agg.cross:
        Ji, Jj = list(struct.factor_cols[blk.i]), list(struct.factor_cols[blk.j])
        zz = blk.zz[:, Ji][:, :, Jj]
        put(blk.i, blk.j, blk.gi, blk.gj, zz)
        put(blk.j, blk.i, blk.gj, blk.gi, np.transpose(zz, (0, 2, 1)))
    n = int(sum(sizes))
    ztz = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    ztk = _ztk(agg, struct, order)
    f1 = order[0]
    J1 = list(struct.factor_cols[f1])
    scalar = None
    n1 = sizes[0]
    if all(q[f] == 1 for f in order) and n - n1 <= SCALAR_LIMIT:
        b21 = ztz[n1:, :n1].tocsr()
        counts = ztz.diagonal()[:n1].copy()
        rest = np.repeat(np.arange(1, len(order)), sizes[1:])
        b22 = sp.tril(ztz[n1:, n1:], format="csr")
        schur = schur_pairs(b21, counts, b22) if product_pairs(b21) <= PAIR_LIMIT else SchurGram.of(b21, counts, b22)
        scalar = ScalarBlocks(counts, b21, rest, schur)
    return CrossedSystem(
        order,
        sizes,
        ztz,
        ztk,
        group_arrays(agg.factors[f1])[0][:, J1][:, :, J1],
        _lambda_template([agg.factors[f].nlevels for f in order], [q[f] for f in order]),
        scalar,
    )


def _ztk(agg: Aggregates, struct: Structure, order: tuple[int, ...]) -> np.ndarray:
    """Dense Z'K with the random effects in ``order``."""
    k = agg.ktk.shape[0]
    return np.concatenate(
        [group_arrays(agg.factors[f])[1][:, list(struct.factor_cols[f]), :].reshape(-1, k) for f in order]
    )


def with_responses(system: CrossedSystem, agg: Aggregates, struct: Structure) -> CrossedSystem:
    """``system`` for aggregates ``agg`` of the same Z'Z (K's columns rescaled): only Z'K is
    laid out again, the Z'Z parts (and the scalar case's stored products) are kept."""
    return replace(system, ztk=_ztk(agg, struct, system.order))


def _lambda_template(nlevels: list[int], q: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR indices and indptr of a block-diagonal matrix of G_f dense q_f x q_f blocks."""
    indices, offset = [], 0
    for G, qf in zip(nlevels, q):
        cols = offset + np.arange(G)[:, None, None] * qf + np.arange(qf)[None, None, :]
        indices.append(np.broadcast_to(cols, (G, qf, qf)).ravel())
        offset += G * qf
    row_len = np.concatenate([np.full(G * qf, qf) for G, qf in zip(nlevels, q)])
    indptr = np.concatenate([[0], np.cumsum(row_len)])
    return np.concatenate(indices), indptr, np.array(nlevels)


def lambda_matrix(system: CrossedSystem, agg: Aggregates, lambdas: list[np.ndarray]) -> sp.csr_matrix:
    """Block-diagonal Lambda in the system's order (the sparsity pattern is precomputed)."""
    indices, indptr, nlevels = system.lambda_template
    data = np.concatenate([np.tile(lambdas[f].ravel(), G) for f, G in zip(system.order, nlevels)])
    n = len(indptr) - 1
    return sp.csr_matrix((data, indices, indptr), shape=(n, n))


def scalar_terms(system: CrossedSystem, agg: Aggregates, lambdas: list[np.ndarray]) -> tuple[float, np.ndarray]:
    """log|H| and K'H^{-1}K when every factor has a single random effect per group."""
    blk = system.scalar
    assert blk is not None
    lam = np.array([lambdas[f][0, 0] for f in system.order])
    n1 = system.sizes[0]
    d1 = 1.0 + lam[0] ** 2 * blk.counts
    w1 = lam[0] / np.sqrt(d1)
    r1 = system.ztk[:n1] * w1[:, None]
    Q = agg.ktk - r1.T @ r1
    logdet = float(np.log(d1).sum())
    lam_r = lam[blk.rest_factor]
    w_class = lam[0] ** 2 / (1.0 + lam[0] ** 2 * blk.schur.classes)  # w1^2 by count class
    # S22's lower triangle (C order) is the upper one of its Fortran-ordered transpose: Cholesky
    # U'U = S22 factors that in place (no m x m copy), and L22 = U'
    U22 = sla.cholesky(blk.schur.schur(w_class, lam_r).T, lower=False, overwrite_a=True, check_finite=False)
    logdet += 2.0 * float(np.log(np.diag(U22)).sum())
    rhs = (system.ztk[n1:] - blk.b21 @ (r1 * w1[:, None])) * lam_r[:, None]
    r2 = sla.solve_triangular(U22, rhs, trans="T", lower=False, check_finite=False)
    return logdet, Q - r2.T @ r2


def crossed_terms(system: CrossedSystem, agg: Aggregates, lambdas: list[np.ndarray]) -> tuple[float, np.ndarray]:
    """log|H| and Q = K'H^{-1}K for crossed factors."""
    if system.scalar is not None:
        return scalar_terms(system, agg, lambdas)
    Lam = lambda_matrix(system, agg, lambdas)
    A = (Lam.T @ system.ztz @ Lam).tocsr()
    b = Lam.T @ system.ztk  # (q, k)
    n1 = system.sizes[0]
    m = A.shape[0] - n1
    if m > DENSE_LIMIT:
        A = (A + sp.identity(A.shape[0], format="csr")).tocsc()
        lu = splu(A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
        logdet = float(np.log(np.abs(lu.U.diagonal())).sum())
        return logdet, agg.ktk - b.T @ lu.solve(b)
    lam1 = lambdas[system.order[0]]
    q1 = lam1.shape[0]
    A11 = np.eye(q1) + np.einsum("ji,gjk,kl->gil", lam1, system.first_ztz, lam1)
    L1 = np.linalg.cholesky(A11)  # (G1, q1, q1)
    L1inv = np.linalg.inv(L1)
    logdet = 2.0 * np.log(np.diagonal(L1, axis1=1, axis2=2)).sum()
    r1 = np.einsum("gij,gjk->gik", L1inv, b[:n1].reshape(-1, q1, b.shape[1])).reshape(n1, -1)
    Q = agg.ktk - r1.T @ r1
    if m == 0:
        return logdet, Q
    C21 = A[n1:, :n1] @ sp.block_diag(list(np.transpose(L1inv, (0, 2, 1))), format="csr")
    S22 = A[n1:, n1:].toarray() + np.eye(m) - (C21 @ C21.T).toarray()
    L22 = np.linalg.cholesky(S22)
    logdet += 2.0 * np.log(np.diag(L22)).sum()
    r2 = sla.solve_triangular(L22, b[n1:] - C21 @ r1, lower=True)
    return logdet, Q - r2.T @ r2
