"""A model as SQL: the aggregation queries shared by the DuckDB and Spark backends.

The model frame of :mod:`hlm.modelframe` is rebuilt as SQL expressions over the source
rows: every fixed-effect column ``x_j``, the response ``y``, every random-effect column
``z_a`` of the pool, and the grouping columns.  The sufficient statistics of
:mod:`hlm.aggregate.stats` are then three kinds of aggregate over the complete rows:

* prepass (only when needed): the sorted distinct levels of categorical columns (treatment
  coding, first sorted level as reference, as formulaic) and the means that ``center()``
  subtracts;
* global: ``n`` and ``K'K = sum k k'`` with ``k = [x, y]``;
* groups: one ``GROUP BY GROUPING SETS`` scan with, per group of every grouping factor
  (and, for crossed factors, of every pair), ``n_g``, ``sum z z'``, ``sum z k'`` and the
  MIN/MAX of the other factors' columns (nesting: a group lies in one outer group iff
  MIN = MAX).

With precision weights (a column w, :mod:`hlm.weights`) every sum is ``SUM(w * ...)`` (the
intercept's sums are ``SUM(w)``, not the count), rows with w = 0 are left out, the global
scan adds ``SUM(LN(w))`` and counts the bad weights, and the innermost groups are never
pooled by size (their weight sums rarely repeat).

The query texts are the same for DuckDB and Spark SQL apart from identifier quoting,
string literals and the distinct-collection aggregate (:class:`Dialect`).  Level codes,
labels, parents and the cross blocks are assembled in numpy from the grouped rows (their
number is the number of groups, never of rows).

lme4 formulas arrive as :mod:`hlm.spec.rformula` writes them (safe column names, hlm's
``r_*`` functions, the frozen states of ``poly`` and ``scale`` as literals, which the
prepass computes: means, SDs, distinct counts and central moments); their offset is
subtracted from the response.  Stata syntax arrives as formulaic text.  Supported in the
fixed part and random slopes: numeric and boolean columns, categorical (string) columns and
``C(x)`` (also with ``contr.treatment(base=v)`` or ``spans_intercept=False``: Stata's
``ib#.``/``ibn.``), interactions, ``log``, ``exp``, ``sqrt`` (also as ``np.log`` ...),
``center(...)``, ``I(...)`` with ``+ - * / **`` and numbers, and for lme4 formulas also
``abs``, ``log1p``, ``expm1``, ``log2``, ``log10``, ``poly`` and ``scale``.  Anything else
raises :class:`~hlm.errors.FormulaError` naming the term.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd
from formulaic import Formula, model_matrix
from formulaic.errors import FormulaicError

from hlm.aggregate.stats import Aggregates, CrossBlock, FactorStats, LeafClasses
from hlm.data.codes import dense_codes, factor_key, first_rows
from hlm.data.source import check_columns
from hlm.design import design_of, fixed_name, pool_name, random_rformulas, rformula
from hlm.errors import ColumnError, DataError, FormulaError
from hlm.lmm.checks_data import check_factor_levels, check_fixed_count
from hlm.spec.rformula import RFormula
from hlm.spec.terms import ModelSpec
from hlm.transforms import CONTEXT, poly_state_from_moments
from hlm.weights import check_counts, check_kind

Kind = Literal["numeric", "float", "bool", "string", "other"]
Runner = Callable[[str], Mapping[str, np.ndarray]]
"""Runs one query (with ``{src}`` already substituted) and returns its columns."""

POOL_LEAF_GROUPS = 2_000_000
"""A chain of random intercepts with at least this many innermost groups is aggregated
pooled (:meth:`Plan.pooled_query`): the innermost groups never leave the database."""

_FUNCS = {"log": "LN", "exp": "EXP", "sqrt": "SQRT"}
_MODULES = {"np", "numpy"}
_R_FUNCS = {
    "r_num": "{}",
    "r_log": "LN({})",
    "r_exp": "EXP({})",
    "r_sqrt": "SQRT({})",
    "r_abs": "ABS({})",
    "r_I": "{}",
    "r_log1p": "LN(1.0 + ({}))",
    "r_expm1": "(EXP({}) - 1.0)",
    "r_log2": "(LN({}) / LN(2.0))",
    "r_log10": "(LN({}) / LN(10.0))",
}
"""The functions of lme4 formulas (:mod:`hlm.spec.rformula`) as SQL."""


# --------------------------------------------------------------------------- dialects


@dataclass(frozen=True)
class Dialect:
    """The few places where DuckDB and Spark SQL differ."""

    name: Literal["duckdb", "spark"]

    def ident(self, name: str) -> str:
        if self.name == "spark":
            return "`" + name.replace("`", "``") + "`"
        return '"' + name.replace('"', '""') + '"'

    def string(self, text: str) -> str:
        if self.name == "spark":
            return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return "'" + text.replace("'", "''") + "'"

    def distinct_list(self, expr: str) -> str:
        return f"collect_set({expr})" if self.name == "spark" else f"list(DISTINCT {expr})"


DUCKDB = Dialect("duckdb")
SPARK = Dialect("spark")


def column_kind(sql_type: str) -> Kind:
    """DuckDB or Spark type name -> how the model uses the column."""
    t = sql_type.strip().upper()
    if t in ("FLOAT", "DOUBLE", "REAL", "FLOAT4", "FLOAT8"):
        return "float"
    if t.startswith("DECIMAL") or t in (
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "INT",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
        "UHUGEINT",
        "LONG",
        "SHORT",
        "BYTE",
    ):
        return "numeric"
    if t in ("BOOLEAN", "BOOL"):
        return "bool"
    if t in ("VARCHAR", "STRING", "TEXT") or t.startswith("VARCHAR") or t.startswith("CHAR"):
        return "string"
    return "other"


def ordered_levels(present, declared: Sequence | None) -> list:
    """The levels present, in the order the source declares (a categorical's categories);
    sorted where it declares none, and any it does not declare after it, sorted."""
    values = sorted(v.item() if isinstance(v, np.generic) else v for v in present)
    if not declared:
        return values
    rank = {v: i for i, v in enumerate(declared)}
    return sorted(values, key=lambda v: (0, rank[v]) if v in rank else (1, 0))


# --------------------------------------------------------------------------- terms -> SQL


@dataclass
class _Needs:
    """What the expressions need from a prepass over the data."""

    levels: set[str] = field(default_factory=set)  # categorical columns
    columns: set[str] = field(default_factory=set)  # every data column referenced
    means: dict[str, str] = field(default_factory=dict)  # center() argument SQL -> key


@dataclass(frozen=True)
class ModelColumn:
    """One column of the model matrix: its name as formulaic writes it, and its SQL."""

    name: str
    sql: str


def _literal(value, dialect: Dialect) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return dialect.string(str(value))


def _mul(a: str, b: str) -> str:
    if a == "1.0":
        return b
    if b == "1.0":
        return a
    return f"({a}) * ({b})"


class Translator:
    """Formulaic factors (``log(x)``, ``sx``, ``C(g)``, ...) -> SQL over the source columns."""

    def __init__(
        self,
        dialect: Dialect,
        kinds: Mapping[str, Kind],
        levels: Mapping[str, list] | None = None,
        means: Mapping[str, float] | None = None,
        alias: Mapping[str, str] | None = None,
    ):
        self.dialect = dialect
        self.kinds = dict(kinds)
        self.levels = dict(levels or {})
        self.means = dict(means or {})
        self.alias = dict(alias or {})  # safe name of lme4 formulas -> data column
        self.needs = _Needs()

    def column(self, name: str) -> str:
        """The data column a formula name stands for."""
        return self.alias.get(name, name)

    # ---- factors
    def categorical_column(self, expr: str) -> str | None:
        """The data column if the factor is categorical (a string column or ``C(col)``)."""
        node = self._parse(expr)
        if isinstance(node, ast.Name):
            kind = self.kinds.get(self.column(node.id))
            if kind == "string" or (kind == "bool" and node.id in self.alias):  # R: a logical term is a factor
                self.needs.columns.add(self.column(node.id))
                return self.column(node.id)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "C":
            if len(node.args) >= 1 and isinstance(node.args[0], ast.Name) and _coding(node) is not None:
                self.needs.columns.add(self.column(node.args[0].id))
                return self.column(node.args[0].id)
            raise FormulaError(f"the SQL backends support C(column) only; cannot translate the term '{expr}'")
        return None

    def base_level(self, expr: str, levels: list):
        """The reference level a reduced coding of the categorical factor leaves out: the
        first level, or ``contr.treatment(base=...)``'s (Stata's ``ib2.x``)."""
        node = self._parse(expr)
        coding = _coding(node) if isinstance(node, ast.Call) else "first"
        if coding in ("first", "full"):
            return levels[0] if levels else None
        match = [lv for lv in levels if lv == coding or str(lv) == str(coding)]
        if not match:
            raise FormulaError(f"the base level {coding!r} of '{expr}' is not a level of the data")
        return match[0]

    def numeric(self, expr: str) -> str:
        """SQL of a numeric factor."""
        return self._num(self._parse(expr), expr)

    def numeric_columns(self, expr: str) -> list[str]:
        """SQL of each column of a numeric factor: one, or the k columns of ``r_poly`` (R's
        ``poly``: raw powers, or the orthogonal recurrence of :mod:`hlm.transforms`)."""
        node = self._parse(expr)
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "r_poly"):
            return [self._num(node, expr)]
        x = self._num(node.args[0], expr)
        degree = ast.literal_eval(node.args[1])
        if len(node.args) == 2:
            return [x if j == 1 else f"POWER({x}, {float(j)!r})" for j in range(1, degree + 1)]
        alpha, norm2 = ast.literal_eval(node.args[2]), ast.literal_eval(node.args[3])
        z = ["1.0", f"(({x}) - {alpha[0]!r})"]
        for i in range(1, degree):
            z.append(f"((({x}) - {alpha[i]!r}) * {z[i]} - {norm2[i + 1] / norm2[i]!r} * {z[i - 1]})")
        return [f"({z[j]} / {float(np.sqrt(norm2[j + 1]))!r})" for j in range(1, degree + 1)]

    def indicator(self, column: str, level) -> str:
        col = self.dialect.ident(column)
        return f"CASE WHEN {col} = {_literal(level, self.dialect)} THEN 1.0 ELSE 0.0 END"

    def _parse(self, expr: str) -> ast.expr:
        try:
            return ast.parse(expr.strip(), mode="eval").body
        except SyntaxError:
            raise FormulaError(f"the SQL backends cannot translate the term '{expr}'") from None

    def _unsupported(self, expr: str, what: str) -> FormulaError:
        return FormulaError(
            f"the SQL backends (DuckDB, Spark) do not support the term '{expr}' ({what}); "
            "supported: numeric and categorical columns, interactions, log, exp, sqrt, "
            "powers via I(x**2), center(x); or use backend='memory'"
        )

    def _num(self, node: ast.expr, expr: str) -> str:
        if isinstance(node, ast.Name):
            col = self.column(node.id)
            self.needs.columns.add(col)
            kind = self.kinds.get(col)
            if kind is None:  # names close matches, as the in-memory path does
                check_columns([col], self.kinds.keys())
                raise ColumnError(f"column '{col}' (in the term '{expr}') is not in the data")  # pragma: no cover
            if kind in ("numeric", "float", "bool"):
                return f"CAST({self.dialect.ident(col)} AS DOUBLE)"
            if kind == "string":
                raise self._unsupported(expr, f"'{col}' is categorical inside an arithmetic expression")
            raise self._unsupported(expr, f"column '{col}' has an unsupported type")
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return repr(float(node.value))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = self._num(node.operand, expr)
            return f"(-({inner}))" if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.BinOp):
            a, b = self._num(node.left, expr), self._num(node.right, expr)
            if isinstance(node.op, ast.Pow):
                return f"POWER({a}, {b})"
            ops = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
            if type(node.op) in ops:
                return f"(({a}) {ops[type(node.op)]} ({b}))"
            raise self._unsupported(expr, f"operator {type(node.op).__name__}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "r_scale"
            and len(node.args) == 3
        ):
            centre, scale = ast.literal_eval(node.args[1]), ast.literal_eval(node.args[2])
            return f"((({self._num(node.args[0], expr)}) - {float(centre)!r}) / {float(scale)!r})"
        if isinstance(node, ast.Call) and not node.keywords and len(node.args) == 1:
            fn = node.func
            name = None
            if isinstance(fn, ast.Name):
                name = fn.id
            elif isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name) and fn.value.id in _MODULES:
                name = fn.attr
            if name in _FUNCS:
                return f"{_FUNCS[name]}({self._num(node.args[0], expr)})"
            if name in _R_FUNCS and isinstance(fn, ast.Name):
                return _R_FUNCS[name].format(self._num(node.args[0], expr))
            if name == "I" and isinstance(fn, ast.Name):
                return self._num(node.args[0], expr)
            if name == "center" and isinstance(fn, ast.Name):
                arg = self._num(node.args[0], expr)
                key = self.needs.means.setdefault(arg, f"m{len(self.needs.means)}")
                mean = self.means.get(key)
                return f"(({arg}) - ({repr(float(mean)) if mean is not None else 'NULL'}))"
        raise self._unsupported(expr, "not translatable to SQL")


def _coding(node: ast.Call):
    """The coding a ``C()`` call asks for: "first" (treatment, first level), "full"
    (``spans_intercept=False``), a base level (``contr.treatment(base=v)``), None if other."""
    if len(node.args) == 1 and not node.keywords:
        return "first"
    if len(node.args) == 1 and [k.arg for k in node.keywords] == ["spans_intercept"]:
        value = node.keywords[0].value
        return "full" if isinstance(value, ast.Constant) and value.value is False else None
    if len(node.args) == 2 and not node.keywords:
        c = node.args[1]
        if (
            isinstance(c, ast.Call)
            and isinstance(c.func, ast.Attribute)
            and c.func.attr == "treatment"
            and not c.args
            and [k.arg for k in c.keywords] == ["base"]
            and isinstance(c.keywords[0].value, ast.Constant)
        ):
            return c.keywords[0].value.value
    return None


def _probe_frame(
    columns: Sequence[str], kinds: Mapping[str, Kind], levels: Mapping[str, list], alias: Mapping[str, str]
) -> pd.DataFrame:
    """A few rows with the right column types and every categorical level, for formulaic's layout
    (``alias``: safe names of lme4 formulas -> data columns)."""
    n = max([3] + [len(v) for v in levels.values()])
    data = {}
    for name in columns:
        col = alias.get(name, name)
        if col in levels and levels[col]:
            vals = levels[col]
            data[name] = [vals[i % len(vals)] for i in range(n)]
            # a categorical (or a logical factor of an lme4 formula): formulaic keeps the levels' order
            if kinds.get(col) == "string" or (name in alias and kinds.get(col) == "bool"):
                data[name] = pd.Categorical(data[name], categories=vals)
        elif kinds.get(col) == "bool":
            data[name] = [bool(i % 2) for i in range(n)]
        else:
            data[name] = np.arange(1.0, n + 1.0)
    return pd.DataFrame(data)


def model_columns(rhs: str, tr: Translator, columns: Sequence[str], what: str) -> tuple[list[ModelColumn], object]:
    """The model-matrix columns of a formulaic right-hand side, in formulaic's order.

    The layout (which terms, reduced or full-rank coding, column order) is formulaic's own,
    read from a model matrix of a few probe rows; each column's SQL comes from the
    :class:`Translator`.  Returns the columns and formulaic's model spec.
    """
    try:
        terms = list(Formula(rhs))
    except (FormulaicError, SyntaxError, ValueError) as exc:
        raise FormulaError(f"cannot parse {what} '{rhs}': {str(exc).splitlines()[0]}") from None
    for term in terms:  # validate every factor before probing (names the bad term)
        for fac in term.factors:
            if fac.expr != "1" and tr.categorical_column(fac.expr) is None:
                tr.numeric_columns(fac.expr)
    # lme4 formulas name only safe names: a data column called C must not hide formulaic's C()
    probe = _probe_frame(list(tr.alias) or columns, tr.kinds, tr.levels, tr.alias)
    try:
        mm = model_matrix(rhs, probe, output="pandas", context=CONTEXT if tr.alias else None)
    except (FormulaicError, SyntaxError, ValueError, TypeError, NameError) as exc:
        raise FormulaError(f"cannot build {what} '{rhs}' for SQL: {str(exc).splitlines()[0]}") from None
    out: list[ModelColumn] = []
    for struct in mm.model_spec.structure:  # formulaic's columns, term by term, first factor fastest
        made: list[str] = []
        for scoped in struct.scoped_terms:
            pieces: list[list[str]] = []
            for sf in scoped.factors:
                expr = sf.factor.expr
                col = tr.categorical_column(expr)
                if col is None:
                    pieces.append(tr.numeric_columns(expr))
                else:
                    lv = tr.levels.get(col, [])
                    lv = tr.levels.get(col, [])
                    base = tr.base_level(expr, lv)
                    use = [level for level in lv if level != base] if sf.reduced else lv
                    pieces.append([tr.indicator(col, level) for level in use])
            for combo in itertools.product(*reversed(pieces)):
                sql = "1.0"
                for c in combo[::-1]:
                    sql = _mul(sql, c)
                made.append(sql)
        if len(made) != len(struct.columns):
            raise FormulaError(f"the SQL backends cannot lay out the term '{struct.term}' of {what} '{rhs}'")
        out += [ModelColumn(name, sql) for name, sql in zip(struct.columns, made)]
    if [c.name for c in out] != list(mm.columns):
        raise FormulaError(f"the SQL backends cannot lay out {what} '{rhs}'")
    return out, mm.model_spec


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Factor:
    """A grouping factor: display name, columns (label order) and their aliases in SQL."""

    name: str
    columns: tuple[str, ...]
    keys: tuple[int, ...]  # indices into Plan.group_columns, label order


@dataclass
class Plan:
    """Everything needed to write the queries for one model on one source."""

    spec: ModelSpec
    dialect: Dialect
    kinds: dict[str, Kind]
    used: list[str]
    xcols: list[ModelColumn]
    ycol: str
    zcols: list[ModelColumn]
    xnames: tuple[str, ...]
    pool: tuple[str, ...]
    term_columns: tuple[tuple[int, ...], ...]
    factors: tuple[Factor, ...]
    term_factor: tuple[int, ...]
    group_columns: tuple[str, ...]
    x_model_spec: object = None
    weights: str | None = None  # a column of precision weights (aliased hw in the base query)
    offset: str | None = None  # SQL of the model's offset, subtracted from the response

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
        sel += [f"{d.ident(c)} AS g{i}" for i, c in enumerate(self.group_columns)]
        where = self.where()
        if self.weights is not None:
            w = d.ident(self.weights)
            sel.append(f"CAST({w} AS DOUBLE) AS hw")
            where += f" AND ({w} IS NULL OR NOT ({w} = 0))"
        return f"SELECT {', '.join(sel)} FROM {src} WHERE {where}"

    def _sum(self, expr: str) -> str:
        """The SQL sum of ``expr`` over the rows, weighted by the precision weights if any."""
        return f"SUM({expr if self.weights is None else _mul('hw', expr)})"

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
                sums.append(f"{self._sum(_mul(self._kexpr(a), self._kexpr(b)))} AS kk_{a}_{b}")
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

    def minmax_columns(self) -> list[int]:
        """Grouping columns whose MIN/MAX per group decide nesting (pairs neither a subset of the other)."""
        need: set[int] = set()
        sets = [set(f.keys) for f in self.factors]
        for a, sa in enumerate(sets):
            for b, sb in enumerate(sets):
                if a != b and not (sa <= sb or sb <= sa):
                    need |= sb - sa
        return sorted(need)

    def nested_chain(self) -> tuple[list[int], str] | None:
        """The factors innermost first and the form of their labels, when the factors are
        slash-nested: ``(1|a/b/c)``, whose labels lme4 writes innermost first (``c:b:a``:
        each factor's key columns end with the next outer one's, form ``"suffix"``), or
        ``(1|a) + (1|a:b) + (1|a:b:c)`` (they begin with them, form ``"prefix"``); else None.

        Such a chain is nested by construction: one ``GROUP BY`` over the innermost factor's
        columns gives its groups, and every outer factor's groups follow from them
        (:func:`assemble_chain`)."""
        if not self.factors:
            return None
        order = sorted(range(len(self.factors)), key=lambda f: -len(self.factors[f].keys))
        for form in ("suffix", "prefix"):
            ok = True
            for inner, outer in zip(order, order[1:]):
                ki, ko = self.factors[inner].keys, self.factors[outer].keys
                part = ki[len(ki) - len(ko) :] if form == "suffix" else ki[: len(ko)]
                ok = ok and len(ki) > len(ko) and part == ko
            if ok:
                return order, form
        return None

    def factor_sets(self) -> list[tuple[int, ...]]:
        """Column sets of the grouping factors."""
        return list(dict.fromkeys(tuple(sorted(f.keys)) for f in self.factors))

    def pair_sets(self) -> list[tuple[int, ...]]:
        """Column sets of every pair of factors (crossed factors' shared rows)."""
        sets = [set(f.keys) for f in self.factors]
        return list(dict.fromkeys(tuple(sorted(a | b)) for a, b in itertools.combinations(sets, 2)))

    def group_query(self, src: str, sets: Sequence[tuple[int, ...]] | None = None, *, ztk: bool = True) -> str:
        """One scan: per group of every grouping set, n, sum z z' (and sum z k', MIN/MAX for nesting);
        with precision weights, sum w z z' and sum w z k'."""
        sets = list(sets if sets is not None else self.factor_sets())
        z = len(self.zcols)
        many = len(sets) > 1
        used = sorted(set().union(*map(set, sets)))
        sel = [" + ".join(f"GROUPING(g{i}) * {2**j}" for j, i in enumerate(used)) + " AS gid"] if many else []
        sel += [f"g{i}" for i in used]
        sel.append("COUNT(*) AS n")
        for a in range(z):
            for b in range(a, z):
                if self._summed(zz := _mul(self._zexpr(a), self._zexpr(b))):  # else the count
                    sel.append(f"{self._sum(zz)} AS zz_{a}_{b}")
            for c in range(self.k if ztk else 0):
                if self._summed(zk := _mul(self._zexpr(a), self._kexpr(c))):
                    sel.append(f"{self._sum(zk)} AS zk_{a}_{c}")
        for i in self.minmax_columns() if ztk else []:
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
        leaf, parent = self.factors[chain[0]], self.factors[chain[1]]
        svals = ["CAST(n AS DOUBLE)" if self._kexpr(j) == "1.0" else f"s{j}" for j in range(self.k)]
        inner = [f"g{i}" for i in leaf.keys] + ["COUNT(*) AS n"]
        inner += [f"SUM({self._kexpr(j)}) AS s{j}" for j in range(self.k) if self._kexpr(j) != "1.0"]
        outer = [f"g{i}" for i in parent.keys] + ["n", "COUNT(*) AS c"]
        outer += [f"SUM({svals[j]}) AS zk_0_{j}" for j in range(self.k) if self._kexpr(j) != "1.0"]
        outer += [f"SUM({_mul(svals[a], svals[b])}) AS ss_{a}_{b}" for a in range(self.k) for b in range(a, self.k)]
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
):
    """The fixed and random columns as SQL; ``zparts`` (lme4): each random term read with R's
    semantics and its frozen states, whose designs (R's names) are returned too."""
    tr = Translator(dialect, kinds, levels, means, alias)
    xcols, x_spec = model_columns(fixed, tr, used, "the fixed part")
    pool: list[str] = []
    zcols: list[ModelColumn] = []
    term_columns = []
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
        idx = []
        for c, zname in zip(cols, znames):
            if zname not in pool:
                pool.append(zname)
                zcols.append(c)
            idx.append(pool.index(zname))
        term_columns.append(tuple(idx))
    return tr, xcols, x_spec, pool, zcols, tuple(term_columns), tuple(zdesigns)


