"""The model's layout over the columns: built once from a :class:`~hlm.spec.terms.ModelSpec`
(and the weights' role), then evaluated by a backend (numpy: :mod:`hlm.modelframe`; SQL:
:mod:`hlm.aggregate.sql.plan`).

A :class:`Layout` says which column is the response, how the fixed part and each random
term read (R's semantics for lme4 syntax), which columns are read at all, the grouping
factors -- one per distinct set of grouping columns, in first-appearance order, each with its
columns in label order (lme4's ``a:b`` names) -- which factor each random term groups by,
and the precision-weights column.  Nothing here looks at the rows: the data-dependent parts
(level codes, the random-column pool's names for categorical slopes) are the backend's, by
the rules written here once (:func:`column_pool`, :meth:`Layout.nested_chain`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from formulaic import Formula
from formulaic.errors import FormulaicError

from hlm.data.codes import factor_key
from hlm.design import random_rformulas, rformula
from hlm.errors import FormulaError
from hlm.spec.rformula import RFormula
from hlm.spec.terms import ModelSpec
from hlm.weights import weights_name

T = TypeVar("T")


@dataclass(frozen=True)
class Factor:
    """A grouping factor: its display name, its columns in label order and their positions
    in :attr:`Layout.group_columns`."""

    name: str
    columns: tuple[str, ...]
    keys: tuple[int, ...]


@dataclass(frozen=True)
class Layout:
    """One model's roles over the columns (see the module docstring)."""

    spec: ModelSpec
    fixed: RFormula | None  # the fixed part read with R's semantics (lme4), None for Stata syntax
    random: tuple[RFormula, ...] | None  # each random term's columns, likewise
    variables: tuple[str, ...]  # data columns of the fixed part and the random slopes
    factors: tuple[Factor, ...]
    term_factor: tuple[int, ...]  # per random term: index into factors
    weights: str | None = None  # the precision-weights column (:func:`hlm.weights.weights_name`)

    @property
    def response(self) -> str:
        return self.spec.response

    @property
    def group_columns(self) -> tuple[str, ...]:
        """The columns of every grouping factor, in first-use order."""
        return self.spec.group_columns

    @property
    def columns(self) -> tuple[str, ...]:
        """Data columns the model reads (response, fixed, random slopes, grouping)."""
        return tuple(dict.fromkeys([self.response, *self.variables, *self.group_columns]))

    @property
    def offsets(self) -> tuple[str, ...]:
        """The R code of each ``offset()`` of the fixed part."""
        return self.fixed.offsets if self.fixed is not None else ()

    def outer_first(self) -> list[int]:
        """The factors by their number of columns, fewest first (outer factors before the
        factors nested in them, whose nesting facts can then be reused)."""
        return sorted(range(len(self.factors)), key=lambda f: len(self.factors[f].columns))

    def nested_chain(self) -> tuple[list[int], str] | None:
        """The factors innermost first and the form of their labels, when the factors are
        slash-nested: ``(1|a/b/c)``, whose labels lme4 writes innermost first (``c:b:a``:
        each factor's key columns end with the next outer one's, form ``"suffix"``), or
        ``(1|a) + (1|a:b) + (1|a:b:c)`` (they begin with them, form ``"prefix"``); else None.

        Such a chain is nested by construction: the innermost factor's groups give every
        outer factor's groups (:mod:`hlm.aggregate.sql.chain`)."""
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

    def minmax_columns(self) -> list[int]:
        """Grouping columns whose MIN/MAX per group decide nesting (pairs neither a subset of the other)."""
        need: set[int] = set()
        sets = [set(f.keys) for f in self.factors]
        for a, sa in enumerate(sets):
            for b, sb in enumerate(sets):
                if a != b and not (sa <= sb or sb <= sa):
                    need |= sb - sa
        return sorted(need)

    def factor_sets(self) -> list[tuple[int, ...]]:
        """Column sets of the grouping factors."""
        return list(dict.fromkeys(tuple(sorted(f.keys)) for f in self.factors))

    def pair_sets(self) -> list[tuple[int, ...]]:
        """Column sets of every pair of factors (crossed factors' shared rows)."""
        sets = [set(f.keys) for f in self.factors]
        return list(dict.fromkeys(tuple(sorted(a | b)) for a, b in itertools.combinations(sets, 2)))


def _variables(spec: ModelSpec, rf: RFormula | None, zrfs: Sequence[RFormula] | None) -> tuple[str, ...]:
    """Data columns of the fixed part and the random slopes."""
    cols: list[str] = []
    try:
        cols += list(rf.columns) if rf is not None else sorted(Formula(spec.fixed).required_variables)
        for t, term in enumerate(spec.random):
            cols += list(zrfs[t].columns) if zrfs is not None else sorted(Formula(term.rhs).required_variables)
    except (FormulaicError, SyntaxError, ValueError) as exc:
        raise FormulaError(f"cannot parse the fixed part '{spec.fixed}': {str(exc).splitlines()[0]}") from None
    return tuple(cols)


def _factors(spec: ModelSpec) -> tuple[tuple[Factor, ...], tuple[int, ...]]:
    """One grouping factor per distinct set of grouping columns (first-appearance order),
    its columns in the order of the term's label, and each random term's factor."""
    group_columns = spec.group_columns
    factors: list[Factor] = []
    keys: list[frozenset[str]] = []
    term_factor = []
    for term in spec.random:
        fkey = factor_key(term.group)
        if fkey not in keys:
            keys.append(fkey)
            order = tuple(term.name.split(":")) if set(term.name.split(":")) == set(term.group) else term.group
            factors.append(Factor(term.name, order, tuple(group_columns.index(c) for c in order)))
        term_factor.append(keys.index(fkey))
    return tuple(factors), tuple(term_factor)


def build_layout(spec: ModelSpec, weights: Any = None) -> Layout:
    """The layout of ``spec``; ``weights``: the precision-weights argument (a column name,
    one value per row, or None)."""
    try:
        rf, zrfs = rformula(spec), random_rformulas(spec)
    except (FormulaicError, SyntaxError, ValueError) as exc:
        raise FormulaError(f"cannot parse the fixed part '{spec.fixed}': {str(exc).splitlines()[0]}") from None
    factors, term_factor = _factors(spec)
    return Layout(spec, rf, zrfs, _variables(spec, rf, zrfs), factors, term_factor, weights_name(weights))


def as_layout(model: ModelSpec | Layout, weights: Any = None) -> Layout:
    """``model`` itself when it is a layout, else its layout (:func:`build_layout`)."""
    return model if isinstance(model, Layout) else build_layout(model, weights)


def column_pool(terms: Iterable[Sequence[tuple[str, T]]]) -> tuple[list[str], list[T], tuple[tuple[int, ...], ...]]:
    """The random-effect column pool from each term's (name, column) pairs: the distinct names in
    first-appearance order with the first column of each, and each term's indices into the pool
    (terms sharing a name, such as the intercepts of several groupings, share its column)."""
    pool: list[str] = []
    columns: list[T] = []
    term_columns: list[tuple[int, ...]] = []
    for term in terms:
        idx = []
        for name, column in term:
            if name not in pool:
                pool.append(name)
                columns.append(column)
            idx.append(pool.index(name))
        term_columns.append(tuple(idx))
    return pool, columns, tuple(term_columns)
