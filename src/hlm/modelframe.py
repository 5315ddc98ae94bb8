"""The in-memory model frame: rows -> y, X, the Z column pool and factor codes.

Rows with a missing value in any used column are dropped (and counted).  The fixed-effect
columns come from :mod:`hlm.design`, whose frozen :class:`~hlm.design.FixedDesign` is kept
so ``predict(newdata)`` can rebuild X for new rows; y is the response minus the offset.
A categorical column's levels are those of the rows used, in the order its source declares
(:mod:`hlm.data.source`); the first is the reference.  Grouping factors are coded ``0..G-1`` in
sorted order of their values, interactions by the lexicographic order of their components.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from formulaic import model_matrix
from formulaic.errors import FormulaicError

from hlm.data.codes import dense_codes, determines, first_rows
from hlm.data.layout import Layout, as_layout, build_layout, column_pool
from hlm.data.source import check_columns, file_kind, to_pandas, warn_lost_categories
from hlm.design import build_design, build_fixed, pool_name
from hlm.errors import DataError, FormulaError
from hlm.lmm.checks_data import check_factor_levels, frame_factor_levels
from hlm.spec.factor_variables import check_factor_values
from hlm.spec.terms import ModelSpec
from hlm.weights import ARRAY_NAME, as_array, validate


@dataclass(frozen=True)
class GroupingFactor:
    """A grouping factor coded on the rows."""

    name: str
    columns: tuple[str, ...]  # in the order labels are written (lme4's name order)
    codes: np.ndarray  # int64 per row, 0..nlevels-1
    keys: tuple[np.ndarray, ...]  # per column: its value at each level, levels sorted
    first: np.ndarray  # the first row of each level


@dataclass(frozen=True)
class ModelFrame:
    """y, X, the Z column pool and grouping factors for the rows used."""

    spec: ModelSpec
    y: np.ndarray
    X: np.ndarray
    xnames: tuple[str, ...]
    x_model_spec: Any  # the frozen FixedDesign, kept for predict(newdata)
    pool: tuple[str, ...]  # distinct random-effect column names
    Z: np.ndarray  # (n, len(pool))
    term_columns: tuple[tuple[int, ...], ...]  # per random term: indices into the pool
    factors: tuple[GroupingFactor, ...]  # one per distinct grouping key
    term_factor: tuple[int, ...]  # per random term: index into factors
    ndropped: int
    w: np.ndarray | None = None  # precision weights of the rows used (:mod:`hlm.weights`); None: unweighted
    weights: str | None = None  # their column, or ARRAY_NAME
    zero_weights: int = 0  # rows dropped for a zero weight (not counted in ndropped)


def used_columns(spec: ModelSpec) -> list[str]:
    """Data columns the model needs (response, fixed, random slopes, grouping)."""
    return list(build_layout(spec).columns)


def _matrix(rhs: str, frame: pd.DataFrame, what: str) -> Any:
    try:
        return model_matrix(rhs, frame, na_action="raise", output="pandas")
    except (FormulaicError, SyntaxError, ValueError, TypeError) as exc:
        raise FormulaError(f"cannot build {what} '{rhs}': {str(exc).splitlines()[0]}") from None


def _implies(
    a: str, b: str, coded: dict[str, tuple[np.ndarray, int, np.ndarray]], implied: dict[str, set[str]]
) -> bool:
    """Whether column ``a`` determines column ``b`` (memoised, and used transitively)."""
    known = implied.setdefault(a, set())
    if b in known or any(b in implied.get(mid, ()) for mid in list(known)):
        known.add(b)
        return True
    codes, _, first = coded[a]
    if determines(codes, first, coded[b][0]):
        known.add(b)
        return True
    return False


def _code_factor(
    frame: pd.DataFrame,
    name: str,
    columns: tuple[str, ...],
    coded: dict[str, tuple[np.ndarray, int, np.ndarray]],
    implied: dict[str, set[str]],
    backwards: np.ndarray,
) -> GroupingFactor:
    """Code the interaction of ``columns``, levels in lexicographic order of the columns.

    ``coded`` caches each column's codes and first rows across factors; ``implied[a]``
    holds the columns known to be constant within each level of column ``a``.  When one
    column determines all the others (nested ids that are unique on their own) its codes
    are reused and only the G levels are re-sorted; otherwise the codes are combined
    column by column."""
    for col in columns:
        if col not in coded:
            c, G = dense_codes(frame[col].to_numpy())
            coded[col] = (c, G, first_rows(c, G, backwards))
    finest = max(columns, key=lambda c: coded[c][1])
    if all(col == finest or _implies(finest, col, coded, implied) for col in columns):
        codes, G, first = coded[finest]
        if columns[0] != finest:  # lexicographic order of the level keys
            order = np.lexsort([coded[c][0][first] for c in reversed(columns)])
            rank = np.empty(G, dtype=np.int64)
            rank[order] = np.arange(G)
            codes, first = rank[codes], first[order]
    else:
        codes, G, first = coded[columns[0]]
        for col in columns[1:]:
            other, G_other, _ = coded[col]
            if not determines(codes, first, other):
                codes, G = dense_codes(codes * G_other + other)
                first = first_rows(codes, G, backwards)
    keys = tuple(frame[c].iloc[first].to_numpy() for c in columns)  # only the G first rows converted
    return GroupingFactor(name, columns, codes, keys, first)


def _check_finite(M: np.ndarray, names: Sequence[str]) -> None:
    """A model column computed to +-inf or NaN (log(0), sqrt(-1)) is an error naming it."""
    bad = ~np.isfinite(M).all(axis=0)
    if bad.any():
        raise DataError(
            f"column '{names[int(np.argmax(bad))]}' has infinite values or NaN (such as log or sqrt of a "
            "negative number); remove or recode them"
        )


def _complete_rows(frame: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """Rows with a value in every model column; refuses complex and infinite values."""
    keep = np.ones(len(frame), dtype=bool)
    for col in cols:
        values = frame[col]
        if values.dtype.kind == "c":
            raise DataError(f"column '{col}' holds complex numbers; a model needs real values")
        if values.dtype.kind == "f" and np.isinf(values.to_numpy()).any():
            raise DataError(f"column '{col}' has infinite values; remove or recode them")
        if values.dtype.kind not in "iub":
            keep &= values.notna().to_numpy()
    return keep


def _random_columns(
    layout: Layout, frame: pd.DataFrame
) -> tuple[list[str], np.ndarray, list[tuple[int, ...]], tuple[Any, ...] | None]:
    """The random-effect column pool Z (names unique across terms), each term's columns in it and,
    for lme4's syntax, each term's R design (None for a plain intercept; no tuple for other syntaxes)."""
    spec, zrfs = layout.spec, layout.random
    named: list[list[tuple[str, np.ndarray]]] = []
    zdesigns: list[Any] = []
    for t, term in enumerate(spec.random):
        zdesigns.append(None)
        if not term.columns:  # (1 | g): the intercept column needs no formula
            names, columns = ["(Intercept)"], [None]
        elif zrfs is not None:  # lme4: R's semantics and names, as the fixed part
            Zt, zdesigns[-1] = build_design(spec, zrfs[t], frame)
            names, columns = list(zdesigns[-1].names), list(Zt.T)
        else:
            mz = _matrix(term.rhs, frame, f"the random term for '{term.name}'")
            names = [pool_name(c, spec.syntax) for c in mz.columns]
            columns = [mz.iloc[:, j].to_numpy(dtype=float) for j in range(len(names))]
        named.append(
            [(n, np.ones(len(frame)) if c is None else np.asarray(c, dtype=float)) for n, c in zip(names, columns)]
        )
    pool, zcols, term_columns = column_pool(named)
    Z = np.column_stack(zcols) if zcols else np.empty((len(frame), 0))
    return pool, Z, list(term_columns), None if zrfs is None else tuple(zdesigns)


def _grouping_factors(layout: Layout, frame: pd.DataFrame) -> tuple[GroupingFactor, ...]:
    """The layout's grouping factors coded on the rows of ``frame``."""
    coded: dict[str, tuple[np.ndarray, int, np.ndarray]] = {}
    implied: dict[str, set[str]] = {}
    built: dict[int, GroupingFactor] = {}
    backwards = np.arange(len(frame) - 1, -1, -1)
    for f in layout.outer_first():  # nesting facts of outer factors are reused by inner ones
        fac = layout.factors[f]
        built[f] = _code_factor(frame, fac.name, fac.columns, coded, implied, backwards)
    return tuple(built[f] for f in range(len(layout.factors)))