def plan(
    spec: ModelSpec,
    schema: Mapping[str, str],
    dialect: Dialect,
    run: Runner,
    src: str,
    weights: str | None = None,
    declared: Callable[[Sequence[str]], Mapping[str, Sequence]] | None = None,
) -> Plan:
    """Build the query plan, running the prepass (levels, means) when the model needs one;
    ``weights``: a column of precision weights.

    A categorical column's levels are those present in the complete rows, in the order the
    source declares (``declared(predictor columns)``: e.g. a Parquet file's stored
    dictionaries, a DuckDB ENUM's values), else sorted: the first is the reference level, as
    in the in-memory path."""
    kinds = {c: column_kind(t) for c, t in schema.items()}
    if weights is not None:
        check_columns([weights], schema.keys())
        check_kind(kinds[weights] in ("numeric", "float"), weights, schema[weights])
    # walk every factor first: unsupported terms and unknown columns are named before any query,
    # and the columns come from the terms themselves (formulaic's required_variables lists
    # function names such as sqrt and misses the arguments of center())
    rf, zrfs = rformula(spec), random_rformulas(spec)
    tr, *_ = _translate_needs(spec, dialect, kinds, rf, zrfs)
    used = list(dict.fromkeys([spec.response, *sorted(tr.needs.columns), *spec.group_columns]))
    check_columns(used, schema.keys())
    if kinds[spec.response] not in ("numeric", "float", "bool"):
        _check_not_empty(run, src, dialect, [spec.response])
        raise DataError(
            f"the response '{spec.response}' is not numeric ({schema[spec.response]}); convert it or "
            "pick a numeric column"
        )
    for col in spec.group_columns:
        if kinds[col] == "other":
            raise DataError(f"the grouping column '{col}' has type {schema[col]}; cast it to a string or integer")
    cat = sorted(tr.needs.levels)
    levels: dict[str, list] = {}
    means: dict[str, float] = {}
    skeleton = Plan(spec, dialect, kinds, used, [], "", [], (), (), (), (), (), ())
    query = skeleton.prepass_query(src, cat, tr.needs.means)
    predictors = sorted(set(cat) | {c for c in tr.needs.columns if c not in spec.group_columns})
    orders = declared(predictors) if declared is not None else {}
    if query is not None:
        res = run(query)
        for i, col in enumerate(cat):
            vals = _first(res[f"lv{i}"])
            levels[col] = ordered_levels(vals if vals is not None else [], orders.get(col))
        for key in tr.needs.means.values():
            means[key] = float(_first(res[key]))
        if any(not levels[col] for col in cat):  # no complete row: name an empty column if there is one
            _check_not_empty(run, src, dialect, used)
            raise DataError("every row has a missing value in a model column; nothing is left to fit")
        check_factor_levels({col: len(levels[col]) for col in cat})
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
    if rf is not None:
        design = replace(design_of(spec, rf, states, x_spec), random=zdesigns)
        xnames = design.names
        xcols = xcols if design.order is None else [xcols[j] for j in design.order]
    else:
        xnames = tuple(fixed_name(c.name, spec.syntax) for c in xcols)
        design = design_of(spec, None, {}, x_spec, xnames) if not means else None
    ycol = f"CAST({dialect.ident(spec.response)} AS DOUBLE)"
    offset = " + ".join(f"({tr.numeric(code)})" for code in rf.offsets) if rf is not None and rf.offsets else None
    if offset is not None:
        ycol = f"({ycol} - ({offset}))"

    group_columns = tuple(spec.group_columns)
    factors: list[Factor] = []
    keys: list[frozenset[str]] = []
    term_factor = []
    for term in spec.random:
        key = factor_key(term.group)
        if key not in keys:
            keys.append(key)
            order = tuple(term.name.split(":")) if set(term.name.split(":")) == set(term.group) else term.group
            factors.append(Factor(term.name, order, tuple(group_columns.index(c) for c in order)))
        term_factor.append(keys.index(key))
    return Plan(
        spec,
        dialect,
        kinds,
        used,
        xcols,
        ycol,
        zcols,
        xnames,
        tuple(pool),
        term_columns,
        tuple(factors),
        tuple(term_factor),
        group_columns,
        design,
        weights=weights,
        offset=offset,
    )


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
        mean = float(_first(res[f"c{i}"]))
        if atom.kind == "poly":
            moments += [f"SUM(POWER(({x}) - {mean!r}, {float(j)!r})) AS m{i}_{j}" for j in range(2 * atom.degree + 1)]
        elif atom.scale:
            if int(_first(res["n"])) < 2:
                raise DataError("scale() needs at least two rows")
            states[i] = (mean if atom.center else 0.0, float(_first(res[f"s{i}"])))
        else:
            states[i] = (mean if atom.center else 0.0, 1.0)
    if moments:
        mres = run(f"SELECT {', '.join(moments)} FROM {src}{where}")
        for i, atom, _ in stateful:
            if atom.kind == "poly":
                m = [float(_first(mres[f"m{i}_{j}"])) for j in range(2 * atom.degree + 1)]
                states[i] = poly_state_from_moments(
                    float(_first(res[f"c{i}"])), m, atom.degree, int(_first(res[f"d{i}"]))
                )
    return states


