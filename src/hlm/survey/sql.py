"""The weighted sufficient statistics of a pseudo-ML fit computed by DuckDB or Spark: the rows
never leave the engine.

With a_i the row's conditional level-1 weight (w_i|j: the column itself with
``cond_weights=True``, else w_i / w_j, the row's level-1 over its level-2 weight), one
``GROUP BY`` over the grouping columns and the upper levels' weight columns gives per cell
n, sum a, sum a^2, sum a z z', sum a z k' and sum a k k' (k = [X y]).  A level's weight is
constant within its groups, so a cell is a leaf group -- unless a weight varies within a
group, which then shows as a leaf group in two cells (refused, naming it).  Stata's
``pwscale`` size/effective multiplies a_i by a per-leaf factor f_g, and since
w_i = a_i f_g W_g (W_g the leaf group's unconditional weight),

    M_zz = f_g sum a z z',  M_zk = f_g sum a z k',  Q_k += f_g W_g sum a k k',  N_k += f_g W_g sum a,

the statistics :class:`~hlm.survey.pseudo.WeightedRows` holds (``pwscale="gk"`` needs the
unweighted sums as well and is refused here).  Before that one scan: a count of the rows with
missing, infinite, negative or zero weights over all rows (zero weights drop the row).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from hlm.aggregate import sql as q
from hlm.aggregate.duckdb import DuckDBSource
from hlm.aggregate.spark import SparkSource
from hlm.aggregate.sql.dialect import Dialect, as_array
from hlm.aggregate.stats import Aggregates, FactorStats, nesting_chain
from hlm.data.source import categories_as_text, is_relation, to_pandas
from hlm.errors import DataError, NestingError, OptionError
from hlm.modelframe import used_columns
from hlm.spec import ModelSpec
from hlm.survey.fit import finish_pseudo
from hlm.survey.pseudo import WeightedRows
from hlm.survey.result import PseudoFit
from hlm.survey.weights import LevelWeights, PwScale, check_counts, level_weights

A = "hlm_a"  # the conditional level-1 weight, added to the source


def check_query(d: Dialect, src: str, columns: list[str]) -> str:
    """Per weight column its missing and its infinite-or-negative values; the rows with a zero weight."""
    parts = []
    for i, c in enumerate(columns):
        w = f"CAST({d.ident(c)} AS DOUBLE)"
        parts.append(f"SUM(CASE WHEN {w} IS NULL OR isnan({w}) THEN 1 ELSE 0 END) AS miss{i}")
        parts.append(f"SUM(CASE WHEN ABS({w}) = CAST('Infinity' AS DOUBLE) OR {w} < 0 THEN 1 ELSE 0 END) AS bad{i}")
    zero = " OR ".join(f"CAST({d.ident(c)} AS DOUBLE) = 0" for c in columns)
    parts += [f"SUM(CASE WHEN {zero} THEN 1 ELSE 0 END) AS nzero", "COUNT(*) AS ntotal"]
    return f"SELECT {', '.join(parts)} FROM {src}"


def weighted_source(d: Dialect, src: str, pweights: list[str], cond_weights: bool) -> str:
    """The source with the column a (see the module docstring), rows with a zero weight dropped."""
    w = [f"CAST({d.ident(c)} AS DOUBLE)" for c in pweights]
    a = w[0] if cond_weights else f"{w[0]} / {w[1]}"
    return f"(SELECT *, {a} AS {A} FROM {src} WHERE {' AND '.join(f'{x} > 0' for x in w)}) AS hlm_w"


def cell_query(p: q.Plan, src: str, upper: list[str]) -> str:
    """The one GROUP BY over the grouping columns and the ``upper`` weight columns."""
    d, k, z = p.dialect, p.k, len(p.zcols)
    sel = [f"{c.sql} AS k{j}" for j, c in enumerate(p.xcols)] + [f"{p.ycol} AS k{k - 1}"]
    sel += [f"{c.sql} AS z{a}" for a, c in enumerate(p.zcols)]
    sel += [f"{d.ident(c)} AS g{i}" for i, c in enumerate(p.layout.group_columns)]
    sel += [f"{A} AS hw"] + [f"CAST({d.ident(c)} AS DOUBLE) AS pw{i}" for i, c in enumerate(upper)]
    keys = [f"g{i}" for i in range(len(p.layout.group_columns))] + [f"pw{i}" for i in range(len(upper))]
    sums = ["COUNT(*) AS n", "SUM(hw) AS sa", "SUM(hw * hw) AS sa2"]
    sums += [f"SUM(hw * z{a} * z{b}) AS zz_{a}_{b}" for a in range(z) for b in range(a, z)]
    sums += [f"SUM(hw * z{a} * k{c}) AS zk_{a}_{c}" for a in range(z) for c in range(k)]
    sums += [f"SUM(hw * k{c} * k{e}) AS kk_{c}_{e}" for c in range(k) for e in range(c, k)]
    base = f"SELECT {', '.join(sel)} FROM {src} WHERE {p.where()}"
    return f"SELECT {', '.join(keys + sums)} FROM ({base}) hlm_base GROUP BY {', '.join(keys)}"


def _symmetric(res: Any, prefix: str, n: int, cells: int) -> np.ndarray:
    out = np.empty((cells, n, n))
    for a in range(n):
        for b in range(a, n):
            out[:, a, b] = out[:, b, a] = as_array(res[f"{prefix}_{a}_{b}"]).astype(float)
    return out


def _factor(keys: list[np.ndarray]) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Codes of the cells' groups (levels sorted) and each key column's value per level."""
    inverse = [np.unique(k, return_inverse=True) for k in keys]
    combined = np.ravel_multi_index([inv for _, inv in inverse], [len(u) for u, _ in inverse])
    levels, codes = np.unique(combined, return_inverse=True)
    parts = np.unravel_index(levels, [len(u) for u, _ in inverse])
    return codes, tuple(u[i] for (u, _), i in zip(inverse, parts))


