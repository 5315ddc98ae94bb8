"""Assembly for a chain of nested random intercepts, exact or pooled (the innermost groups
never leave the database).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import cast

import numpy as np

from hlm.aggregate.sql.assemble import assemble, sorted_codes, sorted_order
from hlm.aggregate.sql.dialect import as_array
from hlm.aggregate.sql.plan import Plan, sums_are_counts
from hlm.aggregate.stats import Aggregates, FactorStats, LeafClasses
from hlm.data.codes import first_rows

POOL_LEAF_GROUPS = 2_000_000
"""A chain of random intercepts with at least this many innermost groups is aggregated
pooled (:meth:`Plan.pooled_query`): the innermost groups never leave the database."""


def assemble_chain(
    p: Plan, glob: Mapping[str, np.ndarray], groups: Mapping[str, np.ndarray], ntotal: int
) -> Aggregates | None:
    """Aggregates of a slash-nested chain (:meth:`~hlm.data.layout.Layout.nested_chain`) from the innermost
    factor's groups alone; None when the factors' group counts tie (then the chain order is
    decided as :func:`nesting_of` does, from every factor's groups)."""
    nested = p.layout.nested_chain()
    assert nested is not None, "assemble_chain needs a slash-nested chain"
    chain, form = nested
    agg = assemble(p, glob, {}, ntotal, _empty=True)  # the global part and its checks
    if isinstance(groups, dict):  # take the arrays over, so each can be freed once reordered
        cols = {name: as_array(groups.pop(name)) for name in list(groups)}
    else:
        cols = {name: as_array(v) for name, v in groups.items()}
    done = (_assemble_suffix if form == "suffix" else _assemble_prefix)(p, agg, chain, cols)
    return None if done is None else done[0]


def _every_factor(factors: list[FactorStats | None]) -> tuple[FactorStats, ...]:
    """The chain's factors in plan order; a slot is None only where :func:`pooled_chain`
    starts the chain above the leaf and fills the leaf's slot itself."""
    return cast("tuple[FactorStats, ...]", tuple(factors))


def _chained(
    agg: Aggregates, p: Plan, factors: list[FactorStats | None], chain: Sequence[int], parents: list[np.ndarray]
) -> Aggregates:
    """``agg`` with the chain's factors, parent maps and the plan's term layout (no cross blocks)."""
    return replace(
        agg,
        factors=_every_factor(factors),
        term_factor=p.layout.term_factor,
        term_columns=p.term_columns,
        chain=tuple(chain),
        parents=tuple(parents),
        cross=(),
    )


def _assemble_prefix(
    p: Plan, agg: Aggregates, chain: Sequence[int], cols: dict
) -> tuple[Aggregates, np.ndarray] | None:
    """:func:`assemble_chain` for labels written outermost first (``school:teacher:student``):
    the rows sorted by their key tuples, every factor's groups are runs of a prefix of the
    keys.  Also returns the innermost code of every input row."""
    leaf = p.layout.factors[chain[0]]
    order, starts = sorted_order([cols[f"g{i}"] for i in leaf.keys])
    nlev = [len(starts[len(p.layout.factors[f].keys) - 1]) for f in chain]
    if any(a <= b for a, b in zip(nlev, nlev[1:])):
        return None
    n = len(cols["n"])
    row_code = np.arange(n)
    if order is not None:  # sort the grouped rows once, in place of the originals
        for name in list(cols):
            cols[name] = cols[name][order]
        row_code[order] = np.arange(n)
        del order
    counts = cols["n"].astype(np.int64)
    ztz, ztk = _leaf_blocks(p, cols, counts)
    factors: list[FactorStats | None] = [None] * len(p.layout.factors)
    parents = []
    prev_starts = None
    for pos, f in enumerate(chain):
        fac = p.layout.factors[f]
        st = starts[len(fac.keys) - 1]
        keys = tuple(cols[f"g{i}"][st] for i in fac.keys)
        if pos == 0:
            factors[f] = FactorStats(fac.name, fac.columns, keys, counts, ztz, ztk)
        else:
            factors[f] = FactorStats(
                fac.name,
                fac.columns,
                keys,
                np.add.reduceat(counts, st).astype(np.int64) if len(st) else np.zeros(0, np.int64),
            )
            code = np.zeros(len(counts), dtype=np.int64)  # this factor's group of every leaf row
            code[st[1:]] = 1
            np.cumsum(code, out=code)
            parents.append(code if prev_starts is None else code[prev_starts])
            prev_starts = st
    return _chained(agg, p, factors, chain, parents), row_code


def _leaf_blocks(p: Plan, cols: dict, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Z_g'Z_g and Z_g'K_g of the innermost groups from their grouped rows (whose sums it drops)."""
    k, z = p.k, len(p.zcols)
    ztz = np.empty((len(counts), z, z))
    ztk = np.empty((len(counts), z, k))
    for a in range(z):
        for b in range(a, z):
            ztz[:, a, b] = ztz[:, b, a] = cols.get(f"zz_{a}_{b}", counts)
        for c in range(k):
            ztk[:, a, c] = counts if sums_are_counts(p, a, c) else cols[f"zk_{a}_{c}"]
    for name in [n for n in cols if n.startswith(("zz_", "zk_"))]:
        del cols[name]
    return ztz, ztk


def _assemble_suffix(
    p: Plan, agg: Aggregates, chain: Sequence[int], cols: dict
) -> tuple[Aggregates, np.ndarray] | None:
    """:func:`assemble_chain` for labels written innermost first (``student:teacher:school``);
    also returns the innermost code of every input row.

    Codes in label order are built from the outermost column inwards: a column whose value
    determines the outer group (globally unique ids, checked in O(n)) is its own code, its
    dense rank; otherwise the code ranks the pair (value, outer code).  The innermost groups
    are the rows, sorted once by their code."""
    leaf = p.layout.factors[chain[0]]
    lk = leaf.keys
    want = {p.layout.factors[f].keys: f for f in chain}
    code, m = None, 0
    codes: dict[int, tuple[np.ndarray, int]] = {}
    for j in range(len(lk) - 1, -1, -1):
        rank = sorted_codes(cols[f"g{lk[j]}"])
        r = int(rank.max(initial=-1)) + 1
        if code is None:
            code, m = rank, r
        else:
            first = first_rows(rank, r)
            if np.array_equal(code[first][rank], code):  # the value determines the outer group
                code, m = rank, r
            else:
                key = rank * np.int64(m) + code
                code = sorted_codes(key)
                m = int(code.max(initial=-1)) + 1
            del first
        del rank
        if code.dtype != np.int32 and len(code) < 2**31 - 1:
            code = code.astype(np.int32)
        if lk[j:] in want:
            codes[want[lk[j:]]] = (code, m)
    n = len(cols["n"])
    if codes[chain[0]][1] != n or any(codes[a][1] <= codes[b][1] for a, b in zip(chain, chain[1:])):
        return None  # tied group counts: the general path decides the order
    row_code = codes.pop(chain[0])[0]
    order = np.empty(n, dtype=np.int64)
    order[row_code] = np.arange(n)
    del code
    for name in list(cols):
        cols[name] = cols[name][order]
    for f in chain[1:]:
        c, mf = codes[f]
        codes[f] = (c[order], mf)
    del order
    counts = cols.pop("n").astype(np.int64)
    ztz, ztk = _leaf_blocks(p, cols, counts)
    factors: list[FactorStats | None] = [None] * len(p.layout.factors)
    factors[chain[0]] = FactorStats(leaf.name, leaf.columns, tuple(cols[f"g{i}"] for i in lk), counts, ztz, ztk)
    parents = []
    prev_first = None
    for f in chain[1:]:
        fac = p.layout.factors[f]
        c, mf = codes.pop(f)
        first = first_rows(c, mf)
        fcounts = np.bincount(c, weights=counts, minlength=mf).round().astype(np.int64)
        factors[f] = FactorStats(fac.name, fac.columns, tuple(cols[f"g{i}"][first] for i in fac.keys), fcounts)
        parents.append(c if prev_first is None else c[prev_first])
        prev_first = first
    return _chained(agg, p, factors, chain, parents), row_code


def pooled_chain(
    p: Plan, glob: Mapping[str, np.ndarray], cells: Mapping[str, np.ndarray], ntotal: int, chain: Sequence[int]
) -> Aggregates | None:
    """Aggregates of a chain of random intercepts from :meth:`Plan.pooled_query`'s rows (one per
    parent group and leaf size): the parent chain as :func:`assemble_chain` builds it from
    the parent groups' totals, and the leaf as :class:`LeafClasses`.  None when pooling does
    not apply after all: fewer than :data:`POOL_LEAF_GROUPS` leaf groups, no fewer parent
    groups than leaf groups, more (parent, size) cells than half the leaf groups, or tied
    group counts up the chain -- the caller then fetches the leaf groups."""
    k = p.k
    cols = {name: as_array(v) for name, v in cells.items()}
    n_cell = cols["n"].astype(np.int64)
    c_cell = cols["c"].astype(np.int64)
    nleaf = int(c_cell.sum())
    parent = p.layout.factors[chain[1]]
    order, starts = sorted_order([cols[f"g{i}"] for i in parent.keys])
    if order is not None:
        cols = {name: v[order] for name, v in cols.items()}
        n_cell, c_cell = n_cell[order], c_cell[order]
    st = starts[-1]
    sizes, cls = np.unique(n_cell, return_inverse=True)
    if nleaf < POOL_LEAF_GROUPS or len(st) >= nleaf or 2 * len(st) * len(sizes) > nleaf:
        return None
    S = np.empty((len(n_cell), k))  # sums over the cell's leaf groups of their S_g
    for j in range(k):
        S[:, j] = c_cell * n_cell if p._kexpr(j) == "1.0" else cols[f"zk_0_{j}"]
    rows = {f"g{i}": cols[f"g{i}"][st] for i in parent.keys}
    rows["n"] = np.add.reduceat(c_cell * n_cell, st)
    rows.update({f"zk_0_{j}": np.add.reduceat(S[:, j], st) for j in range(k) if p._kexpr(j) != "1.0"})
    nested = p.layout.nested_chain()
    assert nested is not None  # the caller's chain
    form = nested[1]
    done = (_assemble_suffix if form == "suffix" else _assemble_prefix)(
        p, assemble(p, glob, {}, ntotal, _empty=True), chain[1:], rows
    )
    if done is None:
        return None
    agg, row_code = done
    first = np.zeros(len(n_cell), dtype=np.int64)
    first[st] = 1
    cell_parent = np.asarray(row_code, dtype=np.int64)[np.cumsum(first) - 1]  # label-order parent of each cell
    m, G_parent = len(sizes), len(st)
    children = np.zeros((G_parent, m))
    children[cell_parent, cls] = c_cell
    sums = np.zeros((G_parent, m, k))
    sums[cell_parent, cls] = S
    sss = np.zeros((m, k, k))
    for a in range(k):
        for b in range(a, k):
            sss[:, a, b] = sss[:, b, a] = np.bincount(cls, weights=cols[f"ss_{a}_{b}"], minlength=m)
    pooled = LeafClasses(sizes.astype(float), np.bincount(cls, weights=c_cell, minlength=m), sss, children, sums)
    leaf = p.layout.factors[chain[0]]
    factors = list(agg.factors)
    factors[chain[0]] = FactorStats(leaf.name, leaf.columns, (), None, pooled=pooled)
    return replace(
        agg, factors=tuple(factors), chain=tuple(chain), parents=(np.zeros(0, dtype=np.int64),) + agg.parents
    )
