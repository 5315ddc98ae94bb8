"""A sparse Cholesky with a fixed pattern for the PIRLS system
M = [[A'WA + I, A'WX], [X'WA, X'WX]]  (q random-effect rows, then p fixed-effect rows).

Only the values of M change between PIRLS iterations (W) and evaluations (theta, beta), never
its pattern, so the pattern of L is found once (elimination tree and row patterns, as CSparse's
``cs_etree``/``cs_ereach``) and every factorization is the numeric up-looking algorithm
(``cs_chol``) into preallocated arrays.  The random effects come term by term, the term with
most levels first: for nested terms the bottom level is eliminated first and L has no fill
beyond each group's ancestors (the bottom-up recursion of :mod:`hlm.lmm.nested`); for crossed
terms the first factor's block is diagonal and the fill stays in the smaller factors' block
(the blocked Cholesky of :mod:`hlm.lmm.crossed`).  The p fixed-effect rows are kept dense, so
the leading q x q block of L is the Cholesky of A'WA + I (Laplace) and the whole of L that of
the joint system (the fast, ``nagq=0`` stage).

Storage: M by rows, row k holding its columns j <= k in increasing order (the diagonal last);
L by columns, the diagonal first, then the random rows of the pattern, then the p fixed rows.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True)
def factor(
    Mp: np.ndarray,
    Mi: np.ndarray,
    Mx: np.ndarray,
    Rp: np.ndarray,
    Rj: np.ndarray,
    Lp: np.ndarray,
    Li: np.ndarray,
    Lx: np.ndarray,
    nrows: int,
    q: int,
    x: np.ndarray,
    cursor: np.ndarray,
) -> bool:
    """Up-looking Cholesky of M's leading ``nrows`` rows into Lx; False where M is not positive
    definite.  Row k's pattern: Rj[Rp[k]:Rp[k+1]] for k < q, every column before it otherwise."""
    for k in range(nrows):
        for t in range(Mp[k], Mp[k + 1]):
            x[Mi[t]] = Mx[t]
        d = x[k]
        x[k] = 0.0
        lo, hi = (Rp[k], Rp[k + 1]) if k < q else (0, k)
        for t in range(lo, hi):
            i = Rj[t] if k < q else t
            lki = x[i] / Lx[Lp[i]]
            x[i] = 0.0
            for s in range(Lp[i] + 1, cursor[i]):
                x[Li[s]] -= Lx[s] * lki
            d -= lki * lki
            Lx[cursor[i]] = lki
            cursor[i] += 1
        if not d > 0.0:
            return False
        Lx[Lp[k]] = math.sqrt(d)
        cursor[k] = Lp[k] + 1
    return True


@numba.njit(cache=True)
def solve(Lp: np.ndarray, Li: np.ndarray, Lx: np.ndarray, b: np.ndarray, q: int, p: int, nrows: int) -> np.ndarray:
    """x with L L' x = b for the leading ``nrows`` rows (q: all random rows, or q + p: all)."""
    x = b.copy()
    for j in range(nrows):  # L z = b
        x[j] /= Lx[Lp[j]]
        end = Lp[j + 1] - (p if (j < q and nrows == q) else 0)
        for s in range(Lp[j] + 1, end):
            x[Li[s]] -= Lx[s] * x[j]
    for j in range(nrows - 1, -1, -1):  # L' x = z
        end = Lp[j + 1] - (p if (j < q and nrows == q) else 0)
        acc = x[j]
        for s in range(Lp[j] + 1, end):
            acc -= Lx[s] * x[Li[s]]
        x[j] = acc / Lx[Lp[j]]
    return x


@numba.njit(cache=True)
def _etree(Mp: np.ndarray, Mi: np.ndarray, q: int) -> np.ndarray:
    parent = np.full(q, -1, np.int64)
    ancestor = np.full(q, -1, np.int64)
    for k in range(q):
        for t in range(Mp[k], Mp[k + 1]):
            i = Mi[t]
            while i != -1 and i < k:
                nxt = ancestor[i]
                ancestor[i] = k
                if nxt == -1:
                    parent[i] = k
                i = nxt
    return parent


