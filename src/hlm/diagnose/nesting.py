"""``nesting(data, variables)``: how grouping variables nest, as an immutable report.

For every pair of variables the report says whether one is nested in the other (each
child id occurs with exactly one parent id), whether they are the same grouping, whether
the child's ids are *implicitly* nested (they repeat across parents -- school 1 exists in
several districts -- so a school is only identified within its district), or crossed.
When the variables form a chain it gives the tree order, outermost first, and for each
level its groups when read within the levels above it.  See :mod:`hlm.diagnose.keys` for
the precise definitions; everything is computed from integer codes, O(rows) per pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import pandas as pd

from hlm.data.source import to_pandas
from hlm.diagnose.ambiguity import reversed_reading
from hlm.diagnose.keys import Codes
from hlm.diagnose.messages import lme4_term, stata_levels
from hlm.diagnose.structure import tree_order
from hlm.errors import DataError

Relation = Literal["same", "nested", "implicit", "crossed"]
IdStyle = Literal["unique", "within parent"]


@dataclass(frozen=True)
class PairRelation:
    """How two variables relate.  For ``nested`` and ``implicit`` pairs ``outer`` is the
    parent; for ``same`` and ``crossed`` pairs the two are in tree (else listing) order.

    ``cells`` is the number of distinct (outer, inner) combinations and ``max_parents``
    the most outer groups any one inner id occurs in (1 when nested)."""

    outer: str
    inner: str
    relation: Relation
    outer_groups: int
    inner_groups: int
    cells: int
    max_parents: int

    def describe(self) -> str:
        """One line in words."""
        if self.relation == "same":
            return f"{self.outer} = {self.inner}: the same {self.cells:,} groups"
        if self.relation == "nested":
            return f"{self.inner} in {self.outer}: nested, each {self.inner} id occurs in one {self.outer}"
        if self.relation == "implicit":
            return (
                f"{self.inner} in {self.outer}: implicitly nested, {self.inner} ids repeat across up to "
                f"{self.max_parents:,} {self.outer} groups, so they are unique only within {self.outer}"
            )
        return (
            f"{self.outer} x {self.inner}: crossed, {self.inner} ids occur in up to {self.max_parents:,} "
            f"{self.outer} groups ({self.cells:,} combinations)"
        )


@dataclass(frozen=True)
class LevelInfo:
    """One level of the tree: distinct ids, groups when read within the levels above it,
    and whether its ids are unique on their own or only within their parent."""

    variable: str
    groups: int
    within: int
    ids: IdStyle


@dataclass(frozen=True)
class NestingReport:
    """The nesting structure of grouping variables (see the module docstring).

    Attributes
    ----------
    variables : as given.
    nobs : rows used (none of the variables missing); ``dropped`` rows had a missing id.
    groups : distinct ids per variable, in the order of ``variables``.
    pairs : one :class:`PairRelation` per pair of variables.
    order : the tree order, outermost first, when the variables form a chain; else None.
    levels : per level of ``order``, a :class:`LevelInfo`; None without a chain.
    note : why the variables do not form a chain ("" when they do).
    ambiguity : when the chain's ids are numbered within their parents and it looks listed
        inner to outer, the two readings (:mod:`hlm.diagnose.ambiguity`); else "".
    """

    variables: tuple[str, ...]
    nobs: int
    dropped: int
    groups: tuple[int, ...]
    pairs: tuple[PairRelation, ...]
    order: tuple[str, ...] | None
    levels: tuple[LevelInfo, ...] | None
    note: str
    ambiguity: str = ""

    @property
    def ngroups(self) -> dict[str, int]:
        """Distinct ids per variable."""
        return dict(zip(self.variables, self.groups))

    @property
    def is_chain(self) -> bool:
        """Whether the variables form one nested chain."""
        return self.order is not None

    @property
    def implicitly_nested(self) -> tuple[str, ...]:
        """Variables whose ids are unique only within their parent: levels of the chain
        read within their parents, else the inner variables of implicitly nested pairs."""
        if self.levels is not None:
            return tuple(lev.variable for lev in self.levels if lev.ids == "within parent")
        return tuple(dict.fromkeys(p.inner for p in self.pairs if p.relation == "implicit"))

    def relation(self, a: str, b: str) -> PairRelation:
        """The relation of two variables (in either order)."""
        for p in self.pairs:
            if {p.outer, p.inner} == {a, b}:
                return p
        raise KeyError(f"no pair {a!r}, {b!r} in this report; it has {', '.join(self.variables)}")

    def is_nested(self, inner: str, outer: str) -> bool:
        """Whether each ``inner`` id occurs with exactly one ``outer`` id."""
        p = self.relation(inner, outer)
        return p.relation == "same" or (p.relation == "nested" and p.inner == inner)

    def summary(self) -> str:
        """The report as text."""
        lines = [
            f"Nesting of {len(self.variables)} grouping variable{'s' if len(self.variables) != 1 else ''} "
            f"in {self.nobs:,} observations"
            + (f" ({self.dropped:,} rows with a missing id left out)" if self.dropped else "")
        ]
        width = max(len(v) for v in self.variables)
        lines.append("")
        if self.levels is not None:
            lines.append(f"  {'level':<{width}}  {'ids':>10}  {'in parents':>10}  ids are")
            parents: list[str] = []
            for lev in self.levels:
                style = "unique" if lev.ids == "unique" else f"unique only within {':'.join(parents)}"
                lines.append(f"  {lev.variable:<{width}}  {lev.groups:>10,}  {lev.within:>10,}  {style}")
                parents.append(lev.variable)
            assert self.order is not None
            head = "Tree as listed (the order is ambiguous, see below)" if self.ambiguity else "Tree, outermost first"
            lines += [
                "",
                f"{head}: {' > '.join(self.order)}",
                f"  Stata: {stata_levels(self.order)}",
                f"  lme4:  {lme4_term(self.order)}",
            ]
            if self.ambiguity:
                lines.append(f"  Ambiguous order: {self.ambiguity}")
            elif self.implicitly_nested:
                lines.append(
                    "  (ids unique only within their parent cannot show which variable is outer: "
                    "such levels keep the order listed)"
                )
        else:
            lines.append(f"  {'variable':<{width}}  {'ids':>10}")
            lines += [f"  {v:<{width}}  {n:>10,}" for v, n in zip(self.variables, self.groups)]
            lines += ["", f"No single tree: {self.note}"]
        if self.pairs:
            lines += ["", "Pairs"] + [f"  {p.describe()}" for p in self.pairs]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_frame(self, *, table: Literal["pairs", "levels"] = "pairs") -> pd.DataFrame:
        """Tidy tables: ``pairs`` (outer, inner, relation, outer_groups, inner_groups,
        cells, max_parents) or ``levels`` (level, variable, groups, within, ids; empty
        without a chain)."""
        if table == "pairs":
            cols = ["outer", "inner", "relation", "outer_groups", "inner_groups", "cells", "max_parents"]
            return pd.DataFrame([asdict(p) for p in self.pairs], columns=cols)
        if table == "levels":
            rows = [{"level": i + 1, **asdict(lev)} for i, lev in enumerate(self.levels or ())]
            return pd.DataFrame(rows, columns=["level", "variable", "groups", "within", "ids"])
        raise ValueError(f"table must be 'pairs' or 'levels', not {table!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready)."""
        return {
            "variables": list(self.variables),
            "nobs": self.nobs,
            "dropped": self.dropped,
            "groups": self.ngroups,
            "order": None if self.order is None else list(self.order),
            "levels": None if self.levels is None else [asdict(lev) for lev in self.levels],
            "implicitly_nested": list(self.implicitly_nested),
            "pairs": [asdict(p) for p in self.pairs],
            "note": self.note,
            "ambiguity": self.ambiguity,
        }


