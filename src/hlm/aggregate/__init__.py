"""Aggregation backends: one pass over the rows -> :class:`Aggregates`."""

from hlm.aggregate.stats import Aggregates, CrossBlock, FactorStats, nesting_chain

__all__ = ["Aggregates", "CrossBlock", "FactorStats", "nesting_chain"]
