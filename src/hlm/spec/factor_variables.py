"""Stata's factor-variable notation: expansion to formulaic terms and Stata's column names.

As Stata ([U] 11.4.3): ``i.a`` is a factor (base: the lowest level; ``ib2.a`` base 2,
``ib(first).a``; ``ibn.a`` no base, with ``noconstant``), ``c.x`` continuous; in ``a#b`` an
unprefixed variable is a factor, alone it is continuous; ``A#B`` is the interaction alone
and ``A##B`` every non-empty subset of {A, B} interacted, so ``c.x#c.x`` is x^2 and
``c.x##c.x`` is x and x^2.  Factor values must be nonnegative integers (or value-labelled
categories).  Columns are named as Stata names them: ``2.arm``, ``2.arm#c.x``, ``c.x#c.x``,
``_cons``; a value label as ``arm=high``.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hlm.errors import DataError, FormulaError

if TYPE_CHECKING:
    import pandas as pd

    from hlm.spec.terms import ModelSpec

_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FACTOR = re.compile(r"^(?:(?P<c>c)|i(?:b(?:(?P<bn>n)|(?P<num>\d+)|\((?P<paren>[^)]*)\))?)?)\.(?P<var>.*)$", re.I)


def check_var(token: str, text: str, pos: int) -> str:
    """``token`` if it is a Stata variable name, else a FormulaError pointing at ``pos``."""
    if not _VAR.match(token):
        raise FormulaError(f"'{token}' is not a Stata variable name", text, pos)
    return token


@dataclass(frozen=True)
class _Factor:
    """One variable of an interaction: continuous, or a factor with its base choice."""

    var: str
    continuous: bool
    base: str | None = None  # None: the lowest level; "none": ibn.; else a level value

    @property
    def formulaic(self) -> str:
        if self.base is None:
            return f"C({self.var})"
        if self.base == "none":
            return f"C({self.var}, spans_intercept=False)"
        return f"C({self.var}, contr.treatment(base={self.base}))"


Term = tuple[tuple[_Factor, ...], tuple[str, ...]]
"""One interaction: its factor variables and its continuous variables (repeated for powers)."""


def _factor(token: str, in_interaction: bool, text: str, pos: int) -> _Factor:
    """``x``, ``c.x``, ``i.x``, ``ib2.x``, ``ib(first).x``, ``ibn.x`` -> :class:`_Factor`."""
    m = _FACTOR.match(token)
    if m is None:  # no operator: a factor inside an interaction, continuous alone (Stata's rule)
        return _Factor(check_var(token, text, pos), continuous=not in_interaction)
    var = check_var(m.group("var"), text, pos)
    if m.group("c"):
        return _Factor(var, continuous=True)
    if m.group("bn"):
        return _Factor(var, False, "none")
    if m.group("num"):
        return _Factor(var, False, str(int(m.group("num"))))
    paren = m.group("paren")
    if paren is None or paren.lower() == "first":
        return _Factor(var, False)
    raise FormulaError(
        f"ib({paren}). is not supported; name the base level's value (ib2.{var}) or use ib(first).{var}", text, pos
    )


def _term(factors: tuple[_Factor, ...], text: str, pos: int) -> Term:
    """One ``#`` interaction -> (its factor variables, its continuous variables with repeats)."""
    fvs = tuple(f for f in factors if not f.continuous)
    if len({f.var for f in fvs}) < len(fvs):
        raise FormulaError("a factor variable cannot be interacted with itself", text, pos)
    return fvs, tuple(sorted(f.var for f in factors if f.continuous))


def term_formula(term: Term) -> str:
    """A term as formulaic: factors ``C(a)``, each continuous variable once with its power
    (``c.x#c.x`` -> ``I(x ** 2)``), joined by ``:``."""
    fvs, cont = term
    powers = [(v, cont.count(v)) for v in dict.fromkeys(cont)]
    parts = [f.formulaic for f in fvs] + [v if k == 1 else f"I({v} ** {k})" for v, k in powers]
    return ":".join(parts)