def _translate_needs(
    spec: ModelSpec, dialect: Dialect, kinds: Mapping[str, Kind], rf: RFormula | None, zrfs: Sequence[RFormula] | None
):
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
        if int(_first(res[f"c{i}"]) or 0) == 0:
            raise DataError(f"column '{col}' has no values: every row is missing")


def check_complete_rows(p: Plan, glob: Mapping[str, np.ndarray], ntotal: int, run: Runner, src: str) -> None:
    """When no row is complete, name a model column that has no values at all (if one has none)."""
    if ntotal and int(_as_array(glob["n"])[0]) == 0:
        _check_not_empty(run, src, p.dialect, p.used)


def _first(col):
    arr = col if not isinstance(col, pd.Series) else col.to_numpy()
    value = arr[0]
    if isinstance(value, np.ma.core.MaskedConstant):
        return None
    return value


# --------------------------------------------------------------------------- assembly


def _as_array(values) -> np.ndarray:
    if isinstance(values, np.ma.MaskedArray):
        return values.filled(np.nan) if values.dtype.kind == "f" else np.asarray(values.data)
    if isinstance(values, pd.Series):
        return values.to_numpy()
    return np.asarray(values)


def _sorted_codes(values: np.ndarray) -> np.ndarray:
    """Codes 0..m-1 in sorted order of the values (the in-memory path's coding)."""
    return dense_codes(np.asarray(values))[0]