def _pair(codes: Codes, a: str, b: str, rank: dict[str, int]) -> PairRelation:
    s = codes.pair(a, b)
    if s.same:
        return PairRelation(a, b, "same", s.n_outer, s.n_inner, s.cells, 1)
    if s.outer_nested:  # a nested in b: b is the parent
        return PairRelation(b, a, "nested", s.n_inner, s.n_outer, s.cells, 1)
    if s.inner_nested:
        return PairRelation(a, b, "nested", s.n_outer, s.n_inner, s.cells, 1)
    if rank[b] < rank[a]:
        a, b = b, a
        s = codes.pair(a, b)
    kind: Relation = "implicit" if s.implicit else "crossed"
    return PairRelation(a, b, kind, s.n_outer, s.n_inner, s.cells, s.max_parents)


def _chain(codes: Codes, order: list[str]) -> tuple[tuple[LevelInfo, ...] | None, str]:
    first = codes.key(order[0]).n
    levels = [LevelInfo(order[0], first, first, "unique")]
    for j in range(1, len(order)):
        parent, var = tuple(order[:j]), order[j]
        s = codes.pair(parent, var)
        above = ":".join(parent)
        if not s.subdivides:
            return None, (
                f"{var} does not split any group of {above} (each has one {var} id), so it adds no level: "
                f"it is the same grouping or an outer variable"
            )
        if s.inner_nested:
            style: IdStyle = "unique"
        elif s.implicit:
            style = "within parent"
        else:
            why = (
                "most combinations hold a single row"
                if not s.replicated
                else "the combinations do not follow a within-parent numbering"
            )
            return None, (
                f"{var} is crossed with {above}: its ids occur in up to {s.max_parents:,} of the "
                f"{s.n_outer:,} groups and {why}"
            )
        levels.append(LevelInfo(var, s.n_inner, s.cells, style))
    return tuple(levels), ""


