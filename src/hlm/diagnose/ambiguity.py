"""Levels whose ids are numbered within their parent, where the data cannot tell the
listed order from its reverse.

With ids unique only within the parent (student 1..20 in every teacher, teacher 1..8 in
every school, ...), any listing of the levels is a valid hierarchy: reading them within
their predecessors always subdivides.  So the seed's ``|| student_id: || teach_id: ||
school_id: || dist_id:`` fits, as 20 "student_id" groups of 4,000 rows at the top.  The
one hint left is the count of distinct ids of each column on its own: within-parent ids
count the children of the largest parent, while the outermost level's ids count all its
groups.  When a level listed later has more distinct ids than the level listed first, the
listing looks inner to outer; as that can also happen in a correctly listed design (few
outer groups with many children each), this is a warning naming both readings, never an
error.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from hlm.diagnose.messages import lme4_term, stata_levels


def _groups(keys: pd.DataFrame, order: Sequence[str]) -> list[int]:
    """Groups of every prefix of ``order`` (each level read within its predecessors)."""
    return [len(keys[list(order[: j + 1])].drop_duplicates()) for j in range(len(order))]


def reversed_reading(
    keys: pd.DataFrame, order: Sequence[str], *, syntax: str = "stata", groups: Sequence[int] | None = None
) -> str | None:
    """A warning when ``order`` (levels as listed, read outermost first) has within-parent
    ids and a later level has more distinct ids than the first; else None.  ``keys``: the
    id columns of the rows, or their distinct combinations; ``groups``: the groups of every
    prefix of ``order`` when the caller knows them (a fit's factors), else counted here."""
    order = list(order)
    if len(order) < 2:
        return None
    distinct = {c: int(keys[c].nunique()) for c in order}
    later = max(order[1:], key=lambda c: distinct[c])
    if distinct[later] <= distinct[order[0]]:
        return None
    groups = list(groups) if groups is not None else _groups(keys, order)
    if all(distinct[c] == g for c, g in zip(order, groups)):
        return None  # every id unique on its own: the order is decided from the data elsewhere
    rev = order[::-1]
    listed = " > ".join(f"{c} ({g:,})" for c, g in zip(order, groups))
    reverse = " > ".join(f"{c} ({g:,})" for c, g in zip(rev, _groups(keys, rev)))
    spell = stata_levels(rev) if syntax == "stata" else lme4_term(rev)
    return (
        f"the ids of {', '.join(order[1:])} repeat across their parents, so the data cannot tell the order of the "
        f"levels: as listed, outermost first, the tree is {listed} groups; read the other way it is {reverse}. "
        f"{later} has more distinct ids ({distinct[later]:,}) than the outermost level {order[0]} "
        f"({distinct[order[0]]:,}), as when levels are listed inner to outer: if {rev[0]} is the outermost level, "
        f"write {spell}; ids unique across the data set (e.g. simulate --ids global) let hlm check the order"
    )