def _lookup(table: list[np.ndarray], probe: list[np.ndarray]) -> np.ndarray:
    """Row index in ``table`` (key columns, unique tuples) of each probe tuple; -1 if absent."""
    codes_t, codes_p, radix = [], [], 1
    for t, q_ in zip(table, probe):
        codes = _sorted_codes(np.concatenate([t, q_]))
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
    nobs = int(_as_array(glob["n"])[0])
    if nobs == 0:
        raise DataError(
            "every row has a missing value in a model column; nothing is left to fit"
            if ntotal
            else "the data has no rows"
        )
    bad = [(f"inf_{j}", p.xnames[j] if j < len(p.xnames) else p.spec.response) for j in range(p.k)]
    bad += [(f"infz_{a}", p.pool[a]) for a in range(len(p.zcols)) if f"infz_{a}" in glob]
    for key, name in bad:
        if int(np.nan_to_num(_as_array(glob[key]).astype(float))[0]):
            raise DataError(
                f"column '{name}' has infinite values or NaN (such as log or sqrt of a negative number); "
                "remove or recode them"
            )
    k, z = p.k, len(p.zcols)
    ktk = np.empty((k, k))
    for a in range(k):
        for b in range(a, k):
            ktk[a, b] = ktk[b, a] = float(_as_array(glob[f"kk_{a}_{b}"])[0])
    if _empty:  # the global part only (assemble_chain does the groups)
        return Aggregates(
            nobs=nobs,
            ndropped=int(ntotal) - nobs,
            response=p.spec.response,
            xnames=p.xnames,
            pool=p.pool,
            ktk=ktk,
            factors=(),
            term_factor=p.term_factor,
            term_columns=p.term_columns,
            chain=None,
            parents=(),
        )

    cols = {name: _as_array(v) for name, v in groups.items()}
    which = _split_sets(p, cols, p.factor_sets())

    def block(rows: np.ndarray, cols=cols):
        ztz = np.empty((len(rows), z, z))
        ztk = np.empty((len(rows), z, k))
        for a in range(z):
            for b in range(a, z):
                ztz[:, a, b] = ztz[:, b, a] = cols.get(f"zz_{a}_{b}", cols["n"])[rows]
            for c in range(k):
                name = f"zk_{a}_{c}"
                ztk[:, a, c] = cols[name][rows] if name in cols else cols["n"][rows] if _count(p, a, c) else np.nan
        return ztz, ztk

    # per factor: rows in label order
    frows: list[np.ndarray] = []
    keyvals: list[list[np.ndarray]] = []
    stats_parts = []
    for f in p.factors:
        rows = which[tuple(sorted(f.keys))]
        vals = [cols[f"g{i}"][rows] for i in f.keys]
        codes = [_sorted_codes(v) for v in vals]
        order = np.lexsort(codes[::-1]) if codes else np.arange(len(rows))
        rows = rows[order]
        vals = [v[order] for v in vals]
        frows.append(rows)
        keyvals.append(vals)
        stats_parts.append((f, tuple(vals), cols["n"][rows].astype(np.int64)))
    nlev = [len(r) for r in frows]

    chain, parents = _nesting(p, frows, keyvals, nlev, cols)
    factors = []
    for idx, (f, keys, counts) in enumerate(stats_parts):
        need = chain is None or idx == chain[0]
        ztz, ztk = block(frows[idx]) if need else (None, None)
        factors.append(FactorStats(f.name, f.columns, keys, counts, ztz, ztk))
    cross: list[CrossBlock] = []
    if chain is None and len(p.factors) > 1:
        psets = p.pair_sets()
        have = {s for s in psets if s in which}
        pcols = (
            {name: _as_array(v) for name, v in pairs([s for s in psets if s not in have]).items()}
            if len(have) < len(psets)
            else {}
        )
        pwhich = _split_sets(p, pcols, [s for s in psets if s not in have]) if pcols else {}
        for i, j in itertools.combinations(range(len(p.factors)), 2):
            s = tuple(sorted(set(p.factors[i].keys) | set(p.factors[j].keys)))
            src_cols, rows = (cols, which[s]) if s in have else (pcols, pwhich[s])
            gi = _lookup(keyvals[i], [src_cols[f"g{c}"][rows] for c in p.factors[i].keys])
            gj = _lookup(keyvals[j], [src_cols[f"g{c}"][rows] for c in p.factors[j].keys])
            order = np.lexsort((gj, gi))
            zz, _ = block(rows[order], src_cols)
            cross.append(CrossBlock(i, j, gi[order].astype(np.int64), gj[order].astype(np.int64), zz))
    return Aggregates(
        nobs=nobs,
        ndropped=int(ntotal) - nobs,
        response=p.spec.response,
        xnames=p.xnames,
        pool=p.pool,
        ktk=ktk,
        factors=tuple(factors),
        term_factor=p.term_factor,
        term_columns=p.term_columns,
        chain=chain,
        parents=parents if chain is not None else (),
        cross=tuple(cross),
    )


