"""The fixed-effects design: X for any rows, with R's column names and the model's offset.

For lme4 syntax the fixed part is read by :mod:`hlm.spec.rformula` (R's semantics, safe
column names); the stateful atoms (``poly``, ``scale``, ``center``) are frozen on the rows
of the fit, and formulaic lays out the columns.  Each column is named as R's
``model.matrix`` names it: the atoms' R text joined by ``:``, a factor's level appended
(``TreatmentLow:sexF``), a polynomial's degree appended (``poly(Days, 2)1``).  A
:class:`FixedDesign` is immutable and serves ``predict(newdata)``: the same formula (with
the frozen states) on new rows.  Stata syntax keeps formulaic's text and Stata's names.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from formulaic import Formula, model_matrix
from formulaic.errors import FormulaicError

from hlm.data.source import choose_backend
from hlm.errors import DataError, FormulaError, OptionError
from hlm.spec.factor_variables import stata_column_name
from hlm.spec.rformula import Atom, Name, RFormula, deparse, translate
from hlm.spec.terms import ModelSpec
from hlm.transforms import CONTEXT, evaluate, poly_state, scale_state

_ERRORS = (FormulaicError, SyntaxError, ValueError, TypeError, NameError, KeyError)


def rformula(spec: ModelSpec) -> RFormula | None:
    """The fixed part read with R's semantics (lme4 syntax), or None (Stata syntax)."""
    return translate(spec.fixed) if spec.syntax == "lme4" else None


def level_label(level: Any) -> str:
    """A factor level as R writes it in a column name (``TRUE``, ``185`` for 185.0)."""
    if isinstance(level, (bool, np.bool_)):
        return "TRUE" if level else "FALSE"
    if isinstance(level, (float, np.floating)):  # R's 15 significant digits: 185 for 185.0, 0.3 for 0.1 + 0.2
        return f"{float(level):.15g}"
    return str(level)


def _atom_expr(code: str) -> str:
    """formulaic's own text of a factor (it normalises spacing)."""
    exprs = [f.expr for term in Formula(code) for f in term.factors if f.expr != "1"]
    return exprs[0]


def _r_codes(terms: list[tuple[int, ...]], categorical: set[int], intercept: bool) -> list[dict[int, bool]]:
    """R's coding of each factor in each term (``TermCode`` in R's model.c): ``True`` (contrasts)
    when the term without the factor is empty or lies within a preceding term, else dummy
    columns for every level; without an intercept the first factor of the first term that has
    one is coded by dummies."""
    codes: list[dict[int, bool]] = []
    for t, term in enumerate(terms):
        codes.append(
            {
                v: not (set(term) - {v}) or any(set(term) - {v} <= set(p) for p in terms[:t])
                for v in term
                if v in categorical
            }
        )
    if not intercept:
        for code in codes:
            if code:
                code[next(iter(code))] = False
                break
    return codes


