"""The sufficient statistics every Gaussian model here is fitted from.

With K = [X y] (k = p + 1 columns) and the pool of random-effect columns Z (z columns):

* global ``ktk = K'K`` and the row count;
* with precision weights w (lme4's ``weights=``; residual variance sigma^2 / w_i) every
  sum over rows is weighted (``K'WK``, ``Z_g'W_gZ_g``, ...): the fit is then the unweighted
  one of the rows scaled by sqrt(w_i), and ``log_weights = sum log w_i`` enters the
  deviance (:class:`hlm.lmm.objective.DevianceFunction`); counts stay row counts;
* per grouping factor f and group g: the count n_g and, where the core needs them, the
  within-group cross-products ``ztz[g] = Z_g'Z_g`` (z x z) and ``ztk[g] = Z_g'K_g`` (z x k);
* for nested factors (a chain, innermost first) the parent of every group;
* for crossed factors, the sparse cross blocks ``sum z z'`` over the rows of every pair of
  groups (g_i, g_j) that share rows.

These are GROUP BY aggregates: any backend (numpy, DuckDB, Spark) that computes them
feeds the same numerical core, which never sees a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from numpy.dtypes import StringDType

from hlm.data.codes import first_rows

INTERCEPT = "(Intercept)"
"""The name of the intercept column in the pool of random-effect columns (both syntaxes)."""


@dataclass(frozen=True)
class LeafClasses:
    """The innermost factor of a chain of random intercepts, its groups pooled by size.

    A leaf group g enters the nested recursion only through its count n_g and its sums
    S_g = 1'K_g (:mod:`hlm.lmm.nested`); with precision weights, through its weight sum
    W_g = 1'W_g1 and S_g = 1'W_gK_g, and the classes are by W_g.  Grouping the leaves by count c, what is needed
    is, per class, the number of groups and sum S_g S_g', and per parent group and class
    the number of children and the sum of their S_g -- exact, and O(parents x classes)
    instead of O(leaf groups).  Computed from the leaf's groups (:func:`hlm.lmm.nested.
    leaf_classes`) or directly by the SQL backends, which then never fetch the leaves."""

    counts: np.ndarray  # (m,) distinct leaf counts c (weight sums W_g with precision weights)
    ngroups: np.ndarray  # (m,) leaf groups per class
    sss: np.ndarray  # (m, k, k) sum of S_g S_g' per class
    children: np.ndarray  # (G_parent, m) children per parent and class
    sums: np.ndarray  # (G_parent, m, k) sum of S_g per parent and class

    def keep_columns(self, keep: np.ndarray) -> LeafClasses:
        """The classes restricted to the columns ``keep`` of K."""
        return LeafClasses(
            self.counts,
            self.ngroups,
            self.sss[:, keep][:, :, keep],
            self.children,
            np.ascontiguousarray(self.sums[:, :, keep]),
        )


@dataclass(frozen=True)
class FactorStats:
    """Per-group statistics of one grouping factor.  A *pooled* innermost factor (``pooled``
    set) carries no per-group arrays at all: ``keys`` is empty and ``counts``, ``ztz`` and
    ``ztk`` are None; only :class:`LeafClasses` describes it."""

    name: str
    columns: tuple[str, ...]
    keys: tuple[np.ndarray, ...]  # per column: its value at each level (levels sorted as R sorts)
    counts: np.ndarray | None  # observations per group
    ztz: np.ndarray | None = None  # (G, z, z) over the pool
    ztk: np.ndarray | None = None  # (G, z, k)
    pooled: LeafClasses | None = None

    @property
    def nlevels(self) -> int:
        if self.pooled is not None:
            return int(self.pooled.ngroups.sum())
        assert self.counts is not None  # only a pooled factor lacks its per-group arrays
        return len(self.counts)

    def size_range(self) -> tuple[int, float, int]:
        """Minimum, average and maximum observations per group."""
        if self.pooled is not None:
            c, g = self.pooled.counts, self.pooled.ngroups
            return int(c.min()), float(c @ g / g.sum()), int(c.max())
        assert self.counts is not None  # only a pooled factor lacks its per-group arrays
        return int(self.counts.min()), float(self.counts.mean()), int(self.counts.max())

    @cached_property
    def labels(self) -> pd.api.extensions.ExtensionArray:
        """Level labels as lme4 writes them (``a:A`` for an interaction), in level order: an
        Arrow-backed pandas string array (see :func:`text_dtype`), built on demand in Arrow."""
        parts = [_key_text(k) for k in self.keys]
        joined = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, pa.scalar(":", ARROW_TEXT))
        return pd.array(joined, dtype=text_dtype())


ARROW_TEXT = pa.large_string()  # the Arrow type of text columns (what pandas' "str" dtype holds)


def text_dtype() -> pd.StringDtype[Any]:
    """pandas' ``"str"`` dtype (Arrow-backed, NaN for missing; pandas >= 2.3), or the
    Arrow-backed ``"string"`` dtype on older pandas."""
    dtype = pd.api.types.pandas_dtype("str")
    return dtype if isinstance(dtype, pd.StringDtype) else pd.StringDtype("pyarrow")


def _key_text(values: np.ndarray) -> pa.Array:
    """One key column as text: integers and strings through Arrow, anything else (floats,
    bools, dates, mixed objects) as numpy's ``str`` of each value (``1.0``, ``True``)."""
    a = np.asarray(values)
    if a.dtype.kind in "iuOU":
        try:
            arr = pa.array(a)
        except (pa.ArrowException, OverflowError):  # mixed objects, huge ints
            arr = None
        if arr is not None and arr.null_count == 0:
            if pa.types.is_integer(arr.type) or pa.types.is_string(arr.type):
                return pc.cast(arr, ARROW_TEXT)
    return pa.array(a.astype(StringDType()).astype(object), type=ARROW_TEXT)


@dataclass(frozen=True)
class CrossBlock:
    """Rows shared by groups of factors i and j: pairs (gi, gj) with sum z z' over them."""

    i: int
    j: int
    gi: np.ndarray
    gj: np.ndarray
    zz: np.ndarray  # (npairs, z, z): sum over shared rows of z_row z_row'


@dataclass(frozen=True)
class Aggregates:
    """Everything the numerical core needs about the data."""

    nobs: int
    ndropped: int
    response: str
    xnames: tuple[str, ...]
    pool: tuple[str, ...]
    ktk: np.ndarray  # (k, k) cross-products of [X y]
    factors: tuple[FactorStats, ...]  # one per distinct grouping factor
    term_factor: tuple[int, ...]  # per random term of the spec: its factor
    term_columns: tuple[tuple[int, ...], ...]  # per random term: its columns in the pool
    chain: tuple[int, ...] | None  # nested factors, innermost first; None if crossed
    parents: tuple[np.ndarray, ...]  # along the chain: parent group of each group
    cross: tuple[CrossBlock, ...] = ()
    weights: str | None = None  # precision weights: the column (or "(weights)" for an array); None: unweighted
    log_weights: float = 0.0  # sum of log w over the rows used (lme4's ldW)
    zero_weights: int = 0  # rows dropped for a zero weight (as lme4 drops them)

    @property
    def nested(self) -> bool:
        return self.chain is not None

    @property
    def intercepts_only(self) -> bool:
        """Every random term is a scalar intercept (the pool is the intercept column alone)."""
        return self.pool == (INTERCEPT,)

    @property
    def p(self) -> int:
        return len(self.xnames)


def pooled_message(agg: Aggregates) -> str | None:
    """Why the groups of a factor pooled in the database (:class:`LeafClasses`) are not in
    memory, or None when no factor is pooled."""
    for fac in agg.factors:
        if fac.pooled is not None:
            return (
                f"the {fac.nlevels:,} groups of '{fac.name}' were pooled by size in the database when "
                "fitting and are not held in memory"
            )
    return None


def nesting_chain(
    codes: list[np.ndarray],
    nlevels: list[int],
    first: list[np.ndarray] | None = None,
    columns: list[frozenset[str]] | None = None,
) -> tuple[tuple[int, ...], tuple[np.ndarray, ...]] | None:
    """Order factors innermost first and return (chain, parents) if each is nested in the next.

    Factor a is nested in b when every group of a lies in exactly one group of b; the
    parent map is read off the first row of each group (``first``, computed if not given)
    and checked on all rows -- unless a interacts all of b's ``columns`` (then it holds by
    construction, as for ``(1|a/b)``).
    """
    order = sorted(range(len(codes)), key=lambda f: -nlevels[f])
    parents = []
    for inner, outer in zip(order, order[1:]):
        ci, co = codes[inner], codes[outer]
        if first is None:
            rows = first_rows(ci, nlevels[inner])
        else:
            rows = first[inner]
        parent = co[rows]
        by_construction = columns is not None and columns[inner] >= columns[outer]
        if not by_construction and not np.array_equal(parent[ci], co):
            return None
        parents.append(parent)
    return tuple(order), tuple(parents)
