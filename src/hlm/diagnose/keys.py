"""Integer codes of grouping factors and the statistics of one (outer, inner) pairing.

A grouping factor is a column name or a tuple of column names (the interaction of the
columns, e.g. ``("dist_id", "school_id")`` for schools read within districts).  Every
factor is turned into codes 0..n-1 over the rows where none of the involved columns is
missing (listwise deletion, as a fit does); interactions combine codes arithmetically and
re-code, so nothing is ever a Python loop over rows or groups.

The statistics of a pairing (:class:`PairStats`) are the basis of every diagnosis:

* ``inner`` is *nested* in ``outer`` when each inner id occurs with exactly one outer id,
  i.e. the number of distinct (outer, inner) cells equals the number of inner ids;
* ``inner`` is *implicitly nested* in ``outer`` (ids unique only within their parent, like
  school 1..5 in every district) when neither is nested in the other, the cells are
  replicated (at least half of them hold two or more rows, so that a cell effect is not
  the residual) and the cells follow a within-parent numbering pattern (see
  :attr:`PairStats.within_pattern`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hlm.data.source import check_columns

Factor = str | tuple[str, ...]
"""A grouping factor: one column, or the interaction of several (outermost first)."""

#: fraction of cells that must fit the within-parent numbering pattern (see PairStats)
WITHIN_PATTERN_MIN = 0.9


def as_factor(factor: str | Sequence[str]) -> Factor:
    """A column name stays a string; a list or tuple of names becomes a tuple."""
    if isinstance(factor, str):
        return factor
    cols = tuple(factor)
    return cols[0] if len(cols) == 1 else cols


def factor_columns(factor: Factor) -> tuple[str, ...]:
    """The data columns of a factor."""
    return (factor,) if isinstance(factor, str) else tuple(factor)


def factor_name(factor: Factor) -> str:
    """Display name: ``school_id`` or ``dist_id:school_id`` (outermost first)."""
    return factor if isinstance(factor, str) else ":".join(factor)


@dataclass(frozen=True)
class Key:
    """Codes 0..n-1 of a factor on the complete rows."""

    codes: np.ndarray
    n: int


def _dense_limit(rows: int) -> int:
    return max(2 * rows, 1 << 24)


def _dense(values: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes of non-negative integers below ``size`` (in sorted order), and the values used."""
    present = np.zeros(size, dtype=bool)
    present[values] = True
    used = np.flatnonzero(present)
    remap = np.cumsum(present, dtype=np.int64)
    remap -= 1
    return remap[values], used


