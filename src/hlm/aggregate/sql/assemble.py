"""Aggregates from the rows of the grouped query: level codes, labels, parents and cross blocks,
assembled in numpy (their number is the number of groups, never of rows).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from hlm.aggregate.sql.dialect import as_array
from hlm.aggregate.sql.plan import Plan, sums_are_counts
from hlm.aggregate.stats import Aggregates, CrossBlock, FactorStats
from hlm.data.codes import dense_codes
from hlm.errors import DataError


def sorted_codes(values: np.ndarray) -> np.ndarray:
    """Codes 0..m-1 in sorted order of the values (the in-memory path's coding)."""
    return dense_codes(np.asarray(values))[0]


def lookup_codes(table: Sequence[np.ndarray], probe: Sequence[np.ndarray]) -> np.ndarray:
    """Row index in ``table`` (key columns, unique tuples) of each probe tuple; -1 if absent."""
    codes_t, codes_p, radix = [], [], 1
    for t, q_ in zip(table, probe):
        codes = sorted_codes(np.concatenate([t, q_]))
        codes_t.append(codes[: len(t)])
        codes_p.append(codes[len(t) :])
        radix *= int(codes.max(initial=0)) + 1
    if radix >= 2**62:  # too many combinations for one integer key
        return pd.MultiIndex.from_arrays(table).get_indexer(pd.MultiIndex.from_arrays(probe))
    tkey = np.zeros(len(table[0]), dtype=np.int64)
    pkey = np.zeros(len(probe[0]), dtype=np.int64)
    for ct, cp in zip(codes_t, codes_p):
        m = int(max(ct.max(initial=-1), cp.max(initial=-1))) + 1
        tkey, pkey = tkey * m + ct, pkey * m + cp
    order = np.argsort(tkey, kind="stable")
    pos = np.searchsorted(tkey[order], pkey)
    pos = np.minimum(pos, len(order) - 1)
    found = tkey[order][pos] == pkey
    return np.where(found, order[pos], -1)


def _split_sets(p: Plan, cols: Mapping[str, np.ndarray], sets: list[tuple[int, ...]]) -> dict:
    """Row indices of each grouping set in a GROUPING SETS result."""
    nrow = len(cols["n"])
    if len(sets) == 1:
        return {sets[0]: np.arange(nrow)}
    used = sorted(set().union(*map(set, sets)))
    gid = cols["gid"].astype(np.int64)
    return {s: np.flatnonzero(gid == sum(2**j for j, i in enumerate(used) if i not in s)) for s in sets}


def _nobs_checked(p: Plan, glob: Mapping[str, np.ndarray], ntotal: int) -> int:
    """The complete rows' count; refuses no rows and columns whose sums met an infinity or NaN."""
    nobs = int(as_array(glob["n"])[0])
    if nobs == 0:
        raise DataError(
            "every row has a missing value in a model column; nothing is left to fit"
            if ntotal
            else "the data has no rows"
        )
    bad = [(f"inf_{j}", p.xnames[j] if j < len(p.xnames) else p.spec.response) for j in range(p.k)]
    bad += [(f"infz_{a}", p.pool[a]) for a in range(len(p.zcols)) if f"infz_{a}" in glob]
    for key, name in bad:
        if int(np.nan_to_num(as_array(glob[key]).astype(float))[0]):
            raise DataError(
                f"column '{name}' has infinite values or NaN (such as log or sqrt of a negative number); "
                "remove or recode them"
            )
    return nobs


def _global_ktk(p: Plan, glob: Mapping[str, np.ndarray]) -> np.ndarray:
    """K'K of the fixed columns and the response, symmetric from the upper triangle's sums."""
    k = p.k
    ktk = np.empty((k, k))
    for a in range(k):
        for b in range(a, k):
            ktk[a, b] = ktk[b, a] = float(as_array(glob[f"kk_{a}_{b}"])[0])
    return ktk


def _group_blocks(p: Plan, rows: np.ndarray, cols: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per group row: Z'Z and Z'K from the sums (a sum the plan did not query is the row count)."""
    k, z = p.k, len(p.zcols)
    ztz = np.empty((len(rows), z, z))
    ztk = np.empty((len(rows), z, k))
    for a in range(z):
        for b in range(a, z):
            ztz[:, a, b] = ztz[:, b, a] = cols.get(f"zz_{a}_{b}", cols["n"])[rows]
        for c in range(k):
            name = f"zk_{a}_{c}"
            ztk[:, a, c] = cols[name][rows] if name in cols else cols["n"][rows] if sums_are_counts(p, a, c) else np.nan
    return ztz, ztk


def _factor_rows(
    p: Plan, cols: Mapping[str, np.ndarray], which: Mapping[tuple[int, ...], np.ndarray]
) -> tuple[list[np.ndarray], list[list[np.ndarray]], list[np.ndarray]]:
    """Per factor: its rows in label order, its key columns in that order and its groups' row counts."""
    frows: list[np.ndarray] = []
    keyvals: list[list[np.ndarray]] = []
    counts: list[np.ndarray] = []
    for f in p.layout.factors:
        rows = which[tuple(sorted(f.keys))]
        vals = [cols[f"g{i}"][rows] for i in f.keys]
        codes = [sorted_codes(v) for v in vals]
        order = np.lexsort(codes[::-1]) if codes else np.arange(len(rows))
        rows = rows[order]
        frows.append(rows)
        keyvals.append([v[order] for v in vals])
        counts.append(cols["n"][rows].astype(np.int64))
    return frows, keyvals, counts


def _cross_blocks(
    p: Plan,
    cols: Mapping[str, np.ndarray],
    which: Mapping[tuple[int, ...], np.ndarray],
    keyvals: list[list[np.ndarray]],
    pairs: Callable[[list[tuple[int, ...]]], Mapping[str, np.ndarray]] | None,
) -> list[CrossBlock]:
    """Z'Z between the groups of every pair of crossed factors, from the pair sets' rows
    (queried through ``pairs`` where the grouped rows do not hold them already)."""
    psets = p.layout.pair_sets()
    have = {s for s in psets if s in which}
    pcols: dict[str, np.ndarray] = {}
    if len(have) < len(psets):
        assert pairs is not None, "the pair sets' rows are needed"
        pcols = {name: as_array(v) for name, v in pairs([s for s in psets if s not in have]).items()}
    pwhich = _split_sets(p, pcols, [s for s in psets if s not in have]) if pcols else {}
    cross: list[CrossBlock] = []
    for i, j in itertools.combinations(range(len(p.layout.factors)), 2):
        s = tuple(sorted(set(p.layout.factors[i].keys) | set(p.layout.factors[j].keys)))
        src_cols, rows = (cols, which[s]) if s in have else (pcols, pwhich[s])
        gi = lookup_codes(keyvals[i], [src_cols[f"g{c}"][rows] for c in p.layout.factors[i].keys])
        gj = lookup_codes(keyvals[j], [src_cols[f"g{c}"][rows] for c in p.layout.factors[j].keys])
        order = np.lexsort((gj, gi))
        zz, _ = _group_blocks(p, rows[order], src_cols)
        cross.append(CrossBlock(i, j, gi[order].astype(np.int64), gj[order].astype(np.int64), zz))
    return cross


def assemble(
    p: Plan,
    glob: Mapping[str, np.ndarray],
    groups: Mapping[str, np.ndarray],
    ntotal: int,
    pairs: Callable[[list[tuple[int, ...]]], Mapping[str, np.ndarray]] | None = None,
    *,
    _empty: bool = False,
) -> Aggregates:
    """Aggregates from the global row and the grouped rows of :meth:`Plan.group_query`.

    ``pairs(sets)`` runs :meth:`Plan.group_query` for the pair sets when the factors turn
    out crossed (not one nested chain)."""
    nobs = _nobs_checked(p, glob, ntotal)
    ktk = _global_ktk(p, glob)
    base = Aggregates(  # the global part (assemble_chain does the groups when _empty)
        nobs=nobs,
        ndropped=int(ntotal) - nobs,
        response=p.spec.response,
        xnames=p.xnames,
        pool=p.pool,
        ktk=ktk,
        factors=(),
        term_factor=p.layout.term_factor,
        term_columns=p.term_columns,
        chain=None,
        parents=(),
    )
    if _empty:
        return base
    cols = {name: as_array(v) for name, v in groups.items()}
    which = _split_sets(p, cols, p.layout.factor_sets())
    frows, keyvals, counts = _factor_rows(p, cols, which)
    chain, parents = nesting_of(p, frows, keyvals, [len(r) for r in frows], cols)
    factors = []
    for idx, f in enumerate(p.layout.factors):
        need = chain is None or idx == chain[0]
        ztz, ztk = _group_blocks(p, frows[idx], cols) if need else (None, None)
        factors.append(FactorStats(f.name, f.columns, tuple(keyvals[idx]), counts[idx], ztz, ztk))
    cross = _cross_blocks(p, cols, which, keyvals, pairs) if chain is None and len(p.layout.factors) > 1 else []
    return replace(
        base, factors=tuple(factors), chain=chain, parents=parents if chain is not None else (), cross=tuple(cross)
    )


def sorted_order(vals: list[np.ndarray]) -> tuple[np.ndarray | None, list[np.ndarray]]:
    """Rows sorted by the key tuples ``vals`` (unique tuples) and, per prefix length c, where
    a new run of the first c columns starts.  Returns (order or None if already sorted, starts).

    Fast paths, O(n) for integer ids: the rows as they are, or ordered by the last column
    when its values are unique (globally unique innermost ids), if the tuples are then sorted;
    else a lexicographic sort."""
    n = len(vals[0])

    def runs(order: np.ndarray | None) -> list[np.ndarray] | None:
        cols = [v if order is None else v[order] for v in vals]
        undecided = np.ones(max(n - 1, 0), dtype=bool)  # pairs equal in the columns so far
        starts = []
        for v in cols:
            if v.dtype.kind not in "iub":
                return None
            a, b = v[:-1], v[1:]
            if (undecided & (b < a)).any():
                return None
            undecided &= a == b
            starts.append(np.concatenate([[0], np.flatnonzero(~undecided) + 1]) if n else np.zeros(0, np.int64))
        return starts

    starts = runs(None)
    if starts is not None:
        return None, starts
    last = vals[-1]
    if last.dtype.kind in "iu":
        codes = sorted_codes(last)
        if n and int(codes.max()) + 1 == n:  # unique: the codes are a permutation
            order = np.empty(n, dtype=np.int64)
            order[codes] = np.arange(n)
            del codes
            starts = runs(order)
            if starts is not None:
                return order, starts
    all_codes = [sorted_codes(v) for v in vals]
    order = np.lexsort(all_codes[::-1])
    sc = [c[order] for c in all_codes]
    undecided = np.ones(max(n - 1, 0), dtype=bool)
    starts = []
    for c in sc:
        undecided &= c[:-1] == c[1:]
        starts.append(np.concatenate([[0], np.flatnonzero(~undecided) + 1]) if n else np.zeros(0, np.int64))
    return order, starts


def nesting_of(
    p: Plan,
    frows: Sequence[np.ndarray],
    keyvals: Sequence[Sequence[np.ndarray]],
    nlev: Sequence[int],
    cols: Mapping[str, np.ndarray],
) -> tuple[tuple[int, ...] | None, tuple[np.ndarray, ...]]:
    """(chain, parents) as :func:`hlm.aggregate.stats.nesting_chain` decides it, or (None, ())."""
    F = len(p.layout.factors)
    if F == 0:
        return (), ()
    order = sorted(range(F), key=lambda f: -nlev[f])
    parents = []
    for inner, outer in zip(order, order[1:]):
        si, so = set(p.layout.factors[inner].keys), set(p.layout.factors[outer].keys)
        rows = frows[inner]
        if so <= si:
            probe = [cols[f"g{c}"][rows] for c in p.layout.factors[outer].keys]
        elif si < so:
            if nlev[inner] != nlev[outer]:
                return None, ()
            # a bijection: each outer group's projection onto the inner columns names its inner group
            back = lookup_codes(keyvals[inner], [cols[f"g{c}"][frows[outer]] for c in p.layout.factors[inner].keys])
            parent = np.empty(nlev[inner], dtype=np.int64)
            parent[back] = np.arange(nlev[outer])
            parents.append(parent)
            continue
        else:
            probe = []
            for c in p.layout.factors[outer].keys:
                if c in si:
                    probe.append(cols[f"g{c}"][rows])
                    continue
                mn, mx = cols[f"mn{c}"][rows], cols[f"mx{c}"][rows]
                if not np.array_equal(mn, mx):
                    return None, ()
                probe.append(mn)
        parent = lookup_codes(keyvals[outer], probe)
        if (parent < 0).any():
            return None, ()
        parents.append(parent.astype(np.int64))
    return tuple(order), tuple(parents)
