"""The formula-to-SQL translator: fixed-part and random-slope terms as SQL expressions over the
source rows (see :mod:`hlm.aggregate.sql` for what is supported).
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from formulaic import Formula, model_matrix
from formulaic.errors import FormulaicError

from hlm.aggregate.sql.dialect import Dialect, Kind
from hlm.data.source import check_columns
from hlm.errors import ColumnError, FormulaError
from hlm.transforms import CONTEXT

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


def _literal(value: Any, dialect: Dialect) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return dialect.string(str(value))


def sql_product(a: str, b: str) -> str:
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

    def base_level(self, expr: str, levels: list) -> Any:
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

    def indicator(self, column: str, level: Any) -> str:
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


def _coding(node: ast.Call) -> Any:
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
    data: dict[str, Any] = {}
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
                    sql = sql_product(sql, c)
                made.append(sql)
        if len(made) != len(struct.columns):
            raise FormulaError(f"the SQL backends cannot lay out the term '{struct.term}' of {what} '{rhs}'")
        out += [ModelColumn(name, sql) for name, sql in zip(struct.columns, made)]
    if [c.name for c in out] != list(mm.columns):
        raise FormulaError(f"the SQL backends cannot lay out {what} '{rhs}'")
    return out, mm.model_spec