def _sum_cells(codes: np.ndarray, arr: np.ndarray, G: int) -> np.ndarray:
    out = np.zeros((G,) + arr.shape[1:])
    np.add.at(out, codes, arr)
    return out


def _scale(pwscale: PwScale, n: np.ndarray, sa: np.ndarray, sa2: np.ndarray) -> tuple[np.ndarray, str]:
    """Stata's pwscale as a factor on each leaf group's a (see :func:`hlm.survey.weights.level_weights`)."""
    if pwscale is None:
        return np.ones_like(sa), "none"
    if pwscale == "size":
        return n / sa, "stata_pwscale_size: w_i|j n_j / sum_i w_i|j"
    if pwscale == "effective":
        return sa / sa2, "stata_pwscale_effective: w_i|j sum_i w_i|j / sum_i w_i|j^2"
    if pwscale == "gk":
        raise OptionError("pwscale='gk' is computed in memory only (backend='memory')")
    raise OptionError(f"pwscale must be 'size', 'effective', 'gk' or None, not {pwscale!r}")


@dataclass(frozen=True)
class Cells:
    """The cell query's result read along the nesting chain."""

    res: Any
    factor_codes: list[tuple[np.ndarray, tuple[np.ndarray, ...]]]  # per plan factor: cell codes, level keys
    nlev: list[int]
    chain: tuple[int, ...]
    parents: tuple[np.ndarray, ...]

    def column(self, name: str) -> np.ndarray:
        return as_array(self.res[name]).astype(float)

    @property
    def ncells(self) -> int:
        return len(self.column("n"))

    def codes(self, level: int) -> np.ndarray:
        return self.factor_codes[self.chain[level]][0]

    def ngroups(self, level: int) -> int:
        return self.nlev[self.chain[level]]

    def leaf_sum(self, arr: np.ndarray) -> np.ndarray:
        return _sum_cells(self.codes(0), arr, self.ngroups(0))


def _cells(p: q.Plan, res: Any, nweights: int) -> Cells:
    gk = [as_array(res[f"g{i}"]) for i in range(len(p.layout.group_columns))]
    factor_codes = [_factor([gk[i] for i in fac.keys]) for fac in p.layout.factors]
    nlev = [len(keys[0]) for _, keys in factor_codes]
    nested = nesting_chain([c for c, _ in factor_codes], nlev)
    if nested is None or len(nested[0]) != len(p.layout.factors):
        raise NestingError(
            "sampling weights need nested grouping factors (each level inside the next); these are crossed"
        )
    if nweights != len(nested[0]) + 1:
        raise OptionError(f"pweights gives {nweights} columns but the model has {len(nested[0]) + 1} levels")
    return Cells(res, factor_codes, nlev, nested[0], nested[1])


def _level_weights(c: Cells, pweights: list[str], cond_weights: bool) -> LevelWeights:
    """The upper levels' weights per group (the rows' entry is a placeholder: a is in the sums)."""
    chain = range(len(c.chain))
    keys = [c.factor_codes[c.chain[l]][1] for l in chain]
    labels = [np.array(["/".join(str(k[g]) for k in keys[l]) for g in range(c.ngroups(l))]) for l in chain]
    return level_weights(
        [np.ones(c.ncells), *[c.column(f"pw{i}") for i in range(len(pweights) - 1)]],
        pweights,
        [c.codes(l) for l in chain],
        list(c.parents),
        [c.ngroups(l) for l in chain],
        labels,
        conditional=cond_weights,
        pwscale=None,
    )


def _weighted_rows(c: Cells, p: q.Plan, lw: LevelWeights, f: np.ndarray) -> WeightedRows:
    """The statistics of the module docstring from the cells, a scaled by f per leaf group."""
    z, k, n = len(p.zcols), p.k, c.ncells
    zk = np.stack([np.stack([c.column(f"zk_{a}_{j}") for j in range(k)], 1) for a in range(z)], 1)
    top = [np.arange(c.ngroups(-1))]
    for level in range(len(c.chain) - 2, -1, -1):
        top.insert(0, top[0][c.parents[level]])
    fw = f * lw.uncond[1]  # leaf group: a's scale times its unconditional weight
    ntop = c.ngroups(-1)
    return WeightedRows(
        f[:, None, None] * c.leaf_sum(_symmetric(c.res, "zz", z, n)),
        f[:, None, None] * c.leaf_sum(zk),
        _sum_cells(top[0], fw[:, None, None] * c.leaf_sum(_symmetric(c.res, "kk", k, n)), ntop),
        np.bincount(top[0], weights=fw * c.leaf_sum(c.column("sa")), minlength=ntop),
        c.parents,
        lw.cond[1:],
        lw.uncond[1:],
        tuple(top),
        c.chain,
    )


