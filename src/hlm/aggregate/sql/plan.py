"""The :class:`Plan` of a model over a source and the texts of its queries (prepass, global,
grouping sets, pooled), built from the model layout by :func:`plan`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from formulaic import Formula
from formulaic.errors import FormulaicError

from hlm.aggregate.sql.dialect import Dialect, Kind, Runner, as_array, column_kind, first_value, ordered_levels
from hlm.aggregate.sql.translate import ModelColumn, Translator, model_columns, sql_product
from hlm.data.layout import Layout, as_layout, column_pool
from hlm.data.source import check_columns
from hlm.design import FixedDesign, design_of, fixed_name, pool_name
from hlm.errors import DataError, FormulaError
from hlm.lmm.checks_data import check_factor_levels
from hlm.spec.rformula import RFormula
from hlm.spec.terms import ModelSpec
from hlm.transforms import poly_state_from_moments
from hlm.weights import check_kind


@dataclass
class Plan:
    """Everything needed to write the queries for one model on one source."""

    layout: Layout
    dialect: Dialect
    kinds: dict[str, Kind]
    used: list[str]
    xcols: list[ModelColumn]
    ycol: str
    zcols: list[ModelColumn]
    xnames: tuple[str, ...]
    pool: tuple[str, ...]
    term_columns: tuple[tuple[int, ...], ...]
    x_model_spec: object = None
    offset: str | None = None  # SQL of the model's offset, subtracted from the response

    @property
    def spec(self) -> ModelSpec:
        return self.layout.spec

    @property
    def weights(self) -> str | None:
        """The column of precision weights (aliased hw in the base query)."""
        return self.layout.weights

    # ---- SQL pieces
    def where(self) -> str:
        d = self.dialect
        conds = []
        for col in self.used:
            c = d.ident(col)
            conds.append(f"{c} IS NOT NULL")
            if self.kinds.get(col) == "float":
                conds.append(f"NOT isnan({c})")
        return " AND ".join(conds)

    def base(self, src: str) -> str:
        """The model frame as a subquery: k0..k{p} ([X y]), z0.., g0.. (and the weight hw) over
        the complete rows (less those weighing 0)."""
        d = self.dialect
        sel = [f"{c.sql} AS k{j}" for j, c in enumerate(self.xcols)]
        sel.append(f"{self.ycol} AS k{len(self.xcols)}")
        sel += [f"{c.sql} AS z{a}" for a, c in enumerate(self.zcols)]
        sel += [f"{d.ident(c)} AS g{i}" for i, c in enumerate(self.layout.group_columns)]
        where = self.where()
        if self.weights is not None:
            w = d.ident(self.weights)
            sel.append(f"CAST({w} AS DOUBLE) AS hw")
            where += f" AND ({w} IS NULL OR NOT ({w} = 0))"
        return f"SELECT {', '.join(sel)} FROM {src} WHERE {where}"

    def _sum(self, expr: str) -> str:
        """The SQL sum of ``expr`` over the rows, weighted by the precision weights if any."""
        return f"SUM({expr if self.weights is None else sql_product('hw', expr)})"

    def _summed(self, expr: str) -> bool:
        """Whether a product needs its own SUM (else it is the group's count)."""
        return expr != "1.0" or self.weights is not None

    @property
    def k(self) -> int:
        return len(self.xcols) + 1

    def _kexpr(self, j: int) -> str:
        return "1.0" if j < len(self.xcols) and self.xcols[j].sql == "1.0" else f"k{j}"

    def _zexpr(self, a: int) -> str:
        return "1.0" if self.zcols[a].sql == "1.0" else f"z{a}"

    def global_query(self, src: str) -> str:
        """n, K'K and the infinite or NaN values of the columns among the complete rows."""
        sums = []
        for a in range(self.k):
            for b in range(a, self.k):
                sums.append(f"{self._sum(sql_product(self._kexpr(a), self._kexpr(b)))} AS kk_{a}_{b}")
        inf = "CAST('Infinity' AS DOUBLE)"
        # log or sqrt of a negative number: NaN (NULL in Spark); the rows' own columns are complete
        bad = "CASE WHEN {0} IS NULL OR ABS({0}) = {1} OR isnan({0}) THEN 1 ELSE 0 END"
        sums += [f"SUM({bad.format(f'k{j}', inf)}) AS inf_{j}" for j in range(self.k)]
        sums += [f"SUM({bad.format(f'z{a}', inf)}) AS infz_{a}" for a in range(len(self.zcols))]
        if self.weights is not None:  # lme4's ldW and the bad weights (see hlm.weights)
            sums += [
                "SUM(CASE WHEN hw > 0 THEN LN(hw) ELSE 0.0 END) AS log_w",
                "SUM(CASE WHEN hw IS NULL OR isnan(hw) THEN 1 ELSE 0 END) AS w_missing",
                f"SUM(CASE WHEN ABS(hw) = {inf} THEN 1 ELSE 0 END) AS w_infinite",
                "SUM(CASE WHEN hw < 0 THEN 1 ELSE 0 END) AS w_negative",
            ]
        return f"SELECT COUNT(*) AS n, {', '.join(sums)} FROM ({self.base(src)}) hlm_base"

    def count_query(self, src: str) -> str:
        """All rows (and the complete rows weighing 0, with precision weights)."""
        if self.weights is None:
            return f"SELECT COUNT(*) AS n FROM {src}"
        zero = f"{self.where()} AND {self.dialect.ident(self.weights)} = 0"
        return f"SELECT COUNT(*) AS n, SUM(CASE WHEN {zero} THEN 1 ELSE 0 END) AS nzero FROM {src}"

    def group_query(self, src: str, sets: Sequence[tuple[int, ...]] | None = None, *, ztk: bool = True) -> str:
        """One scan: per group of every grouping set, n, sum z z' (and sum z k', MIN/MAX for nesting);
        with precision weights, sum w z z' and sum w z k'."""
        sets = list(sets if sets is not None else self.layout.factor_sets())
        z = len(self.zcols)
        many = len(sets) > 1
        used = sorted(set().union(*map(set, sets)))
        sel = [" + ".join(f"GROUPING(g{i}) * {2**j}" for j, i in enumerate(used)) + " AS gid"] if many else []
        sel += [f"g{i}" for i in used]
        sel.append("COUNT(*) AS n")
        for a in range(z):
            for b in range(a, z):
                if self._summed(zz := sql_product(self._zexpr(a), self._zexpr(b))):  # else the count
                    sel.append(f"{self._sum(zz)} AS zz_{a}_{b}")
            for c in range(self.k if ztk else 0):
                if self._summed(zk := sql_product(self._zexpr(a), self._kexpr(c))):
                    sel.append(f"{self._sum(zk)} AS zk_{a}_{c}")
        for i in self.layout.minmax_columns() if ztk else []:
            sel += [f"MIN(g{i}) AS mn{i}", f"MAX(g{i}) AS mx{i}"]
        if many:
            groups = "GROUPING SETS (" + ", ".join("(" + ", ".join(f"g{i}" for i in s) + ")" for s in sets) + ")"
        else:
            groups = ", ".join(f"g{i}" for i in sets[0])
        return f"SELECT {', '.join(sel)} FROM ({self.base(src)}) hlm_base GROUP BY {groups}"

    def pooled_query(self, src: str, chain: Sequence[int]) -> str:
        """Two nested GROUP BYs for a chain of random intercepts whose innermost groups are
        pooled by size (:class:`~hlm.aggregate.stats.LeafClasses`): per innermost group its
        count n and sums s = 1'K; then per (parent group, n) the number of groups c, the
        sums of s (``zk_0_j``) and of s_a s_b (``ss_a_b``).  Only the second result, one row
        per parent group and size, leaves the database."""
        leaf, parent = self.layout.factors[chain[0]], self.layout.factors[chain[1]]
        svals = ["CAST(n AS DOUBLE)" if self._kexpr(j) == "1.0" else f"s{j}" for j in range(self.k)]
        inner = [f"g{i}" for i in leaf.keys] + ["COUNT(*) AS n"]
        inner += [f"SUM({self._kexpr(j)}) AS s{j}" for j in range(self.k) if self._kexpr(j) != "1.0"]
        outer = [f"g{i}" for i in parent.keys] + ["n", "COUNT(*) AS c"]
        outer += [f"SUM({svals[j]}) AS zk_0_{j}" for j in range(self.k) if self._kexpr(j) != "1.0"]
        outer += [
            f"SUM({sql_product(svals[a], svals[b])}) AS ss_{a}_{b}" for a in range(self.k) for b in range(a, self.k)
        ]
        leaf_rows = (
            f"SELECT {', '.join(inner)} FROM ({self.base(src)}) hlm_base "
            f"GROUP BY {', '.join(f'g{i}' for i in leaf.keys)}"
        )
        return (
            f"SELECT {', '.join(outer)} FROM ({leaf_rows}) hlm_leaf "
            f"GROUP BY {', '.join(f'g{i}' for i in parent.keys)}, n"
        )

    def prepass_query(self, src: str, levels: Sequence[str], means: Mapping[str, str]) -> str | None:
        """Distinct levels of categorical columns and means of center() arguments, over the complete rows."""
        if not levels and not means:
            return None
        d = self.dialect
        sel = [f"{d.distinct_list(d.ident(c))} AS lv{i}" for i, c in enumerate(levels)]
        sel += [f"AVG({arg}) AS {key}" for arg, key in means.items()]
        return f"SELECT {', '.join(sel)} FROM {src} WHERE {self.where()}"


def _translate(
    spec: ModelSpec,
    dialect: Dialect,
    kinds: Mapping[str, Kind],
    used: list[str],
    levels: Mapping[str, list],
    means: Mapping[str, float],
    fixed: str,
    alias: Mapping[str, str],
    zparts: Sequence[tuple[RFormula, dict[int, tuple]]] | None,
) -> tuple[
    Translator,
    list[ModelColumn],
    Any,
    list[str],
    list[ModelColumn],
    tuple[tuple[int, ...], ...],
    tuple[Any, ...],
]:
    """The fixed and random columns as SQL; ``zparts`` (lme4): each random term read with R's
    semantics and its frozen states, whose designs (R's names) are returned too."""
    tr = Translator(dialect, kinds, levels, means, alias)
    xcols, x_spec = model_columns(fixed, tr, used, "the fixed part")
    named: list[list[tuple[str, ModelColumn]]] = []
    zdesigns = []
    for t, term in enumerate(spec.random):
        what = f"the random term for '{term.name}'"
        if zparts is None:
            cols, _ = model_columns(term.rhs, tr, used, what)
            znames = [pool_name(c.name, spec.syntax) for c in cols]
        else:
            rf, states = zparts[t]
            cols, z_spec = model_columns(rf.formula(states), tr, used, what)
            zdesigns.append(design_of(spec, rf, states, z_spec))
            cols = cols if zdesigns[-1].order is None else [cols[j] for j in zdesigns[-1].order]
            znames = list(zdesigns[-1].names)
        named.append(list(zip(znames, cols)))
    pool, zcols, term_columns = column_pool(named)
    return tr, xcols, x_spec, pool, zcols, term_columns, tuple(zdesigns)


def _check_response_and_groups(
    spec: ModelSpec, schema: Mapping[str, str], kinds: Mapping[str, Kind], run: Runner, src: str, dialect: Dialect
) -> None:
    """Refuse a non-numeric response and a grouping column of a type with no SQL key."""
    if kinds[spec.response] not in ("numeric", "float", "bool"):
        _check_not_empty(run, src, dialect, [spec.response])
        raise DataError(
            f"the response '{spec.response}' is not numeric ({schema[spec.response]}); convert it or "
            "pick a numeric column"
        )
    for col in spec.group_columns:
        if kinds[col] == "other":
            raise DataError(f"the grouping column '{col}' has type {schema[col]}; cast it to a string or integer")


def _prepass(
    skeleton: Plan,
    tr: Translator,
    run: Runner,
    src: str,
    declared: Callable[[Sequence[str]], Mapping[str, Sequence]] | None,
) -> tuple[dict[str, list], dict[str, float]]:
    """The categorical columns' levels over the complete rows and the centred columns' means, in one query."""
    spec, dialect, used = skeleton.spec, skeleton.dialect, skeleton.used
    cat = sorted(tr.needs.levels)
    levels: dict[str, list] = {}
    means: dict[str, float] = {}
    query = skeleton.prepass_query(src, cat, tr.needs.means)
    predictors = sorted(set(cat) | {c for c in tr.needs.columns if c not in spec.group_columns})
    orders = declared(predictors) if declared is not None else {}
    if query is not None:
        res = run(query)
        for i, col in enumerate(cat):
            vals = first_value(res[f"lv{i}"])
            levels[col] = ordered_levels(vals if vals is not None else [], orders.get(col))
        for key in tr.needs.means.values():
            means[key] = float(first_value(res[key]))
        if any(not levels[col] for col in cat):  # no complete row: name an empty column if there is one
            _check_not_empty(run, src, dialect, used)
            raise DataError("every row has a missing value in a model column; nothing is left to fit")
        check_factor_levels({col: len(levels[col]) for col in cat})
    return levels, means


def plan(
    model: ModelSpec | Layout,
    schema: Mapping[str, str],
    dialect: Dialect,
    run: Runner,
    src: str,
    weights: str | None = None,
    declared: Callable[[Sequence[str]], Mapping[str, Sequence]] | None = None,
) -> Plan:
    """Build the query plan of the model (its spec or its :class:`~hlm.data.layout.Layout`),
    running the prepass (levels, means) when the model needs one; ``weights``: a column of
    precision weights (taken from the layout when one is given).

    A categorical column's levels are those present in the complete rows, in the order the
    source declares (``declared(predictor columns)``: e.g. a Parquet file's stored
    dictionaries, a DuckDB ENUM's values), else sorted: the first is the reference level, as
    in the in-memory path."""
    layout = as_layout(model, weights)
    spec, weights = layout.spec, layout.weights
    kinds = {c: column_kind(t) for c, t in schema.items()}
    if weights is not None:
        check_columns([weights], schema.keys())
        check_kind(kinds[weights] in ("numeric", "float"), weights, schema[weights])
    # walk every factor first: unsupported terms and unknown columns are named before any query,
    # and the columns come from the terms themselves (formulaic's required_variables lists
    # function names such as sqrt and misses the arguments of center())
    rf, zrfs = layout.fixed, layout.random
    tr, *_ = _translate_needs(spec, dialect, kinds, rf, zrfs)
    used = list(dict.fromkeys([spec.response, *sorted(tr.needs.columns), *spec.group_columns]))
    check_columns(used, schema.keys())
    _check_response_and_groups(spec, schema, kinds, run, src, dialect)
    skeleton = Plan(layout, dialect, kinds, used, [], "", [], (), (), ())
    levels, means = _prepass(skeleton, tr, run, src, declared)
    alias = dict(tr.alias)
    states = _states(rf, Translator(dialect, kinds, alias=alias), skeleton, run, src) if rf is not None else {}
    zparts = (
        None
        if zrfs is None
        else [(z, _states(z, Translator(dialect, kinds, alias=alias), skeleton, run, src)) for z in zrfs]
    )
    fixed = rf.formula(states) if rf is not None else spec.fixed
    tr, xcols, x_spec, pool, zcols, term_columns, zdesigns = _translate(
        spec, dialect, kinds, used, levels, means, fixed, alias, zparts
    )
    if rf is None:
        xnames = tuple(fixed_name(c.name, spec.syntax) for c in xcols)
        design: FixedDesign | None = design_of(spec, None, {}, x_spec, xnames) if not means else None
    else:
        design = replace(design_of(spec, rf, states, x_spec), random=zdesigns)
        xnames = design.names
        xcols = xcols if design.order is None else [xcols[j] for j in design.order]
    ycol = f"CAST({dialect.ident(spec.response)} AS DOUBLE)"
    offset = " + ".join(f"({tr.numeric(code)})" for code in rf.offsets) if rf is not None and rf.offsets else None
    if offset is not None:
        ycol = f"({ycol} - ({offset}))"
    return Plan(layout, dialect, kinds, used, xcols, ycol, zcols, xnames, tuple(pool), term_columns, design, offset)


def _states(rf: RFormula, tr: Translator, skeleton: Plan, run: Runner, src: str) -> dict[int, tuple]:
    """The fit-time state of the stateful atoms of an lme4 fixed part over the complete rows:
    R's ``scale`` (mean, SD with n - 1) and ``poly`` (from the mean, the number of distinct
    values and the central moments up to 2k, :func:`hlm.transforms.poly_state_from_moments`)."""
    stateful = [(i, a, tr.numeric(a.code)) for i, a in enumerate(rf.atoms) if a.stateful]
    if not stateful:
        return {}
    sel = ["COUNT(*) AS n"]
    for i, atom, x in stateful:
        sel.append(f"AVG({x}) AS c{i}")
        if atom.kind == "poly":
            sel.append(f"COUNT(DISTINCT {x}) AS d{i}")
        elif atom.center:
            sel.append(f"STDDEV_SAMP({x}) AS s{i}")
        else:
            sel.append(f"SQRT(SUM(({x}) * ({x})) / (COUNT(*) - 1)) AS s{i}")
    where = f" WHERE {skeleton.where()}" if skeleton.used else ""
    res = run(f"SELECT {', '.join(sel)} FROM {src}{where}")
    states: dict[int, tuple] = {}
    moments = []
    for i, atom, x in stateful:
        mean = float(first_value(res[f"c{i}"]))
        if atom.kind == "poly":
            moments += [f"SUM(POWER(({x}) - {mean!r}, {float(j)!r})) AS m{i}_{j}" for j in range(2 * atom.degree + 1)]
        elif atom.scale:
            if int(first_value(res["n"])) < 2:
                raise DataError("scale() needs at least two rows")
            states[i] = (mean if atom.center else 0.0, float(first_value(res[f"s{i}"])))
        else:
            states[i] = (mean if atom.center else 0.0, 1.0)
    if moments:
        mres = run(f"SELECT {', '.join(moments)} FROM {src}{where}")
        for i, atom, _ in stateful:
            if atom.kind == "poly":
                m = [float(first_value(mres[f"m{i}_{j}"])) for j in range(2 * atom.degree + 1)]
                states[i] = poly_state_from_moments(
                    float(first_value(res[f"c{i}"])), m, atom.degree, int(first_value(res[f"d{i}"]))
                )
    return states


def _translate_needs(
    spec: ModelSpec, dialect: Dialect, kinds: Mapping[str, Kind], rf: RFormula | None, zrfs: Sequence[RFormula] | None
) -> tuple[Translator]:
    """Walk every factor once to collect the categorical columns and center() arguments."""
    alias = {} if rf is None else dict(rf.alias)
    for z in zrfs or ():
        alias.update(z.alias)
    tr = Translator(dialect, kinds, alias=alias or None)
    fixed = rf.formula() if rf is not None else spec.fixed
    for code in rf.offsets if rf is not None else ():
        tr.numeric(code)
    zrhs = [z.formula() for z in zrfs] if zrfs is not None else [t.rhs for t in spec.random]
    rhss = [(fixed, "the fixed part")] + [(z, f"the random term for '{t.name}'") for z, t in zip(zrhs, spec.random)]
    for rhs, what in rhss:
        try:
            terms = list(Formula(rhs))
        except (FormulaicError, SyntaxError, ValueError) as exc:
            raise FormulaError(f"cannot parse {what} '{rhs}': {str(exc).splitlines()[0]}") from None
        for term in terms:
            for fac in term.factors:
                if fac.expr == "1":
                    continue
                col = tr.categorical_column(fac.expr)
                if col is None:
                    tr.numeric_columns(fac.expr)
                else:
                    if kinds.get(col) == "other":
                        raise tr._unsupported(fac.expr, f"column '{col}' has an unsupported type")
                    tr.needs.levels.add(col)
    return (tr,)


def _check_not_empty(run: Runner, src: str, dialect: Dialect, columns: Sequence[str]) -> None:
    """DataError naming the first of ``columns`` without a single value.

    Run only on error paths: an entirely empty CSV column is typed VARCHAR by DuckDB and
    Spark, which would otherwise read as 'not numeric' or give a categorical without levels."""
    sel = ", ".join(f"COUNT({dialect.ident(c)}) AS c{i}" for i, c in enumerate(columns))
    res = run(f"SELECT {sel} FROM {src}")
    for i, col in enumerate(columns):
        if int(first_value(res[f"c{i}"]) or 0) == 0:
            raise DataError(f"column '{col}' has no values: every row is missing")


def check_complete_rows(p: Plan, glob: Mapping[str, np.ndarray], ntotal: int, run: Runner, src: str) -> None:
    """When no row is complete, name a model column that has no values at all (if one has none)."""
    if ntotal and int(as_array(glob["n"])[0]) == 0:
        _check_not_empty(run, src, p.dialect, p.used)


def sums_are_counts(p: Plan, a: int, c: int) -> bool:
    """Whether sum z_a k_c over a group is its row count (both columns 1, no weights)."""
    return p.weights is None and p._zexpr(a) == "1.0" and p._kexpr(c) == "1.0"
