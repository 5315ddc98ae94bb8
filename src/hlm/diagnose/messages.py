"""One-line messages for the structure problems of :mod:`hlm.diagnose.structure`: each
names the problem with the numbers behind it and the fix, in the user's syntax."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import pandas as pd

from hlm.diagnose.keys import (
    Factor,
    as_factor,
    codes_of,
    cumulative_groups,
    factor_columns,
    factor_name,
    subdivision_defects,
)

Syntax = Literal["stata", "lme4"]


def stata_levels(levels: Sequence[str]) -> str:
    """``|| a: || b:`` for a list of levels."""
    return " ".join(f"|| {lev}:" for lev in levels)


def lme4_term(factor: Factor | Sequence[str]) -> str:
    """``(1|a/b)`` for a path, ``(1|a)`` for one column."""
    cols = factor_columns(as_factor(factor))
    return f"(1|{'/'.join(cols)})"


def _term(factor: Factor, syntax: Syntax) -> str:
    cols = factor_columns(factor)
    if syntax == "stata":
        return f"`|| {cols[-1]}:`"
    return f"(1|{':'.join(cols)})"


def reversed_order_message(
    frame: pd.DataFrame,
    levels: Sequence[str],
    corrected: Sequence[str],
    *,
    syntax: Syntax = "stata",
    option: str = "reorder=True",
) -> str:
    """Why ``levels`` is in the wrong order and the corrected order, e.g. "levels are
    listed inner to outer: every level has 40,000 groups, as many as student_id. Stata
    lists levels outermost first: `|| dist_id: || school_id: || teach_id: || student_id:`
    (or pass reorder=True)"."""
    levels, corrected = list(levels), list(corrected)
    counts = cumulative_groups(codes_of(frame, levels), levels)
    backwards = corrected == levels[::-1]
    if len(set(counts)) == 1:
        what = f"every level has {counts[0]:,} groups, as many as {levels[0]}"
    else:
        j = subdivision_defects(counts)[0]
        within = ":".join(levels[:j])
        what = (
            f"{levels[j]} adds no groups when read within {within} ({counts[j]:,} either way), "
            f"so it is an outer level listed inside an inner one"
        )
    fix = f" (or pass {option})" if option else ""
    if syntax == "stata":
        head = "levels are listed inner to outer" if backwards else "levels are not listed outermost first"
        return f"{head}: {what}. Stata lists levels outermost first: `{stata_levels(corrected)}`{fix}"
    head = "inner to outer" if backwards else "not outermost first"
    return (
        f"the grouping factors of {lme4_term(levels)} are listed {head}: {what}. "
        f"lme4 lists a nested path outermost first: {lme4_term(corrected)}{fix}"
    )


def reordered_message(levels: Sequence[str], corrected: Sequence[str], *, syntax: Syntax = "stata") -> str:
    """What reordering did, for the warning of ``reorder=True``."""
    if syntax == "stata":
        return f"levels reordered outermost first: `{stata_levels(corrected)}` (given `{stata_levels(levels)}`)"
    return f"nested factors reordered outermost first: {lme4_term(corrected)} (given {lme4_term(levels)})"


def _components(pairs: Sequence[tuple[str, str]], order: Sequence[str]) -> list[list[str]]:
    """Connected groups of factors linked by pairs, each in listing order."""
    parent = {f: f for p in pairs for f in p}

    def root(f: str) -> str:
        while parent[f] != f:
            f = parent[f]
        return f

    for a, b in pairs:
        parent[root(b)] = root(a)
    groups: dict[str, list[str]] = {}
    for f in sorted(parent, key=order.index):
        groups.setdefault(root(f), []).append(f)
    return list(groups.values())


def implicit_nesting_fix(pairs: Sequence[tuple[str, str]], factors: Sequence[str]) -> str:
    """The nested terms to write instead of the crossed ones: ``(1|a/b/c)`` for factors
    that are all implicitly nested in one another, else ``(1|a) + (1|a:b)`` per pair."""
    order = list(dict.fromkeys([*factors, *(f for p in pairs for f in p)]))
    flagged = set(pairs)
    terms: list[str] = []
    for comp in _components(pairs, order):
        if all((a, b) in flagged for i, a in enumerate(comp) for b in comp[i + 1 :]):
            terms.append(lme4_term(comp))
        else:
            inner = {b for _, b in pairs}
            kept = [f"(1|{f})" for f in comp if f not in inner]
            terms.append(" + ".join(kept + [f"(1|{a}:{b})" for a, b in pairs if a in comp]))
    return " + ".join(terms)


