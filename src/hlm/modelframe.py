"""The in-memory model frame: rows -> y, X (formulaic), the Z column pool and factor codes.

Rows with a missing value in any used column are dropped (and counted).  The fixed-effect
columns come from formulaic; its frozen ``ModelSpec`` is kept so ``predict(newdata)`` can
rebuild X for new rows.  Grouping factors are coded ``0..G-1`` in sorted level order (R's
factor order), interactions by the lexicographic order of their components.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from formulaic import Formula, model_matrix
from formulaic.errors import FormulaicError

from hlm.errors import ColumnError, DataError, FormulaError
from hlm.source import check_columns, to_pandas
from hlm.spec.terms import ModelSpec

_LEVEL = re.compile(r"\[T\.(.*)\]")


def fixed_name(name: str, syntax: str) -> str:
    """formulaic column name -> lme4 (``sxMale``) or Stata (``_cons``) style."""
    if name == "Intercept":
        return "_cons" if syntax == "stata" else "(Intercept)"
    return _LEVEL.sub(lambda m: m.group(1), name) if syntax == "lme4" else name


def factor_key(group: tuple[str, ...]) -> frozenset[str]:
    """Identity of a grouping factor: the set of columns it interacts."""
    return frozenset(group)


@dataclass(frozen=True)
class GroupingFactor:
    """A grouping factor coded on the rows."""

    name: str
    columns: tuple[str, ...]  # in the order labels are written (lme4's name order)
    codes: np.ndarray  # int64 per row, 0..nlevels-1
    labels: np.ndarray  # object array of level labels, sorted


@dataclass(frozen=True)
class ModelFrame:
    """y, X, the Z column pool and grouping factors for the rows used."""

    spec: ModelSpec
    y: np.ndarray
    X: np.ndarray
    xnames: tuple[str, ...]
    x_model_spec: Any  # formulaic ModelSpec, kept for predict(newdata)
    pool: tuple[str, ...]  # distinct random-effect column names
    Z: np.ndarray  # (n, len(pool))
    term_columns: tuple[tuple[int, ...], ...]  # per random term: indices into the pool
    factors: tuple[GroupingFactor, ...]  # one per distinct grouping key
    term_factor: tuple[int, ...]  # per random term: index into factors
    ndropped: int


def used_columns(spec: ModelSpec) -> list[str]:
    """Data columns the model needs (response, fixed, random slopes, grouping)."""
    cols = [spec.response]
    try:
        cols += sorted(Formula(spec.fixed).required_variables)
        for term in spec.random:
            cols += sorted(Formula(term.rhs).required_variables)
    except (FormulaicError, SyntaxError, ValueError) as exc:
        raise FormulaError(f"cannot parse the fixed part '{spec.fixed}': {str(exc).splitlines()[0]}") from None
    cols += list(spec.group_columns)
    return list(dict.fromkeys(cols))


def _matrix(rhs: str, frame: pd.DataFrame, what: str):
    try:
        return model_matrix(rhs, frame, na_action="raise", output="pandas")
    except (FormulaicError, SyntaxError, ValueError, TypeError) as exc:
        raise FormulaError(f"cannot build {what} '{rhs}': {str(exc).splitlines()[0]}") from None


def _code_factor(frame: pd.DataFrame, name: str, columns: tuple[str, ...]) -> GroupingFactor:
    combined = None
    for col in columns:
        codes, uniques = pd.factorize(frame[col], sort=True)
        codes = codes.astype(np.int64)
        combined = codes if combined is None else combined * len(uniques) + codes
    codes, uniques = pd.factorize(combined, sort=True)
    first = np.zeros(len(uniques), dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)  # first row of each level
    parts = [frame[c].to_numpy()[first].astype(str) for c in columns]
    labels = parts[0].astype(object)
    for part in parts[1:]:
        labels = labels + ":" + part.astype(object)
    return GroupingFactor(name, columns, codes.astype(np.int64), labels)


def build_frame(spec: ModelSpec, data: Any) -> ModelFrame:
    """Validate ``data`` against ``spec`` and build the model frame."""
    cols = used_columns(spec)
    frame = to_pandas(data, cols)
    check_columns(cols, frame.columns)
    if len(frame) == 0:
        raise DataError("the data has no rows")
    y_raw = frame[spec.response]
    if not (pd.api.types.is_numeric_dtype(y_raw) or pd.api.types.is_bool_dtype(y_raw)):
        raise DataError(f"the response '{spec.response}' is not numeric ({y_raw.dtype}); convert it or pick a numeric column")
    numeric = frame.select_dtypes(include=[np.number])
    if numeric.shape[1] and np.isinf(numeric.to_numpy(dtype=float, na_value=np.nan)).any():
        bad = [c for c in numeric.columns if np.isinf(numeric[c].to_numpy(dtype=float, na_value=np.nan)).any()]
        raise DataError(f"column '{bad[0]}' has infinite values; remove or recode them")
    keep = frame.notna().all(axis=1).to_numpy()
    ndropped = int((~keep).sum())
    if ndropped:
        frame = frame.loc[keep]
    if len(frame) == 0:
        raise DataError("every row has a missing value in a model column; nothing is left to fit")
    frame = frame.reset_index(drop=True)

    mx = _matrix(spec.fixed, frame, "the fixed part")
    X = np.asarray(mx.to_numpy(dtype=float))
    xnames = tuple(fixed_name(c, spec.syntax) for c in mx.columns)
    y = y_raw.to_numpy()[keep].astype(float) if ndropped else y_raw.to_numpy().astype(float)

    pool: list[str] = []
    zcols: list[np.ndarray] = []
    term_columns: list[tuple[int, ...]] = []
    for term in spec.random:
        mz = _matrix(term.rhs, frame, f"the random term for '{term.name}'")
        idx = []
        for j, col in enumerate(mz.columns):
            zname = fixed_name(col, "lme4")
            if zname not in pool:
                pool.append(zname)
                zcols.append(np.asarray(mz.iloc[:, j].to_numpy(dtype=float)))
            idx.append(pool.index(zname))
        term_columns.append(tuple(idx))
    Z = np.column_stack(zcols) if zcols else np.empty((len(frame), 0))

    factors: list[GroupingFactor] = []
    keys: list[frozenset[str]] = []
    term_factor: list[int] = []
    for term in spec.random:
        key = factor_key(term.group)
        if key not in keys:
            keys.append(key)
            order = tuple(term.name.split(":")) if set(term.name.split(":")) == set(term.group) else term.group
            factors.append(_code_factor(frame, term.name, order))
        term_factor.append(keys.index(key))
    return ModelFrame(spec, y, X, xnames, mx.model_spec, tuple(pool), Z, tuple(term_columns),
                      tuple(factors), tuple(term_factor), ndropped)
