"""Structure diagnosis of grouping variables, before (and without) fitting.

* :func:`nesting` -- an immutable :class:`NestingReport` of how variables nest
  (``hlm nesting DATA VARS...`` on the command line).
* Checks the fitter runs (pure functions of a pandas DataFrame and column names):
  :func:`stata_level_order`, :func:`lme4_nesting_order`, :func:`check_level_order`,
  :func:`implicit_nesting`, :func:`same_partition`, :func:`singleton_levels`,
  :func:`level_groups`; and the one-line messages for each problem.
"""

from hlm.diagnose.keys import Factor, PairStats
from hlm.diagnose.messages import (
    implicit_nesting_fix,
    implicit_nesting_message,
    reordered_message,
    reversed_order_message,
    same_partition_message,
    singleton_message,
)
from hlm.diagnose.nesting import LevelInfo, NestingReport, PairRelation, nesting
from hlm.diagnose.structure import (
    check_level_order,
    implicit_nesting,
    level_groups,
    lme4_nesting_order,
    same_partition,
    singleton_levels,
    stata_level_order,
)

__all__ = [
    "Factor",
    "LevelInfo",
    "NestingReport",
    "PairRelation",
    "PairStats",
    "check_level_order",
    "implicit_nesting",
    "implicit_nesting_fix",
    "implicit_nesting_message",
    "level_groups",
    "lme4_nesting_order",
    "nesting",
    "reordered_message",
    "reversed_order_message",
    "same_partition",
    "same_partition_message",
    "singleton_levels",
    "singleton_message",
    "stata_level_order",
]