def weighted_stats(
    spec: ModelSpec, src: Any, d: Dialect, pweights: list[str], cond_weights: bool, pwscale: PwScale
) -> tuple[WeightedRows, Aggregates, str, tuple[str, ...]]:
    """(the weighted statistics, the Aggregates that name the model's pieces, the scaling, notes)
    from a DuckDB or Spark source (``run``, ``src``, ``schema()``; DuckDB's ``fetch`` and
    ``declared_levels`` when it has them)."""
    if len(pweights) < 2:
        raise OptionError("pweights needs one column per level: the observations' first, then each grouping level's")
    fetch = getattr(src, "fetch", src.run)
    checks = src.run(check_query(d, src.src, pweights))
    for i, col in enumerate(pweights):
        check_counts(col, int(as_array(checks[f"miss{i}"])[0] or 0), int(as_array(checks[f"bad{i}"])[0] or 0))
    nzero, ntotal = int(as_array(checks["nzero"])[0] or 0), int(as_array(checks["ntotal"])[0])
    wsrc = weighted_source(d, src.src, pweights, cond_weights)
    declared = getattr(src, "declared_levels", None)
    p = q.plan(spec, {**src.schema(), A: "DOUBLE"}, d, src.run, wsrc, declared=declared)
    c = _cells(p, fetch(cell_query(p, wsrc, pweights[1:])), len(pweights))
    lw = _level_weights(c, pweights, cond_weights)
    if pwscale is not None and len(c.chain) != 1:
        raise OptionError("pwscale applies to two-level models only (as Stata's pwscale())")
    n = c.leaf_sum(c.column("n"))
    f, scaling = _scale(pwscale, n, c.leaf_sum(c.column("sa")), c.leaf_sum(c.column("sa2")))
    wr = _weighted_rows(c, p, lw, f)
    if np.linalg.matrix_rank(wr.Qk.sum(axis=0)[: p.k - 1, : p.k - 1]) < p.k - 1:
        raise DataError(
            "the fixed-effects design is rank deficient; drop the collinear columns (not done with pweights)"
        )
    factors = tuple(
        FactorStats(fac.name, fac.columns, keys, _sum_cells(codes, c.column("n"), nl).astype(np.int64))
        for fac, (codes, keys), nl in zip(p.layout.factors, c.factor_codes, c.nlev)
    )
    nobs = int(n.sum())
    agg = Aggregates(
        nobs, ntotal - nzero - nobs, spec.response, p.xnames, p.pool, wr.Qk.sum(axis=0), factors,
        p.layout.term_factor, p.term_columns, c.chain, c.parents,
    )  # fmt: skip
    notes: tuple[str, ...] = (
        (f"{nzero} rows dropped for a zero sampling weight (as WeMix drops them)",) if nzero else ()
    )
    if agg.ndropped:
        notes += (f"{agg.ndropped} rows dropped for missing values",)
    return wr, agg, scaling, notes


def fit_pseudo_sql(
    spec: ModelSpec,
    data: Any,
    pweights: list[str],
    *,
    engine: str = "duckdb",
    cond_weights: bool = False,
    pwscale: PwScale = None,
    sql: str | None = None,
    con: Any = None,
) -> PseudoFit:
    """Pseudo-ML fit from the statistics DuckDB (a file, a relation, a frame or ``sql`` on ``con``)
    or Spark (``engine="spark"``: a Spark DataFrame) computes."""
    if not spec.random:
        raise DataError("the model has no random effects; add a term such as (1 | group)")
    pweights = [pweights] if isinstance(pweights, str) else list(pweights)
    if engine == "spark":
        spark = SparkSource(data)
        wr, agg, scaling, notes = weighted_stats(spec, spark, q.SPARK, pweights, cond_weights, pwscale)
        return finish_pseudo(spec, wr, agg, pweights, cond_weights, scaling, notes)
    if sql is None and not is_relation(data) and not isinstance(data, (str, os.PathLike)):  # a frame
        import duckdb

        con = con if con is not None else duckdb.connect()
        table = to_pandas(data, list(dict.fromkeys(used_columns(spec) + pweights)))
        data = con.from_df(categories_as_text(table, spec.group_columns))
    src = DuckDBSource(data, sql=sql, con=con)
    wr, agg, scaling, notes = weighted_stats(spec, src, q.DUCKDB, pweights, cond_weights, pwscale)
    return finish_pseudo(spec, wr, agg, pweights, cond_weights, scaling, notes)