def r_names(
    model_spec: Any, atoms: Mapping[str, Atom], order: Mapping[str, int]
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """R's name of every column of formulaic's model matrix (see the module docstring) and the
    permutation of formulaic's columns into R's order.

    Within a term R writes the factors in the order they first appear in the formula
    (``order``: formulaic's text of each atom -> that rank), the first varying fastest.
    Where formulaic would code a factor otherwise than R (interactions without their
    margins, such as ``a:b`` or ``u + a:b:u``), the model is refused: R's design is
    rank-deficient there and lme4 drops columns, which hlm does not imitate."""
    names: list[str] = []
    perm: list[int] = []
    terms, categorical, intercept = [], set(), False
    for struct in model_spec.structure:
        exprs = tuple(sorted((f.expr for f in struct.term.factors if f.expr != "1"), key=lambda e: order[e]))
        if not exprs:
            intercept = True
        else:
            terms.append(tuple(order[e] for e in exprs))
        for e in exprs:
            if getattr(model_spec.encoder_state[e][0], "value", None) == "categorical":
                categorical.add(order[e])
    codes = iter(_r_codes(terms, categorical, intercept))
    for struct in model_spec.structure:
        start = len(perm)
        if not [f for f in struct.term.factors if f.expr != "1"]:
            names.append("(Intercept)")
            perm.append(start)
            continue
        code = next(codes)
        scoped = struct.scoped_terms
        if len(scoped) != 1 or any(
            code[order[sf.factor.expr]] != sf.reduced for sf in scoped[0].factors if order[sf.factor.expr] in code
        ):
            label = ":".join(
                atoms[e].rname for e in sorted((f.expr for f in struct.term.factors), key=lambda e: order[e])
            )
            raise FormulaError(
                f"the term '{label}' is an interaction without its margins, which R codes "
                "differently (rank-deficient); write the main effects too, e.g. a*b for a:b"
            )
        levels: list[list[str]] = []
        for sf in scoped[0].factors:
            atom = atoms[sf.factor.expr]
            kind, state = model_spec.encoder_state[sf.factor.expr]
            if getattr(kind, "value", kind) == "categorical":
                lv = list(state["categories"])
                levels.append([atom.rname + level_label(v) for v in (lv[1:] if sf.reduced else lv)])
            elif atom.kind == "poly":
                levels.append([f"{atom.rname}{j}" for j in range(1, atom.degree + 1)])
            else:
                levels.append([atom.rname])
        # formulaic's columns: the product over its factor order, first factor fastest
        combos = [c[::-1] for c in itertools.product(*(range(len(x)) for x in reversed(levels)))]
        if len(combos) != len(struct.columns):
            raise FormulaError(f"cannot name the columns of the term '{':'.join(x[0] for x in levels if x)}'")
        rank = sorted(range(len(levels)), key=lambda i: order[scoped[0].factors[i].factor.expr])
        r_combos = sorted(range(len(combos)), key=lambda k: [combos[k][i] for i in reversed(rank)])
        for k in r_combos:
            names.append(":".join(levels[i][combos[k][i]] for i in rank))
            perm.append(start + k)
    return tuple(names), tuple(perm)


@dataclass(frozen=True)
class FixedDesign:
    """A frozen fixed part: ``formula`` (formulaic text) over ``alias`` (safe name -> column)."""

    syntax: str
    formula: str
    alias: tuple[tuple[str, str], ...]
    offsets: tuple[str, ...]
    names: tuple[str, ...]
    model_spec: Any = field(repr=False, compare=False)
    order: tuple[int, ...] | None = None  # formulaic's columns -> R's order
    random: tuple[FixedDesign | None, ...] = ()  # lme4: each random term's columns (None: intercept only)
    text: frozenset[str] | None = None  # formulaic's data columns read as text at fit (None: not recorded)

    @property
    def has_offset(self) -> bool:
        return bool(self.offsets)

    def frame(self, data: pd.DataFrame) -> pd.DataFrame:
        """The columns under their safe names; integers as floats (R's numbers are doubles),
        booleans as factors (R's logical terms)."""
        if not self.alias:
            return data
        out = {}
        for safe, col in self.alias:
            values = data[col]
            kind = values.dtype.kind
            out[safe] = values.astype(float) if kind in "iu" else pd.Categorical(values) if kind == "b" else values
        return pd.DataFrame(out, index=data.index)

    def matrix(self, data: pd.DataFrame) -> np.ndarray:
        """X for ``data`` (complete rows), columns in the order of :attr:`names`."""
        frame = self.frame(data)
        self.check_kinds(frame)
        try:
            mm = self.model_spec.get_model_matrix(frame, context=CONTEXT if self.alias else None)
        except _ERRORS as exc:
            raise DataError(
                f"cannot build the fixed-effects columns for the new rows: {str(exc).splitlines()[0]}"
            ) from None
        X = np.asarray(mm.to_numpy(dtype=float))
        return X if self.order is None else X[:, self.order]

    def check_kinds(self, frame: pd.DataFrame) -> None:
        """Refuse new rows (under the safe names, as :meth:`frame` gives them) whose column is
        numbers where the fit read text (a factor), or text where it read numbers: formulaic
        would code them otherwise, silently (R's ``.checkMFClasses``)."""
        if self.text is None:
            return
        for var in sorted(self.model_spec.variables_by_source.get("data", ())):
            if var in frame.columns and (frame[var].dtype.kind not in "iufb") != (var in self.text):
                was, now = ("text (a factor)", "numeric") if var in self.text else ("numeric", "text")
                raise DataError(
                    f"column '{dict(self.alias).get(var, var)}' is {now} in the new data but was {was} in the fit"
                )

    def offset(self, data: pd.DataFrame) -> np.ndarray:
        """The sum of the offsets for ``data`` (zeros without an offset)."""
        total = np.zeros(len(data))
        if self.offsets:
            env = _numeric_env(self.alias, data)
            for code in self.offsets:
                total += _evaluate(code, env, self.alias, "offset()")
        return total


def _numeric_env(alias: tuple[tuple[str, str], ...], data: pd.DataFrame) -> dict[str, np.ndarray]:
    """The numeric (and boolean) columns under their safe names, as floats."""
    return {safe: data[col].to_numpy(dtype=float) for safe, col in alias if data[col].dtype.kind in "iufb"}


def _evaluate(code: str, env: dict[str, np.ndarray], alias: tuple[tuple[str, str], ...], what: str) -> np.ndarray:
    try:
        return evaluate(code, env)
    except NameError as exc:
        col = dict(alias).get(getattr(exc, "name", ""), "?")
        raise FormulaError(f"column '{col}' is not numeric; {what} needs numbers") from None


def freeze_states(rf: RFormula, data: pd.DataFrame) -> dict[int, tuple]:
    """The fit-time state of every stateful atom, from the rows of ``data`` (R's poly and scale)."""
    states: dict[int, tuple] = {}
    env: dict[str, np.ndarray] | None = None
    for i, atom in enumerate(rf.atoms):
        if not atom.stateful:
            continue
        if env is None:
            env = _numeric_env(rf.alias, data)
        x = _evaluate(atom.code, env, rf.alias, atom.rname)
        states[i] = poly_state(x, atom.degree) if atom.kind == "poly" else scale_state(x, atom.center, atom.scale)
    return states


def atom_map(rf: RFormula, states: Mapping[int, tuple]) -> tuple[dict[str, Atom], dict[str, int]]:
    """formulaic's text of each (frozen) atom -> the atom, and -> its rank in the formula."""
    exprs = [_atom_expr(atom.formulaic(states.get(i))) for i, atom in enumerate(rf.atoms)]
    return dict(zip(exprs, rf.atoms)), {e: i for i, e in enumerate(exprs)}


def design_of(
    spec: ModelSpec,
    rf: RFormula | None,
    states: Mapping[int, tuple],
    model_spec: Any,
    names: tuple[str, ...] | None = None,
) -> FixedDesign:
    """The :class:`FixedDesign` of a fixed part whose formulaic ``model_spec`` is built."""
    if rf is None:
        return FixedDesign(spec.syntax, spec.fixed, (), (), names or (), model_spec)
    try:
        names, order = r_names(model_spec, *atom_map(rf, states))
    except KeyError:  # formulaic wrote a factor otherwise than alone: never guess a name
        raise FormulaError(f"cannot name the columns of '{rf.text}'") from None
    return FixedDesign(
        "lme4",
        rf.formula(dict(states)),
        rf.alias,
        rf.offsets,
        names,
        model_spec,
        None if order == tuple(range(len(order))) else order,
    )


def random_rformulas(spec: ModelSpec) -> tuple[RFormula, ...] | None:
    """Each random term's columns read with R's semantics (lme4 syntax), or None (Stata)."""
    if spec.syntax != "lme4":
        return None
    out = tuple(translate(term.rhs) for term in spec.random)
    if any(rf.offsets for rf in out):
        raise FormulaError("offset() belongs in the fixed part, not in a random term")
    return out


def build_design(spec: ModelSpec, rf: RFormula, data: pd.DataFrame) -> tuple[np.ndarray, FixedDesign]:
    """The columns of an lme4 right-hand side on the rows of ``data`` (complete rows), frozen."""
    states = freeze_states(rf, data)
    shell = FixedDesign("lme4", rf.formula(states), rf.alias, rf.offsets, (), None)
    frame = shell.frame(data)
    try:
        mm = model_matrix(shell.formula, frame, context=CONTEXT, na_action="raise", output="pandas")
    except _ERRORS as exc:
        raise FormulaError(f"cannot build '{rf.text}': {str(exc).splitlines()[0]}") from None
    design = replace(design_of(spec, rf, states, mm.model_spec), text=text_columns(mm.model_spec, frame))
    X = np.asarray(mm.to_numpy(dtype=float))
    return (X if design.order is None else X[:, design.order]), design


def build_fixed(spec: ModelSpec, rf: RFormula | None, data: pd.DataFrame) -> tuple[np.ndarray, FixedDesign]:
    """X of the rows of ``data`` (complete rows) and the frozen design; ``rf``: the fixed part
    read with R's semantics (:func:`rformula`), None for Stata syntax."""
    if rf is None:
        try:
            mm = model_matrix(spec.fixed, data, na_action="raise", output="pandas")
        except _ERRORS as exc:
            raise FormulaError(f"cannot build the fixed part '{spec.fixed}': {str(exc).splitlines()[0]}") from None
        names = tuple(fixed_name(c, spec.syntax) for c in mm.columns)
        design = replace(design_of(spec, None, {}, mm.model_spec, names), text=text_columns(mm.model_spec, data))
        return np.asarray(mm.to_numpy(dtype=float)), design
    return build_design(spec, rf, data)


def text_columns(model_spec: Any, frame: pd.DataFrame) -> frozenset[str]:
    """The columns of ``frame`` that formulaic's ``model_spec`` reads and that are not numbers."""
    used = model_spec.variables_by_source.get("data", ())
    return frozenset(v for v in used if v in frame.columns and frame[v].dtype.kind not in "iufb")


OFFSET_COLUMN = "(offset)"
"""The column an ``offset=`` array is stored under in the fitted frame."""


def with_offset(spec: ModelSpec, data: Any, offset: Any) -> tuple[ModelSpec, Any]:
    """lme4's ``offset=`` argument as an ``offset()`` term: a column name, or an array with one
    value per row (in-memory data only; stored as the column :data:`OFFSET_COLUMN`)."""
    if offset is None:
        return spec, data
    if spec.syntax != "lme4":
        raise OptionError("offset= applies to lme4 formulas; Stata syntax has no offset in mixed")
    if isinstance(offset, str):
        column = offset
    else:
        from hlm.data.source import to_pandas

        if choose_backend(data) != "memory":
            raise OptionError(
                "offset= as an array needs in-memory data; for files and SQL name a column: offset='column'"
            )
        values = np.asarray(offset, dtype=float).ravel()
        frame = to_pandas(data)
        if len(values) != len(frame):
            raise DataError(f"offset= has {len(values)} values but the data has {len(frame)} rows")
        data, column = frame.assign(**{OFFSET_COLUMN: values}), OFFSET_COLUMN
    term = f"offset({deparse(Name(column))})"
    return replace(spec, fixed=f"{spec.fixed} + {term}"), data


_LEVEL = re.compile(r"\[T\.(.*?)\]")


def fixed_name(name: str, syntax: str) -> str:
    """formulaic column name -> lme4 (``sxMale``) or Stata (``_cons``, ``2.arm``) style (random
    slopes and Stata syntax; lme4 fixed parts are named by :mod:`hlm.design`)."""
    if syntax == "stata":
        return stata_column_name(name)
    if name == "Intercept":
        return "(Intercept)"
    return _LEVEL.sub(lambda m: m.group(1), name)


def pool_name(name: str, syntax: str) -> str:
    """A random-effect column's name: ``(Intercept)`` in both syntaxes (the pool's marker of
    the intercept), other columns as the fixed part names them."""
    return "(Intercept)" if name == "Intercept" else fixed_name(name, syntax)