def build_frame(model: ModelSpec | Layout, data: Any, weights: Any = None) -> ModelFrame:
    """Validate ``data`` against the model (its spec or its :class:`~hlm.data.layout.Layout`)
    and build the model frame.

    ``weights``: precision weights (:mod:`hlm.weights`), a column of ``data`` or one value
    per row; rows with a zero weight are dropped and counted apart from missing values."""
    layout = as_layout(model, weights)
    spec, cols, wname = layout.spec, list(layout.columns), layout.weights
    read = cols + [weights] if isinstance(weights, str) and weights not in cols else cols
    frame = to_pandas(data, read, value_labels=spec.syntax != "stata")
    if isinstance(data, (str, os.PathLike)) and file_kind(data) == "parquet":
        import pyarrow.parquet as pq

        warn_lost_categories(pq.read_schema(data), [c for c in cols[1:] if c not in spec.group_columns], data)
    check_columns(read, frame.columns)
    if len(frame) == 0:
        raise DataError("the data has no rows")
    w_raw = None if wname is None else frame[wname] if wname != ARRAY_NAME else as_array(weights, len(frame))
    y_raw = frame[spec.response]
    if not (pd.api.types.is_numeric_dtype(y_raw) or pd.api.types.is_bool_dtype(y_raw)):
        raise DataError(
            f"the response '{spec.response}' is not numeric ({y_raw.dtype}); convert it or pick a numeric column"
        )
    keep = _complete_rows(frame, cols)
    ndropped = int((~keep).sum())
    w, zero = None, 0
    if w_raw is not None and wname is not None:
        w_all = np.zeros(len(keep))
        w_all[keep] = validate(w_raw.loc[keep] if isinstance(w_raw, pd.Series) else w_raw[keep], wname)
        zero = int((keep & (w_all == 0)).sum())
        keep &= w_all != 0
        w = w_all[keep]
    if ndropped or zero:
        frame = frame.loc[keep]
    if len(frame) == 0:
        raise DataError(
            "every row has a missing value in a model column"
            + (" or a zero weight" if zero else "")
            + "; nothing is left to fit"
        )
    frame = frame.reset_index(drop=True)
    for col in frame.columns:  # the levels of the rows used, in the source's order (as the SQL backends)
        if isinstance(frame[col].dtype, pd.CategoricalDtype):
            frame[col] = frame[col].cat.remove_unused_categories()
    if spec.syntax == "stata":
        check_factor_values(spec, frame)
    check_factor_levels(frame_factor_levels(frame, list(layout.variables)), len(frame))

    X, design = build_fixed(spec, layout.fixed, frame)
    y = y_raw.to_numpy()[keep].astype(float) if ndropped or zero else y_raw.to_numpy().astype(float)
    if design.has_offset:
        y = y - design.offset(frame)

    pool, Z, term_columns, zdesigns = _random_columns(layout, frame)
    _check_finite(X, design.names)
    _check_finite(Z, pool)

    factors = _grouping_factors(layout, frame)
    design = replace(design, random=zdesigns) if zdesigns is not None else design
    return ModelFrame(
        spec,
        y,
        X,
        design.names,
        design,
        tuple(pool),
        Z,
        tuple(term_columns),
        factors,
        layout.term_factor,
        ndropped,
        w,
        wname,
        zero,
    )
