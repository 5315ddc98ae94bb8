"""Run a plan: the queries in order and the assembly that fits the model's structure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from hlm.aggregate.sql import chain
from hlm.aggregate.sql.assemble import assemble
from hlm.aggregate.sql.chain import assemble_chain, pooled_chain
from hlm.aggregate.sql.dialect import Runner, as_array
from hlm.aggregate.sql.plan import Plan, check_complete_rows
from hlm.aggregate.stats import INTERCEPT, Aggregates
from hlm.lmm.checks_data import check_fixed_count
from hlm.weights import check_counts


def compute(p: Plan, run: Runner, src: str, fetch: Runner | None = None) -> Aggregates:
    """Every query of a plan, run by ``run`` (``fetch`` for the large grouped results)."""
    counted, glob = _count_and_global(p, run, src)
    ntotal = int(np.asarray(counted["n"])[0])
    check_complete_rows(p, glob, ntotal, run, src)
    agg = _compute(p, run, src, fetch or run, glob, ntotal)
    if p.weights is None:
        return agg
    nzero = int(np.nan_to_num(as_array(counted["nzero"]).astype(float))[0])
    return replace(
        agg,
        weights=p.weights,
        log_weights=float(as_array(glob["log_w"])[0]),
        zero_weights=nzero,
        ndropped=agg.ndropped - nzero,
    )


MERGED_COUNT_COLUMNS = 64
"""Up to this many fixed-effect columns the row count travels with the K'K scan (one query,
one round trip); beyond it the count comes first, so that too few rows are refused before a
scan (and a query text) whose size grows as p^2."""


def _count_and_global(p: Plan, run: Runner, src: str) -> tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]:
    """The count of all rows (:meth:`Plan.count_query`) and the global scan (:meth:`Plan.global_query`),
    refusing fewer rows than fixed effects."""
    if len(p.xnames) > MERGED_COUNT_COLUMNS:
        counted = run(p.count_query(src))
        check_fixed_count(int(np.asarray(counted["n"])[0]), len(p.xnames))
        return counted, run(p.global_query(src))
    names = ["n", "nzero"] if p.weights is not None else ["n"]
    counts = ", ".join(f"hlm_all.{c} AS hlm_all_{c}" for c in names)
    both = run(
        f"SELECT {counts}, hlm_glob.* FROM ({p.count_query(src)}) hlm_all CROSS JOIN ({p.global_query(src)}) hlm_glob"
    )
    counted = {c: both[f"hlm_all_{c}"] for c in names}
    check_fixed_count(int(np.asarray(counted["n"])[0]), len(p.xnames))
    return counted, both


def _compute(p: Plan, run: Runner, src: str, fetch: Runner, glob: Mapping[str, np.ndarray], ntotal: int) -> Aggregates:
    """The grouped queries and the assembly of :func:`compute`."""
    if p.weights is not None:

        def count(name: str) -> int:
            return int(np.nan_to_num(as_array(glob[name]).astype(float))[0])

        check_counts(p.weights, missing=count("w_missing"), infinite=count("w_infinite"), negative=count("w_negative"))
    nested = p.layout.nested_chain()
    if (
        nested is not None
        and len(nested[0]) >= 2
        and p.pool == (INTERCEPT,)
        and ntotal >= chain.POOL_LEAF_GROUPS
        and p.weights is None
    ):
        agg = pooled_chain(p, glob, fetch(p.pooled_query(src, nested[0])), ntotal, nested[0])
        if agg is not None:
            return agg
    if nested is not None:
        leaf = p.layout.factors[nested[0][0]]
        agg = assemble_chain(p, glob, fetch(p.group_query(src, [tuple(sorted(leaf.keys))])), ntotal)
        if agg is not None:
            return agg
    return assemble(p, glob, fetch(p.group_query(src)), ntotal, lambda sets: fetch(p.group_query(src, sets, ztk=False)))