@numba.njit(cache=True)
def _row_patterns(Mp: np.ndarray, Mi: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Rp, Rj: the columns j < k of L's row k (sorted), by walking the elimination tree."""
    parent = _etree(Mp, Mi, q)
    mark = np.full(q, -1, np.int64)
    counts = np.zeros(q + 1, np.int64)
    stack = np.empty(q, np.int64)
    for sweep in range(2):
        Rj = np.empty(counts[q] if sweep else 0, np.int64)
        mark[:] = -1
        for k in range(q):
            mark[k] = k
            top = 0
            for t in range(Mp[k], Mp[k + 1]):
                i = Mi[t]
                while i < k and mark[i] != k:
                    mark[i] = k
                    stack[top] = i
                    top += 1
                    i = parent[i]
            if sweep == 0:
                counts[k + 1] = counts[k] + top
            else:
                Rj[counts[k] : counts[k] + top] = np.sort(stack[:top])
    return counts, Rj


@numba.njit(cache=True)
def _columns(Rp: np.ndarray, Rj: np.ndarray, q: int, p: int) -> tuple[np.ndarray, np.ndarray]:
    """Lp, Li from the row patterns, with p dense fixed rows under every column."""
    N = q + p
    count = np.ones(N, np.int64)
    for t in range(len(Rj)):
        count[Rj[t]] += 1
    for j in range(N):
        count[j] += (N - 1 - j) if j >= q else p
    Lp = np.zeros(N + 1, np.int64)
    Lp[1:] = np.cumsum(count)
    Li = np.empty(Lp[N], np.int64)
    fill = Lp[:-1] + 1
    for j in range(N):
        Li[Lp[j]] = j
    for k in range(q):
        for t in range(Rp[k], Rp[k + 1]):
            j = Rj[t]
            Li[fill[j]] = k
            fill[j] += 1
    for k in range(q, N):
        for j in range(k):
            Li[fill[j]] = k
            fill[j] += 1
    return Lp, Li


@numba.njit(cache=True)
def _random_block(
    cols: np.ndarray, q: int, bb: np.ndarray, cc: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """M's random rows: Mp, Mi (row k: the distinct columns j <= k that its rows' products
    a_b a_c reach, and k itself, increasing) and pos (N x len(bb)), by bucketing the products by
    their row k = cols[i, c] and stamping the columns seen in each row."""
    N, npair = cols.shape[0], len(bb)
    start = np.zeros(q + 1, np.int64)
    for i in range(N):
        for t in range(npair):
            start[cols[i, cc[t]] + 1] += 1
    start = np.cumsum(start)
    fill = start[:-1].copy()
    entry = np.empty(N * npair, np.int64)  # the products i * npair + t, by row k
    column = np.empty(N * npair, np.int64)  # and their columns j
    for i in range(N):
        for t in range(npair):
            k = cols[i, cc[t]]
            entry[fill[k]] = i * npair + t
            column[fill[k]] = cols[i, bb[t]]
            fill[k] += 1
    stamp, where = np.full(q, -1, np.int64), np.empty(q, np.int64)
    Mp = np.zeros(q + 1, np.int64)
    Mi = np.empty(N * npair + q, np.int64)
    pos = np.empty(N * npair, np.int64)
    found = np.empty(q, np.int64)
    nnz = 0
    for k in range(q):
        m = 0
        for e in range(start[k], start[k + 1]):
            lo = column[e]
            if stamp[lo] != k:
                stamp[lo] = k
                found[m] = lo
                m += 1
        if stamp[k] != k:
            stamp[k] = k
            found[m] = k
            m += 1
        if m > 32:
            found[:m] = np.sort(found[:m])
        else:  # the usual few: insertion sort, no allocation
            for a in range(1, m):
                v, b = found[a], a - 1
                while b >= 0 and found[b] > v:
                    found[b + 1] = found[b]
                    b -= 1
                found[b + 1] = v
        for j in range(m):
            Mi[nnz + j] = found[j]
            where[found[j]] = nnz + j
        for e in range(start[k], start[k + 1]):
            pos[entry[e]] = where[column[e]]
        nnz += m
        Mp[k + 1] = nnz
    return Mp, Mi[:nnz], pos.reshape(N, npair)


def analyse(cols: np.ndarray, q: int, p: int) -> tuple[np.ndarray, ...]:
    """The fixed pattern for rows whose random columns are ``cols`` (N x r, increasing along a
    row): (pos, Mp, Mi, Lp, Li, Rp, Rj), pos[i] holding where row i's products a_b a_c (b <= c,
    row-major) land in M's values."""
    bb, cc = np.triu_indices(cols.shape[1])
    Mq, Mi_q, pos = _random_block(
        np.ascontiguousarray(cols, dtype=np.int64), q, bb.astype(np.int64), cc.astype(np.int64)
    )
    Mp = np.zeros(q + p + 1, np.int64)
    Mp[: q + 1] = Mq
    Mp[q + 1 :] = Mp[q] + np.cumsum(q + 1 + np.arange(p))
    Mi = np.concatenate([Mi_q, *[np.arange(q + f + 1) for f in range(p)]]).astype(np.int64)
    Rp, Rj = _row_patterns(Mp, Mi, q)
    Lp, Li = _columns(Rp, Rj, q, p)
    return pos, Mp, Mi, Lp, Li, Rp, Rj


@numba.njit(cache=True)
def _find(Li: np.ndarray, lo: int, hi: int, row: int) -> int:
    """Position of ``row`` in the sorted Li[lo:hi] (it is there: L's pattern is chordal)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if Li[mid] < row:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True)
def selected_inverse(Lp: np.ndarray, Li: np.ndarray, Lx: np.ndarray, q: int, p: int) -> np.ndarray:
    """Z = (L L')^-1 of the random block on L's pattern (Takahashi's recurrences, last column
    first): Z_ij = -sum_{k>j} L_kj Z_ik / L_jj (i > j), Z_jj = 1/L_jj^2 - sum_{k>j} L_kj Z_kj / L_jj;
    every Z_ik needed lies on the pattern, so no entry outside it is formed.  Each pair i < k of
    column j's rows is visited once, Z_ik read from column i by a forward walk (column j's rows
    after i are in column i's sorted pattern), and added to both rows' sums."""
    Zx = np.zeros(len(Lx))
    acc = np.empty(q)
    for j in range(q - 1, -1, -1):
        lo, hi = Lp[j], Lp[j + 1] - p
        d = Lx[lo]
        for a in range(lo + 1, hi):
            acc[a - lo] = Lx[a] * Zx[Lp[Li[a]]]
        for a in range(lo + 1, hi):
            t = Lp[Li[a]] + 1
            for b in range(a + 1, hi):
                while Li[t] != Li[b]:
                    t += 1
                acc[a - lo] += Lx[b] * Zx[t]
                acc[b - lo] += Lx[a] * Zx[t]
        s = 0.0
        for a in range(lo + 1, hi):
            Zx[a] = -acc[a - lo] / d
            s += Lx[a] * Zx[a]
        Zx[lo] = 1.0 / (d * d) - s / d
    return Zx


def inverse_entry(Lp: np.ndarray, Li: np.ndarray, Zx: np.ndarray, p: int, i: int, k: int) -> float:
    """Z_ik from :func:`selected_inverse` (i, k on L's pattern)."""
    lo, hi = (i, k) if i <= k else (k, i)
    return float(Zx[Lp[lo]] if lo == hi else Zx[_find(Li, Lp[lo] + 1, Lp[lo + 1] - p, hi)])
