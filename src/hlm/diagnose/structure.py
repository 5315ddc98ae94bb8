"""Structure checks the fitter runs before fitting: level order, implicit nesting,
identifiability.  Pure functions of a pandas DataFrame and column names.

Definitions (all on the rows where none of the involved columns is missing):

* Reading levels ``l1, ..., lk`` the Stata way (``|| l1: || l2: ...``) or the lme4 way
  (``(1|l1/l2/...)``), level j groups the rows by the interaction ``l1:...:lj``.  A level
  *subdivides* when that interaction has more groups than the one before it.
* Raw variable a is *nested* in b when each a id occurs with exactly one b id; *strictly*
  when b is not also nested in a (otherwise they are the same partition).
* The *tree order* of variables is outermost first: a topological order of strict raw
  nesting (a nested variable comes after its parent, so a chain runs from the fewest
  groups to the most).  Variables the data cannot order -- the same partition, or ids
  that cross, as within-parent ids (school 1..5 in every district) do -- keep the order
  the user listed them in, read in the direction the user evidently used: if the pairs
  the data can order are mostly listed inner first, the listing is read backwards.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from hlm.diagnose.keys import Codes, Factor, as_factor, codes_of, cumulative_groups, subdivision_defects
from hlm.diagnose.messages import reordered_message, reversed_order_message
from hlm.errors import NestingError, StructureWarning

Syntax = Literal["stata", "lme4"]


def level_groups(frame: pd.DataFrame, levels: Sequence[str]) -> list[int]:
    """Groups at each level when each is read within the levels listed before it
    (Stata ``|| l1: || l2:`` and lme4 ``(1|l1/l2)`` alike): level j counts the distinct
    combinations of ``levels[:j+1]``."""
    levels = list(levels)
    if not levels:
        return []
    return cumulative_groups(codes_of(frame, levels), levels)


def tree_order(codes: Codes, variables: Sequence[str]) -> list[str]:
    """The tree order of ``variables`` (module docstring): strict raw nesting decides;
    ties keep the listing, read backwards when the listing is mostly inner-first."""
    k = len(variables)
    stats = {(i, j): codes.pair(variables[i], variables[j]) for i in range(k) for j in range(i + 1, k)}
    # outer[i][j]: variable j is strictly outer to variable i (i nested in j, not the reverse)
    outer = np.zeros((k, k), dtype=bool)
    for (i, j), s in stats.items():
        if s.inner_nested and not s.outer_nested:
            outer[j, i] = True
        elif s.outer_nested and not s.inner_nested:
            outer[i, j] = True
    concordant = sum(outer[j, i] for i in range(k) for j in range(i + 1, k))  # listed outer first
    discordant = sum(outer[i, j] for i in range(k) for j in range(i + 1, k))
    priority = list(range(k))[::-1] if discordant > concordant else list(range(k))
    placed: list[int] = []
    left = set(range(k))
    while left:
        ready = [i for i in left if not any(outer[i, j] for j in left)]
        nxt = min(ready, key=priority.index)
        placed.append(nxt)
        left.remove(nxt)
    return [variables[i] for i in placed]


def _corrected_order(frame: pd.DataFrame, levels: Sequence[str]) -> list[str] | None:
    levels = list(levels)
    if len(levels) < 2 or len(set(levels)) != len(levels):
        return None
    codes = codes_of(frame, levels)
    if codes.nobs == 0:
        return None
    given = subdivision_defects(cumulative_groups(codes, levels))
    if not given:
        return None  # every level subdivides: a valid reading, never flagged
    order = tree_order(codes, levels)
    if order == levels:
        return None
    counts = cumulative_groups(codes, order)
    if counts[0] < 2:
        return None  # a constant variable is not an outer level; the order is not the problem
    # defects that no order can remove: a variable with the same partition as one before it
    inherent = [j for j in subdivision_defects(counts) if any(codes.pair(order[i], order[j]).same for i in range(j))]
    if set(subdivision_defects(counts)) - set(inherent) or len(inherent) >= len(given):
        return None
    return order


def stata_level_order(frame: pd.DataFrame, levels: Sequence[str]) -> list[str] | None:
    """The corrected Stata level order (outermost first), or None when ``levels`` is fine.

    ``levels`` is the order of ``|| l1: || l2: ...``; Stata reads each level's ids within
    all levels listed before it.  The order is *wrong* when some listed level does not
    subdivide the levels before it -- its variable is constant within their groups, so it
    is an outer level listed inside an inner one (the seed's
    ``|| student_id: || teach_id: || school_id: || dist_id:`` gives every level 40,000
    groups, as many as student_id).  Then the correction is the tree order of the raw
    variables (module docstring); it is returned only if it differs from ``levels``, its
    outermost level has at least two groups and every level subdivides, except levels
    that define the same partition as an earlier variable (no order can fix those; see
    :func:`same_partition`).

    An order in which every level subdivides is never flagged.  In particular ids that
    are unique only within their parent (school 1..5 in every district) are read
    correctly when listed outermost first; listed backwards they form a valid (if
    unintended) hierarchy of crossed labels that the data cannot tell from the intended
    one, and nothing is flagged.
    """
    return _corrected_order(frame, levels)


def lme4_nesting_order(frame: pd.DataFrame, path: Sequence[str]) -> list[str] | None:
    """The corrected path of an lme4 nested term ``(1|a/b/c)`` (``a`` outermost), or None.

    ``(1|a/b/c)`` is ``(1|a) + (1|a:b) + (1|a:b:c)``: the same reading as Stata's
    ``|| a: || b: || c:``, so the rule is that of :func:`stata_level_order`;
    ``(1|student_id/teach_id/school_id/dist_id)`` on the seed's data gives
    ``[dist_id, school_id, teach_id, student_id]``."""
    return _corrected_order(frame, path)


def check_level_order(
    frame: pd.DataFrame,
    levels: Sequence[str],
    *,
    syntax: Syntax = "stata",
    reorder: bool = False,
    option: str = "reorder=True",
) -> list[str]:
    """The level order to fit: ``levels`` when it is fine; the corrected order with a
    :class:`StructureWarning` when it is wrong and ``reorder``; else a
    :class:`NestingError` naming the right order (``option`` is how the caller spells
    reordering, e.g. ``--reorder`` on the command line)."""
    corrected = _corrected_order(frame, levels)
    if corrected is None:
        return list(levels)
    if not reorder:
        raise NestingError(reversed_order_message(frame, levels, corrected, syntax=syntax, option=option))
    warnings.warn(reordered_message(levels, corrected, syntax=syntax), StructureWarning, stacklevel=2)
    return corrected


def implicit_nesting(frame: pd.DataFrame, factors: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs (outer, inner) of crossed factors ``(1|outer) + (1|inner)`` whose ids look
    unique only within the outer groups -- the user probably meant ``(1|outer/inner)``.

    A pair, outer listed before inner, is returned when (see :class:`~hlm.diagnose.keys.PairStats`):

    1. neither is nested in the other: some inner id occurs in several outer groups
       (nested ids need no fix, (1|a) + (1|b) is then (1|a/b)) and some outer id occurs
       with several inner ids;
    2. the (outer, inner) cells are replicated: at least half hold two or more rows.
       Without replication the nested reading's cell effect is the residual, and a
       genuine cross with one row per cell (Penicillin: every plate sees every sample
       once) is the usual design -- not flagged;
    3. the cells follow the within-parent numbering pattern (at least 90% of cells):
       the inner id sets of the outer groups form a chain under inclusion, as with ids
       1..n_d in each group d or a full cross.  Random incomplete crosses are not flagged.

    A full cross with replicated cells (Pastes: casks a, b, c in each of 10 batches, two
    rows each) is flagged: from the data alone it cannot be told from a genuinely crossed
    design with replicates (lme4's Machines), so the message says "if ... only unique
    within ...".  The data cannot tell which factor is outer in a full cross either; the
    one listed first is taken as outer.
    """
    factors = list(dict.fromkeys(factors))
    if len(factors) < 2:
        return []
    codes = codes_of(frame, factors)
    if codes.nobs == 0:
        return []
    return [(a, b) for i, a in enumerate(factors) for b in factors[i + 1 :] if codes.pair(a, b).implicit]


def same_partition(frame: pd.DataFrame, factors: Sequence[str | Sequence[str]]) -> list[tuple[Factor, Factor]]:
    """Pairs of factors (columns, or tuples of columns for interactions) that group the
    rows identically -- their variance components cannot be told apart.  Pairs are in
    listing order; factors are returned as given (lists become tuples)."""
    items = list(dict.fromkeys(as_factor(f) for f in factors))
    if len(items) < 2:
        return []
    codes = codes_of(frame, items)
    if codes.nobs == 0:
        return []
    return [(a, b) for i, a in enumerate(items) for b in items[i + 1 :] if codes.pair(a, b).same]


def singleton_levels(frame: pd.DataFrame, factors: Sequence[str | Sequence[str]]) -> list[Factor]:
    """Factors (columns or tuples of columns) where every group holds exactly one row:
    their random intercept is confounded with the residual."""
    items = list(dict.fromkeys(as_factor(f) for f in factors))
    if not items:
        return []
    codes = codes_of(frame, items)
    if codes.nobs == 0:
        return []
    return [f for f in items if codes.key(f).n == codes.nobs]