def expand(token: str, text: str, pos: int) -> list[Term]:
    """Stata's expansion of one token: ``A##B`` -> every non-empty subset of {A, B} as an
    interaction (``c.x##c.x`` -> x and x^2), ``A#B`` -> the interaction alone."""
    groups = token.split("##")
    if any(not g for g in groups) or any(not e for g in groups for e in g.split("#")):
        raise FormulaError(f"'{token}' is not a Stata variable list term", text, pos)
    interaction = "#" in token
    members = [tuple(_factor(e, interaction, text, pos) for e in g.split("#")) for g in groups]
    out = []
    for k in range(1, len(members) + 1):
        for subset in itertools.combinations(members, k):
            out.append(_term(tuple(f for g in subset for f in g), text, pos))
    return out


def fixed_terms(tokens: list[tuple[str, int]], noconstant: bool, text: str) -> list[str]:
    """The fixed part as formulaic terms, refusing what formulaic would code differently
    from Stata: ``i.a#i.b`` without both main effects (Stata codes cells against the base
    cell), a main effect ``i.x`` without a constant (Stata keeps the base out; write
    ``ibn.x``) and ``ibn.x`` with one."""
    terms: list[Term] = []
    where: list[int] = []
    for token, pos in tokens:
        for term in expand(token, text, pos):
            if term not in terms:
                terms.append(term)
                where.append(pos)
    present = set(terms)
    for (fvs, cont), pos in zip(terms, where):
        if len(fvs) > 1 and any((tuple(g for g in fvs if g != f), cont) not in present for f in fvs):
            names = "##".join(f"i.{f.var}" for f in fvs)
            raise FormulaError(f"an interaction of factor variables needs its main effects; write {names}", text, pos)
        for f in fvs if len(fvs) == 1 and not cont else ():  # a factor's main effect
            if noconstant and f.base != "none":
                raise FormulaError(
                    f"with noconstant, Stata keeps the base level of {f.var} out of the model; "
                    f"write ibn.{f.var} for every level, or keep the constant",
                    text,
                    pos,
                )
            if not noconstant and f.base == "none":
                raise FormulaError(f"ibn.{f.var} (no base level) needs noconstant", text, pos)
    return [term_formula(t) for t in terms]


_PART = re.compile(
    r"(?P<fv>C\((?P<var>\w+)[^\[]*\)\[(?:T\.)?(?P<level>.*?)\])(?=:|$)|"
    r"(?P<pow>I\((?P<pvar>\w+) \*\* (?P<k>\d+)\))(?=:|$)|(?P<plain>[^:]+)(?=:|$)"
)


def _level_label(level: str, var: str) -> str:
    """Stata's label of a factor level: ``2.arm`` for a number, ``arm=high`` for a value label."""
    try:
        value = float(level)
    except ValueError:
        return f"{var}={level}"
    return f"{int(value)}.{var}" if value.is_integer() else f"{level}.{var}"


def stata_column_name(name: str) -> str:
    """A formulaic column name of a Stata model -> Stata's: ``C(arm)[T.2]`` -> ``2.arm``,
    ``C(a)[1]:x`` -> ``1.a#c.x``, ``I(x ** 2)`` -> ``c.x#c.x``, ``Intercept`` -> ``_cons``."""
    if name == "Intercept":
        return "_cons"
    parts = [m for m in _PART.finditer(name) if m.group()]
    if "".join(m.group() for m in parts) != name.replace(":", ""):
        return name  # not a name this module wrote
    single = len(parts) == 1
    out = []
    for m in parts:
        if m.group("fv"):
            out.append(_level_label(m.group("level"), m.group("var")))
        elif m.group("pow"):
            out.append("#".join([f"c.{m.group('pvar')}"] * int(m.group("k"))))
        else:
            out.append(m.group("plain") if single else f"c.{m.group('plain')}")
    return "#".join(out)


def check_factor_values(spec: ModelSpec, frame: pd.DataFrame) -> None:
    """Stata's rule for factor variables: nonnegative integers (or value-labelled categories).
    A continuous column written as ``i.x`` would otherwise become one dummy per distinct value."""
    rhs = " ".join([spec.fixed] + [t.rhs for t in spec.random])
    for var in dict.fromkeys(re.findall(r"C\((\w+)", rhs)):
        if var not in frame.columns or frame[var].dtype.kind not in "fiu":
            continue
        values = frame[var].to_numpy(dtype=float)
        if (values < 0).any() or (values != np.round(values)).any():
            raise DataError(
                f"factor variable {var} has negative or noninteger values (Stata's rule); use c.{var} "
                "for a continuous effect, or recode it"
            )