def encode(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Codes (-1 where missing) and labels of a column.  Integer ids (also integral floats)
    go through a presence table over their range -- O(rows) without hashing; other ids
    through pandas' hash factorization."""
    values = series.to_numpy() if series.dtype.kind in "iuf" else None
    if values is not None and values.dtype.kind in "iuf" and len(values):
        missing = np.isnan(values) if values.dtype.kind == "f" else None
        ok = values if missing is None else values[~missing]
        if len(ok) and (missing is None or np.array_equal(ok, np.floor(ok))) and np.isfinite(ok).all():
            lo, hi = ok.min(), ok.max()
            if int(hi) - int(lo) < _dense_limit(len(values)):
                shifted = np.asarray(ok - lo, dtype=np.int64)
                codes_ok, used = _dense(shifted, int(hi) - int(lo) + 1)
                labels = (used + lo).astype(values.dtype) if values.dtype.kind == "f" else used + int(lo)
                if missing is None:
                    return codes_ok, np.asarray(labels)
                codes = np.full(len(values), -1, dtype=np.int64)
                codes[~missing] = codes_ok
                return codes, np.asarray(labels)
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    return codes.astype(np.int64, copy=False), np.asarray(uniques, dtype=object)


def parent_map(outer: Key, inner: Key) -> np.ndarray | None:
    """For each inner group the one outer group it lies in, or None when some inner id
    occurs with several outer ids (a scatter and a gather, no hashing)."""
    head = min(len(inner.codes), 1 << 16)  # most crossings show in the first rows: cheap exit
    probe = np.empty(inner.n, dtype=np.int64)
    probe[inner.codes[:head]] = outer.codes[:head]
    if not np.array_equal(probe[inner.codes[:head]], outer.codes[:head]):
        return None
    parent = probe
    parent[inner.codes] = outer.codes
    return parent if np.array_equal(parent[inner.codes], outer.codes) else None


def combine(a: Key, b: Key) -> tuple[Key, np.ndarray]:
    """The interaction of two keys, and its distinct combined values ``a * b.n + b``.

    When one key is nested in the other the interaction is that key; otherwise a presence
    table when the product of the group counts is small, a hash factorization if not."""
    up = parent_map(a, b)
    if up is not None:  # b nested in a
        return b, up * b.n + np.arange(b.n)
    down = parent_map(b, a)
    if down is not None:  # a nested in b
        return a, np.arange(a.n) * b.n + down
    key = a.codes * b.n + b.codes
    size = a.n * b.n
    if size <= _dense_limit(len(key)):
        codes, values = _dense(key, size)
        return Key(codes, len(values)), values
    codes, values = pd.factorize(key)
    return Key(codes.astype(np.int64, copy=False), len(values)), np.asarray(values)


class Codes:
    """Cached codes of the columns of ``frame`` (and interactions of them) on the rows
    where none of ``columns`` is missing."""

    def __init__(self, frame: pd.DataFrame, columns: Iterable[str]):
        cols = list(dict.fromkeys(columns))
        raw: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        mask = np.ones(len(frame), dtype=bool)
        for col in cols:
            codes, labels = encode(frame[col])
            raw[col] = (codes, labels)
            mask &= codes >= 0
        self.nobs = int(mask.sum())
        self.dropped = len(frame) - self.nobs
        self._labels: dict[str, np.ndarray] = {}
        self._keys: dict[Factor, Key] = {}
        self._pairs: dict[tuple[Factor, Factor], PairStats] = {}
        self._combos: dict[tuple[Factor, Factor], tuple[Key, np.ndarray]] = {}
        for col, (codes, labels) in raw.items():
            if self.dropped:
                codes, used = _dense(codes[mask], len(labels))
                labels = labels[used]
            self._keys[col] = Key(codes, len(labels))
            self._labels[col] = labels

    def key(self, factor: Factor) -> Key:
        """Codes of a column or of an interaction of columns."""
        factor = as_factor(factor)
        if factor not in self._keys:
            cols = factor_columns(factor)
            self._keys[factor] = self._combined(as_factor(cols[:-1]), cols[-1])[0]
        return self._keys[factor]

    def _combined(self, outer: Factor, inner: Factor) -> tuple[Key, np.ndarray]:
        if (outer, inner) not in self._combos:
            self._combos[(outer, inner)] = combine(self.key(outer), self.key(inner))
        return self._combos[(outer, inner)]

    def label(self, column: str, code: int) -> object:
        """The original id of a column's code."""
        label = self._labels[column][code]
        return label.item() if isinstance(label, np.generic) else label

    def pair(self, outer: Factor, inner: Factor) -> PairStats:
        """Statistics of the pairing of two factors (cached)."""
        outer, inner = as_factor(outer), as_factor(inner)
        if (outer, inner) not in self._pairs:
            cells = self._combined(outer, inner)
            self._pairs[(outer, inner)] = pair_stats(self.key(outer), self.key(inner), cells)
        return self._pairs[(outer, inner)]


@dataclass(frozen=True)
class PairStats:
    """How the ids of an inner factor sit in the groups of an outer factor.

    Attributes
    ----------
    n_outer, n_inner : groups of each factor.
    cells : distinct (outer, inner) combinations = groups of the interaction.
    max_parents : the most outer groups any one inner id occurs in (1 when nested).
    busiest_inner : code of an inner id occurring in ``max_parents`` outer groups.
    replicated_share : share of (outer, inner) cells holding two or more rows.
    within_pattern : fraction of cells consistent with within-parent numbering: sort the
        inner ids by the number of outer groups they occur in (most first); an outer group
        with s distinct inner ids fits the pattern when they are the first s of that list
        (school ids 1..n_d in district d, or every id in every group).  Equivalently the
        sets of inner ids of the outer groups form a chain under inclusion.  Random
        incomplete crosses (each subject rated by a few random raters) score low.  NaN
        when one factor is nested in the other.
    """

    n_outer: int
    n_inner: int
    cells: int
    max_parents: int
    busiest_inner: int
    replicated_share: float
    within_pattern: float

    @property
    def inner_nested(self) -> bool:
        """Each inner id occurs with exactly one outer id."""
        return self.cells == self.n_inner

    @property
    def outer_nested(self) -> bool:
        """Each outer id occurs with exactly one inner id."""
        return self.cells == self.n_outer

    @property
    def same(self) -> bool:
        """Both factors define the same partition of the rows."""
        return self.inner_nested and self.outer_nested

    @property
    def subdivides(self) -> bool:
        """The inner factor splits at least one outer group."""
        return self.cells > self.n_outer

    @property
    def replicated(self) -> bool:
        """At least half of the (outer, inner) cells hold two or more rows."""
        return self.replicated_share >= 0.5

    @property
    def implicit(self) -> bool:
        """Inner ids look unique only within their outer group (see the module docstring)."""
        return (
            not self.inner_nested
            and not self.outer_nested
            and self.replicated
            and self.within_pattern >= WITHIN_PATTERN_MIN
        )


def pair_stats(outer: Key, inner: Key, cells: tuple[Key, np.ndarray] | None = None) -> PairStats:
    """The :class:`PairStats` of two keys over the same rows (``cells``: their
    :func:`combine`, when already known)."""
    if outer.n == 0 or inner.n == 0:
        return PairStats(outer.n, inner.n, 0, 0, 0, 0.0, float("nan"))
    cell_key, values = cells if cells is not None else combine(outer, inner)
    sizes = np.bincount(cell_key.codes, minlength=cell_key.n)
    cell_outer = values // inner.n
    cell_inner = values % inner.n
    per_inner = np.bincount(cell_inner, minlength=inner.n)
    busiest = int(np.argmax(per_inner))
    pattern = float("nan")
    if cell_key.n not in (outer.n, inner.n):  # neither nested: is it within-parent numbering?
        per_outer = np.bincount(cell_outer, minlength=outer.n)
        rank = np.empty(inner.n, dtype=np.int64)
        rank[np.argsort(-per_inner, kind="stable")] = np.arange(inner.n)
        pattern = float((rank[cell_inner] < per_outer[cell_outer]).mean())
    return PairStats(
        n_outer=outer.n,
        n_inner=inner.n,
        cells=cell_key.n,
        max_parents=int(per_inner[busiest]),
        busiest_inner=busiest,
        replicated_share=float(np.count_nonzero(sizes >= 2) / len(sizes)),
        within_pattern=pattern,
    )


def codes_of(frame: pd.DataFrame, factors: Sequence[Factor]) -> Codes:
    """The coded columns of ``factors`` (checked to exist in ``frame``)."""
    cols = [c for f in factors for c in factor_columns(as_factor(f))]
    check_columns(cols, frame.columns)
    return Codes(frame, cols)


def cumulative_groups(codes: Codes, levels: Sequence[str]) -> list[int]:
    """Groups of ``levels[:j+1]`` for each j: each level read within the ones before it."""
    return [codes.key(tuple(levels[: j + 1])).n for j in range(len(levels))]


def subdivision_defects(counts: Sequence[int]) -> list[int]:
    """Indexes of levels that do not subdivide the level before them."""
    return [j for j in range(1, len(counts)) if counts[j] <= counts[j - 1]]