def _sorted_order(vals: list[np.ndarray]) -> tuple[np.ndarray | None, list[np.ndarray]]:
    """Rows sorted by the key tuples ``vals`` (unique tuples) and, per prefix length c, where
    a new run of the first c columns starts.  Returns (order or None if already sorted, starts).

    Fast paths, O(n) for integer ids: the rows as they are, or ordered by the last column
    when its values are unique (globally unique innermost ids), if the tuples are then sorted;
    else a lexicographic sort."""
    n = len(vals[0])

    def runs(order):
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
        codes = _sorted_codes(last)
        if n and int(codes.max()) + 1 == n:  # unique: the codes are a permutation
            order = np.empty(n, dtype=np.int64)
            order[codes] = np.arange(n)
            del codes
            starts = runs(order)
            if starts is not None:
                return order, starts
    codes = [_sorted_codes(v) for v in vals]
    order = np.lexsort(codes[::-1])
    sc = [c[order] for c in codes]
    undecided = np.ones(max(n - 1, 0), dtype=bool)
    starts = []
    for c in sc:
        undecided &= c[:-1] == c[1:]
        starts.append(np.concatenate([[0], np.flatnonzero(~undecided) + 1]) if n else np.zeros(0, np.int64))
    return order, starts


def assemble_chain(
    p: Plan, glob: Mapping[str, np.ndarray], groups: Mapping[str, np.ndarray], ntotal: int
) -> Aggregates | None:
    """Aggregates of a slash-nested chain (:meth:`Plan.nested_chain`) from the innermost
    factor's groups alone; None when the factors' group counts tie (then the chain order is
    decided as :func:`_nesting` does, from every factor's groups)."""
    chain, form = p.nested_chain()
    agg = assemble(p, glob, {}, ntotal, _empty=True)  # the global part and its checks
    if isinstance(groups, dict):  # take the arrays over, so each can be freed once reordered
        cols = {name: _as_array(groups.pop(name)) for name in list(groups)}
    else:
        cols = {name: _as_array(v) for name, v in groups.items()}
    done = (_assemble_suffix if form == "suffix" else _assemble_prefix)(p, agg, chain, cols)
    return None if done is None else done[0]