def implicit_nesting_message(
    frame: pd.DataFrame, pairs: Sequence[tuple[str, str]], factors: Sequence[str] | None = None
) -> str:
    """Warning text for :func:`~hlm.diagnose.structure.implicit_nesting`, e.g. "school ids
    repeat across district groups (school 1 occurs in 30 of 30): the crossed terms
    (1|district) + (1|school) treat each school id as one unit everywhere; if school ids are
    only unique within district, write (1|district/school)".  A full cross (every outer
    group has every inner id, as Pastes' casks a, b, c in every batch) is what a crossed
    design with replicates looks like too, and the message says both readings."""
    pairs = list(pairs)
    if not pairs:
        return ""
    factors = list(factors) if factors is not None else list(dict.fromkeys(f for p in pairs for f in p))
    outer, inner = pairs[0]
    codes = codes_of(frame, [outer, inner])
    s = codes.pair(outer, inner)
    label = codes.label(inner, s.busiest_inner)
    crossed = " + ".join(f"(1|{f})" for f in dict.fromkeys(f for p in pairs for f in p))
    more = f" (and {len(pairs) - 1} more such pair{'s' if len(pairs) > 2 else ''})" if len(pairs) > 1 else ""
    fix = f"if {inner} ids are only unique within {outer}, write {implicit_nesting_fix(pairs, factors)}"
    if s.cells == s.n_outer * s.n_inner:  # a full cross: the data cannot tell crossed from nested
        return (
            f"{inner} ids repeat across {outer} groups (every {outer} has the same {s.n_inner:,} {inner} ids){more}: "
            f"the crossed terms {crossed} treat each {inner} id as one unit everywhere, which is right if every "
            f"{inner} is measured in every {outer} (then consider (1|{outer}:{inner}) for the replicated cells); {fix}"
        )
    return (
        f"{inner} ids repeat across {outer} groups ({inner} {label!r} occurs in {s.max_parents:,} of "
        f"{s.n_outer:,}){more}: the crossed terms {crossed} treat each {inner} id as one unit everywhere; {fix}"
    )


def same_partition_message(
    frame: pd.DataFrame, pairs: Sequence[tuple[Factor, Factor]], *, syntax: Syntax = "lme4"
) -> str:
    """Error text for :func:`~hlm.diagnose.structure.same_partition`."""
    pairs = list(pairs)
    if not pairs:
        return ""
    a, b = pairs[0]
    n = codes_of(frame, [a]).key(a).n
    more = f" (and {len(pairs) - 1} more such pair{'s' if len(pairs) > 2 else ''})" if len(pairs) > 1 else ""
    return (
        f"{factor_name(a)} and {factor_name(b)} define the same {n:,} groups{more}, so their variances "
        f"cannot be told apart; drop one of {_term(as_factor(a), syntax)} and {_term(as_factor(b), syntax)}"
    )


def singleton_message(
    frame: pd.DataFrame | None, factors: Sequence[Factor], *, syntax: Syntax = "lme4", ngroups: int | None = None
) -> str:
    """Error text for :func:`~hlm.diagnose.structure.singleton_levels`; the first factor's
    group count comes from ``frame`` unless ``ngroups`` gives it."""
    factors = [as_factor(f) for f in factors]
    if not factors:
        return ""
    f = factors[0]
    drop = " and ".join(_term(x, syntax) for x in factors)
    if len(factors) == 1:
        if ngroups is not None:
            n = ngroups
        else:
            assert frame is not None, "singleton_message needs the frame or the group count"
            n = codes_of(frame, [f]).key(f).n
        who = f"every {factor_name(f)} group has exactly one observation ({n:,} groups)"
    else:
        who = f"every group of {', '.join(factor_name(x) for x in factors)} has exactly one observation"
    return (
        f"{who}, so "
        f"{'its variance' if len(factors) == 1 else 'their variances'} cannot be told apart from the "
        f"residual variance; drop {drop}"
    )