def nesting(data: Any, variables: Sequence[str]) -> NestingReport:
    """Diagnose how ``variables`` nest in ``data`` (a pandas or polars DataFrame, a pyarrow
    Table or a path): see :class:`NestingReport`.  Rows with a missing id are left out.

    >>> nesting(df, ["dist_id", "school_id", "teach_id", "student_id"]).order  # doctest: +SKIP
    ('dist_id', 'school_id', 'teach_id', 'student_id')
    """
    if isinstance(variables, str):
        variables = [variables]
    variables = list(variables)
    if not variables:
        raise DataError("name at least one grouping variable")
    if not all(isinstance(v, str) for v in variables):
        raise DataError(f"grouping variables are named by strings, got {variables!r:.60}")
    if len(set(variables)) != len(variables):
        dup = next(v for v in variables if variables.count(v) > 1)
        raise DataError(f"variable '{dup}' is listed twice; list each grouping variable once")
    frame = to_pandas(data, variables)
    codes = Codes(frame, variables)
    if codes.nobs == 0:
        what = "the data has no rows" if len(frame) == 0 else f"every row has a missing {' or '.join(variables)}"
        raise DataError(f"no observations to diagnose: {what}")
    order = tree_order(codes, variables)
    rank = {v: i for i, v in enumerate(order)}
    pairs = tuple(_pair(codes, a, b, rank) for i, a in enumerate(variables) for b in variables[i + 1 :])
    levels, note = _chain(codes, order)
    ambiguity = reversed_reading(frame, order) if levels is not None and codes.dropped == 0 else None
    return NestingReport(
        variables=tuple(variables),
        nobs=codes.nobs,
        dropped=codes.dropped,
        groups=tuple(codes.key(v).n for v in variables),
        pairs=pairs,
        order=None if levels is None else tuple(order),
        levels=levels,
        note=note,
        ambiguity=ambiguity or "",
    )
