"""Panel statistics computed where the data lives (DuckDB for files and relations, Spark).

The panel estimators need only N, the rows T_i and sums S_i of [X y] per panel and the global
Z'Z (:class:`hlm.panel.stats.PanelStats`).  These are the aggregates of the same model with
a random intercept per panel: T = the group counts, S = the intercept row of Z_g'K_g and
Z'Z = K'K, so the mixed models' aggregation backends compute them in one GROUP BY.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hlm.aggregate import aggregate_any
from hlm.aggregate.stats import Aggregates
from hlm.errors import OptionError
from hlm.panel.design import PanelDesign, parse_model
from hlm.panel.stats import PanelStats
from hlm.spec.terms import ModelSpec, RandomTerm


def engine_stats(
    model: str, data: Any = None, *, panel: str, sql: str | None = None, con: Any = None
) -> tuple[PanelStats, Aggregates]:
    """``(PanelStats, Aggregates)`` of ``model`` by panel, from any aggregation backend."""
    response, rhs, syntax = parse_model(model)
    spec = ModelSpec(
        model, response, rhs, (RandomTerm((), True, (panel,), panel),), "stata" if syntax == "stata" else "lme4"
    )
    agg, _ = aggregate_any(spec, data, sql=sql, con=con)
    if not agg.xnames or agg.xnames[0] not in ("(Intercept)", "_cons"):
        raise OptionError("panel models need the constant as the first column; drop '0 +' / '- 1'")
    fac = agg.factors[0]
    assert fac.counts is not None and fac.ztk is not None  # a lone grouping factor keeps its per-group arrays
    stats = PanelStats(
        N=agg.nobs, T=fac.counts.astype(float), S=np.ascontiguousarray(fac.ztk[:, 0, :]), ZZ=agg.ktk.copy()
    )
    return stats, agg


def engine_design(model: str, data: Any, *, panel: str) -> tuple[PanelDesign, PanelStats]:
    """A row-free design (names, panel labels, dropped rows) and the statistics, for the
    estimators with conventional standard errors."""
    stats, agg = engine_stats(model, data, panel=panel)
    design = PanelDesign(
        model=model,
        response=agg.response,
        names=("_cons",) + tuple(agg.xnames[1:]),
        y=None,
        X=None,
        codes=None,
        panels=agg.factors[0].keys[0],
        panel_var=panel,
        cluster_codes=None,
        cluster_var=None,
        n_clusters=0,
        n_dropped=agg.ndropped,
    )
    return design, stats
