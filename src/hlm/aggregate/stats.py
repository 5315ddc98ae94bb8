"""The sufficient statistics every Gaussian model here is fitted from.

With K = [X y] (k = p + 1 columns) and the pool of random-effect columns Z (z columns):

* global ``ktk = K'K`` and the row count;
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

import numpy as np
from numpy.dtypes import StringDType


@dataclass(frozen=True)
class FactorStats:
    """Per-group statistics of one grouping factor."""

    name: str
    columns: tuple[str, ...]
    keys: tuple[np.ndarray, ...]  # per column: its value at each level (levels sorted as R sorts)
    counts: np.ndarray  # observations per group
    ztz: np.ndarray | None = None  # (G, z, z) over the pool
    ztk: np.ndarray | None = None  # (G, z, k)

    @property
    def nlevels(self) -> int:
        return len(self.counts)

    @cached_property
    def labels(self) -> np.ndarray:
        """Level labels as lme4 writes them (``a:A`` for an interaction), built on demand
        with numpy's variable-width strings (several times faster than Python objects)."""
        text = StringDType()
        labels = np.asarray(self.keys[0]).astype(text)
        for part in self.keys[1:]:
            labels = np.strings.add(np.strings.add(labels, ":"), np.asarray(part).astype(text))
        return labels.astype(object)


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

    @property
    def nested(self) -> bool:
        return self.chain is not None

    @property
    def p(self) -> int:
        return len(self.xnames)


def nesting_chain(codes: list[np.ndarray], nlevels: list[int], first: list[np.ndarray] | None = None,
                  columns: list[frozenset[str]] | None = None) -> tuple[tuple[int, ...], tuple[np.ndarray, ...]] | None:
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
            rows = np.empty(nlevels[inner], dtype=np.int64)
            rows[ci[::-1]] = np.arange(len(ci) - 1, -1, -1)
        else:
            rows = first[inner]
        parent = co[rows]
        by_construction = columns is not None and columns[inner] >= columns[outer]
        if not by_construction and not np.array_equal(parent[ci], co):
            return None
        parents.append(parent)
    return tuple(order), tuple(parents)
