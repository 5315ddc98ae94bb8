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
    counted = run(p.count_query(src))
    ntotal = int(np.asarray(counted["n"])[0])
    check_fixed_count(ntotal, len(p.xnames))  # before the K'K scan, whose cost grows as p^2
    glob = run(p.global_query(src))
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
