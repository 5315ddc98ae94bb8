"""Second passes in DuckDB after a fit: every row's fitted value and residual
(:func:`write_predictions`) and every group's conditional mode (:func:`write_ranef`), written to
Parquet or CSV without the rows entering Python."""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hlm.aggregate import sql as q
from hlm.aggregate.duckdb import DuckDBSource, duckdb_module, duckdb_reason
from hlm.aggregate.stats import FactorStats
from hlm.errors import FileError, HLMWarning, OptionError
from hlm.lmm.ranef import factor_columns
from hlm.outputs import output_file

if TYPE_CHECKING:
    from hlm.api import Fit


def _writer_source(what: str, source: Any, sql: str | None, con: Any, progress: bool | None) -> DuckDBSource:
    """The source of a second pass that writes a file: a path or sql=, not a relation."""
    src = DuckDBSource(source, sql=sql, con=con, progress=progress)
    if src.rel is not None:
        raise OptionError(f"{what} needs a path or sql= (a relation has no connection to write from)")
    return src


OUTPUT_FORMATS = {".parquet": "PARQUET", ".pq": "PARQUET", ".csv": "CSV"}


def _copy_to_file(src: DuckDBSource, query: str, out_path: str | os.PathLike, overwrite: bool) -> int:
    """Write the query's rows to ``out_path`` in the format its extension names (Parquet or
    CSV), under a temporary name first; the number of rows written."""
    target, kind = output_file(out_path, OUTPUT_FORMATS, overwrite=overwrite)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    options = "FORMAT PARQUET" if kind == "PARQUET" else "FORMAT CSV, HEADER"
    try:
        res = src.con.execute(f"COPY ({query}) TO {q.DUCKDB.string(str(tmp))} ({options})").fetchall()
        os.replace(tmp, target)
    except (OSError, duckdb_module().IOException) as exc:
        raise FileError(
            f"cannot write '{out_path}': {duckdb_reason(exc) if not isinstance(exc, OSError) else exc}"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return int(res[0][0]) if res and res[0] else 0


def _fixed_part(fit: Fit, plan: q.Plan) -> str:
    """offset + X beta as an SQL expression over the source's columns."""
    beta = fit.fixef
    xb = (
        " + ".join(
            f"({float(beta[name])!r}) * ({col.sql})" for name, col in zip(plan.xnames, plan.xcols) if name in beta.index
        )
        or "0.0"
    )
    return xb if plan.offset is None else f"{xb} + ({plan.offset})"


def _pooled_leaf_modes(fit: Fit, f: int, fac: FactorStats, body: str, y: str) -> str:
    """``body`` (rows with the ``fitted`` values of the other factors) with the pooled innermost
    factor's random intercepts added.  Its groups are only coupled with their ancestors, so
    given the ancestors' modes a group's own equation gives, with t = theta^2,

        b_g = t / (1 + t n_g) * sum over the group's rows of (y - X beta - ancestors' b),

    one GROUP BY over the rows, joined back on the factor's columns."""
    d = q.DUCKDB
    t = float(fit.structure.lambdas(fit.theta)[f][0, 0]) ** 2
    keys = [d.ident(c) for c in fac.columns]
    alias = [f"hlm_lk{i}" for i in range(len(keys))]
    modes = (
        f"SELECT {', '.join(f'{k} AS {a}' for k, a in zip(keys, alias))}, "
        f"{t!r} / (1.0 + {t!r} * COUNT(*)) * SUM({y} - fitted) AS hlm_bleaf "
        f"FROM hlm_rows WHERE fitted IS NOT NULL GROUP BY {', '.join(keys)}"
    )
    on = " AND ".join(f"hlm_rows.{k} = hlm_leaf.{a}" for k, a in zip(keys, alias))
    return (
        f"WITH hlm_rows AS ({body}), hlm_leaf AS ({modes}) "
        f"SELECT hlm_rows.* EXCLUDE (fitted), hlm_rows.fitted + COALESCE(hlm_leaf.hlm_bleaf, 0.0) AS fitted "
        f"FROM hlm_rows LEFT JOIN hlm_leaf ON {on}"
    )


def write_predictions(
    fit: Fit,
    source: Any,
    out_path: str | os.PathLike,
    re: bool = True,
    *,
    con: Any = None,
    sql: str | None = None,
    progress: bool | None = None,
    overwrite: bool = False,
) -> int:
    """Second pass in DuckDB: every row of ``source`` with ``fitted`` (X beta, + Z b with
    ``re=True``) and ``residual`` (y - fitted) appended, written to ``out_path`` (Parquet,
    or CSV for a ``.csv`` name; an existing file only with ``overwrite=True``).

    The conditional modes b travel to DuckDB as one small table per grouping factor (one row
    per group) joined on the grouping columns; levels absent from the fit get b = 0.  The
    modes of a factor pooled in the database (:data:`hlm.aggregate.sql.chain.POOL_LEAF_GROUPS`) are
    computed there (:func:`_pooled_leaf_modes`).  Rows the model cannot use (a missing value
    in a model column) get NULL.  Rows keep the source's order for a single file, unless a
    factor is pooled (then DuckDB's order; every source column is written).  Returns the
    number of rows written.
    """
    output_file(out_path, OUTPUT_FORMATS, overwrite=overwrite)
    src = _writer_source("write_predictions", source, sql, con, progress)
    plan = q.plan(fit.spec, src.schema(), q.DUCKDB, src.run, src.src, declared=src.declared_levels)
    d = q.DUCKDB
    xb = _fixed_part(fit, plan)
    joins, zb = [], []
    pooled = None
    if re:
        modes = fit.conditional_modes.modes
        agg = fit.aggregates
        for f, fac in enumerate(agg.factors):
            cols = fit.structure.factor_cols[f]
            if fac.pooled is not None:
                pooled = (f, fac)
                continue
            fmodes = modes[f]
            assert fmodes is not None  # only pooled factors lack modes
            table = {f"hlm_k{i}": np.asarray(key) for i, key in enumerate(fac.keys)}
            table.update({f"hlm_b{a}": fmodes[:, a] for a in range(len(cols))})
            name = f"hlm_re_{f}"
            src.con.register(name, pd.DataFrame(table))
            on = " AND ".join(f"hlm_src.{d.ident(c)} = r{f}.hlm_k{i}" for i, c in enumerate(fac.columns))
            joins.append(f"LEFT JOIN {name} r{f} ON {on}")
            for a, pool_index in enumerate(cols):
                zb.append(f"COALESCE(r{f}.hlm_b{a}, 0.0) * ({plan.zcols[pool_index].sql})")
    fitted = f"CASE WHEN {plan.where()} THEN {' + '.join([f'({xb})', *zb])} END"
    y = f"CAST({d.ident(fit.spec.response)} AS DOUBLE)"
    body = f"SELECT hlm_src.*, {fitted} AS fitted FROM {src.src} {' '.join(joins)}"
    if pooled is not None:
        body = _pooled_leaf_modes(fit, *pooled, body, y)
    return _copy_to_file(src, f"SELECT *, {y} - fitted AS residual FROM ({body}) hlm_out", out_path, overwrite)


def write_ranef(
    fit: Fit,
    source: Any,
    out_path: str | os.PathLike,
    *,
    con: Any = None,
    sql: str | None = None,
    progress: bool | None = None,
    overwrite: bool = False,
) -> int:
    """``fit.ranef()`` written to ``out_path`` (Parquet, or CSV for a ``.csv`` name; an
    existing file only with ``overwrite=True``) (columns group, level, term,
    estimate, std_error), including the groups of a factor pooled in the database
    (:data:`hlm.aggregate.sql.chain.POOL_LEAF_GROUPS`), whose modes DuckDB computes from the rows
    of ``source`` (the fitted data) in one GROUP BY.

    A pooled group g is a random intercept nested in its parent p.  Given the ancestors, with
    t = theta^2, n_g its complete rows, r_g the sum of y - X beta over them, S_g = 1 + t n_g,
    and c_p, V_p the sum of p's and its ancestors' modes and its conditional variance over
    sigma^2 (the scalar recursion of :mod:`hlm.lmm.ranef`),

        b_g = t (r_g - n_g c_p) / S_g,    Var(b_g) = sigma^2 t (1 + t n_g^2 V_p / S_g) / S_g.

    Rows come in no particular order.  Returns the number of rows written."""
    output_file(out_path, OUTPUT_FORMATS, overwrite=overwrite)
    src = _writer_source("write_ranef", source, sql, con, progress)
    d = q.DUCKDB
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HLMWarning)  # the pooled level is what this adds
        src.con.register("hlm_ranef_kept", fit.ranef())
    parts = ['SELECT "group", level, term, estimate, std_error FROM hlm_ranef_kept']
    agg = fit.aggregates
    modes = fit.conditional_modes
    for f, fac in enumerate(agg.factors):
        if fac.pooled is None:
            continue
        assert agg.chain is not None and modes.pooled_parent is not None
        plan = q.plan(fit.spec, src.schema(), d, src.run, src.src, declared=src.declared_levels)
        parent = agg.factors[agg.chain[1]]
        table = {f"hlm_pk{i}": np.asarray(key) for i, key in enumerate(parent.keys)}
        table["hlm_c"], table["hlm_v"] = modes.pooled_parent
        src.con.register("hlm_ranef_parent", pd.DataFrame(table))
        t = float(fit.structure.lambdas(fit.theta)[f][0, 0]) ** 2
        keys = [d.ident(c) for c in fac.columns]
        y = f"CAST({d.ident(fit.spec.response)} AS DOUBLE)"
        groups = (
            f"SELECT {', '.join(keys)}, COUNT(*) AS n, SUM({y} - ({_fixed_part(fit, plan)})) AS r "
            f"FROM {src.src} WHERE {plan.where()} GROUP BY {', '.join(keys)}"
        )
        on = " AND ".join(f"g.{d.ident(c)} = p.hlm_pk{i}" for i, c in enumerate(parent.columns))
        label = "concat_ws(':', " + ", ".join(f"CAST(g.{k} AS VARCHAR)" for k in keys) + ")"
        S = f"(1.0 + {t!r} * g.n)"
        parts.append(
            f'SELECT {d.string(fac.name)} AS "group", {label} AS level, {d.string(factor_columns(fit, f)[0])} AS term, '
            f"{t!r} * (g.r - g.n * p.hlm_c) / {S} AS estimate, "
            f"{float(fit.sigma)!r} * sqrt({t!r} * (1.0 + {t!r} * g.n * g.n * p.hlm_v / {S}) / {S}) AS std_error "
            f"FROM ({groups}) g JOIN hlm_ranef_parent p ON {on}"
        )
    return _copy_to_file(src, " UNION ALL ".join(parts), out_path, overwrite)