def _assemble_prefix(
    p: Plan, agg: Aggregates, chain: Sequence[int], cols: dict
) -> tuple[Aggregates, np.ndarray] | None:
    """:func:`assemble_chain` for labels written outermost first (``school:teacher:student``):
    the rows sorted by their key tuples, every factor's groups are runs of a prefix of the
    keys.  Also returns the innermost code of every input row."""
    leaf = p.factors[chain[0]]
    order, starts = _sorted_order([cols[f"g{i}"] for i in leaf.keys])
    nlev = [len(starts[len(p.factors[f].keys) - 1]) for f in chain]
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
    factors: list[FactorStats | None] = [None] * len(p.factors)
    parents = []
    prev_starts = None
    for pos, f in enumerate(chain):
        fac = p.factors[f]
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
    return replace(
        agg,
        factors=tuple(factors),
        term_factor=p.term_factor,
        term_columns=p.term_columns,
        chain=tuple(chain),
        parents=tuple(parents),
        cross=(),
    ), row_code


def _leaf_blocks(p: Plan, cols: dict, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Z_g'Z_g and Z_g'K_g of the innermost groups from their grouped rows (whose sums it drops)."""
    k, z = p.k, len(p.zcols)
    ztz = np.empty((len(counts), z, z))
    ztk = np.empty((len(counts), z, k))
    for a in range(z):
        for b in range(a, z):
            ztz[:, a, b] = ztz[:, b, a] = cols.get(f"zz_{a}_{b}", counts)
        for c in range(k):
            ztk[:, a, c] = counts if _count(p, a, c) else cols[f"zk_{a}_{c}"]
    for name in [n for n in cols if n.startswith(("zz_", "zk_"))]:
        del cols[name]
    return ztz, ztk


def _count(p: Plan, a: int, c: int) -> bool:
    """Whether sum z_a k_c over a group is its row count (both columns 1, no weights)."""
    return p.weights is None and p._zexpr(a) == "1.0" and p._kexpr(c) == "1.0"


def _assemble_suffix(
    p: Plan, agg: Aggregates, chain: Sequence[int], cols: dict
) -> tuple[Aggregates, np.ndarray] | None:
    """:func:`assemble_chain` for labels written innermost first (``student:teacher:school``);
    also returns the innermost code of every input row.

    Codes in label order are built from the outermost column inwards: a column whose value
    determines the outer group (globally unique ids, checked in O(n)) is its own code, its
    dense rank; otherwise the code ranks the pair (value, outer code).  The innermost groups
    are the rows, sorted once by their code."""
    leaf = p.factors[chain[0]]
    lk = leaf.keys
    want = {p.factors[f].keys: f for f in chain}
    code, m = None, 0
    codes: dict[int, tuple[np.ndarray, int]] = {}
    for j in range(len(lk) - 1, -1, -1):
        rank = _sorted_codes(cols[f"g{lk[j]}"])
        r = int(rank.max(initial=-1)) + 1
        if code is None:
            code, m = rank, r
        else:
            first = first_rows(rank, r)
            if np.array_equal(code[first][rank], code):  # the value determines the outer group
                code, m = rank, r
            else:
                key = rank * np.int64(m) + code
                code = _sorted_codes(key)
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
    factors: list[FactorStats | None] = [None] * len(p.factors)
    factors[chain[0]] = FactorStats(leaf.name, leaf.columns, tuple(cols[f"g{i}"] for i in lk), counts, ztz, ztk)
    parents = []
    prev_first = None
    for f in chain[1:]:
        fac = p.factors[f]
        c, mf = codes.pop(f)
        first = first_rows(c, mf)
        fcounts = np.bincount(c, weights=counts, minlength=mf).round().astype(np.int64)
        factors[f] = FactorStats(fac.name, fac.columns, tuple(cols[f"g{i}"][first] for i in fac.keys), fcounts)
        parents.append(c if prev_first is None else c[prev_first])
        prev_first = first
    return replace(
        agg,
        factors=tuple(factors),
        term_factor=p.term_factor,
        term_columns=p.term_columns,
        chain=tuple(chain),
        parents=tuple(parents),
        cross=(),
    ), row_code


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
    cols = {name: _as_array(v) for name, v in cells.items()}
    n_cell = cols["n"].astype(np.int64)
    c_cell = cols["c"].astype(np.int64)
    nleaf = int(c_cell.sum())
    parent = p.factors[chain[1]]
    order, starts = _sorted_order([cols[f"g{i}"] for i in parent.keys])
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
    form = p.nested_chain()[1]
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
    leaf = p.factors[chain[0]]
    factors = list(agg.factors)
    factors[chain[0]] = FactorStats(leaf.name, leaf.columns, (), None, pooled=pooled)
    return replace(
        agg, factors=tuple(factors), chain=tuple(chain), parents=(np.zeros(0, dtype=np.int64),) + agg.parents
    )


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
    nzero = int(np.nan_to_num(_as_array(counted["nzero"]).astype(float))[0])
    return replace(
        agg,
        weights=p.weights,
        log_weights=float(_as_array(glob["log_w"])[0]),
        zero_weights=nzero,
        ndropped=agg.ndropped - nzero,
    )


def _compute(p: Plan, run: Runner, src: str, fetch: Runner, glob: Mapping[str, np.ndarray], ntotal: int) -> Aggregates:
    """The grouped queries and the assembly of :func:`compute`."""
    if p.weights is not None:

        def count(name: str) -> int:
            return int(np.nan_to_num(_as_array(glob[name]).astype(float))[0])

        check_counts(p.weights, missing=count("w_missing"), infinite=count("w_infinite"), negative=count("w_negative"))
    nested = p.nested_chain()
    if (
        nested is not None
        and len(nested[0]) >= 2
        and p.pool == ("(Intercept)",)
        and ntotal >= POOL_LEAF_GROUPS
        and p.weights is None
    ):
        agg = pooled_chain(p, glob, fetch(p.pooled_query(src, nested[0])), ntotal, nested[0])
        if agg is not None:
            return agg
    if nested is not None:
        leaf = p.factors[nested[0][0]]
        agg = assemble_chain(p, glob, fetch(p.group_query(src, [tuple(sorted(leaf.keys))])), ntotal)
        if agg is not None:
            return agg
    return assemble(p, glob, fetch(p.group_query(src)), ntotal, lambda sets: fetch(p.group_query(src, sets, ztk=False)))


def _nesting(p: Plan, frows, keyvals, nlev, cols):
    """(chain, parents) as :func:`hlm.aggregate.stats.nesting_chain` decides it, or (None, ())."""
    F = len(p.factors)
    if F == 0:
        return (), ()
    order = sorted(range(F), key=lambda f: -nlev[f])
    parents = []
    for inner, outer in zip(order, order[1:]):
        si, so = set(p.factors[inner].keys), set(p.factors[outer].keys)
        rows = frows[inner]
        if so <= si:
            probe = [cols[f"g{c}"][rows] for c in p.factors[outer].keys]
        elif si < so:
            if nlev[inner] != nlev[outer]:
                return None, ()
            # a bijection: each outer group's projection onto the inner columns names its inner group
            back = _lookup(keyvals[inner], [cols[f"g{c}"][frows[outer]] for c in p.factors[inner].keys])
            parent = np.empty(nlev[inner], dtype=np.int64)
            parent[back] = np.arange(nlev[outer])
            parents.append(parent)
            continue
        else:
            probe = []
            for c in p.factors[outer].keys:
                if c in si:
                    probe.append(cols[f"g{c}"][rows])
                    continue
                mn, mx = cols[f"mn{c}"][rows], cols[f"mx{c}"][rows]
                if not np.array_equal(mn, mx):
                    return None, ()
                probe.append(mn)
        parent = _lookup(keyvals[outer], probe)
        if (parent < 0).any():
            return None, ()
        parents.append(parent.astype(np.int64))
    return tuple(order), tuple(parents)
