"""Precision (observation) weights, as lme4's ``lmer(..., weights = w)``.

Row i has residual variance sigma^2 / w_i: a row with weight 2 is measured twice as
precisely (e.g. the mean of two replicates), the estimates follow from the rows scaled by
sqrt(w_i), and the deviance carries lme4's -sum log w_i.  These are NOT sampling
(survey, inverse-probability) weights -- those say how many population units a row stands
for and need other estimators (``pweights=``, a separate feature).  Only relative precision
matters: multiplying every weight by c leaves the fixed effects, their SEs, the random
effects' SDs and the likelihood unchanged and multiplies sigma (the residual SD of a row of
weight 1) by sqrt(c).

Weights must be numeric, finite and non-negative with no missing value among the rows
the model uses; a zero weight drops its row (as lme4 does) and the count goes to the
fit's notes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hlm.errors import DataError

ARRAY_NAME = "(weights)"
"""How weights given as an array rather than a column are named in messages and results."""

Weights = Any
"""A column name, an array or Series with one weight per row, or None (unweighted)."""


def weights_name(weights: Any) -> str | None:
    """The column name, :data:`ARRAY_NAME` for an array, or None (unweighted)."""
    if weights is None:
        return None
    return weights if isinstance(weights, str) else ARRAY_NAME


def _what(name: str) -> str:
    return "the weights array" if name == ARRAY_NAME else f"the weights column '{name}'"


def check_kind(numeric: bool, name: str, dtype: Any) -> None:
    """DataError unless the weights are numeric (not boolean, text or categorical)."""
    if not numeric:
        raise DataError(f"{_what(name)} is not numeric ({dtype}); precision weights must be numbers >= 0")


def check_counts(name: str, *, missing: int, infinite: int, negative: int) -> None:
    """One-line DataError for the first kind of bad weight that occurs (counts over the rows used)."""
    what = _what(name)
    if missing:
        raise DataError(
            f"{what} has {missing:,} missing values; fill them or drop those rows (a weight of 0 drops a row)"
        )
    if infinite:
        raise DataError(f"{what} has {infinite:,} infinite values; precision weights must be finite")
    if negative:
        raise DataError(f"{what} has {negative:,} negative values; precision weights must be >= 0 (0 drops the row)")


def as_array(weights: Any, nrows: int) -> np.ndarray:
    """An array or Series of weights, one per row of the data in order (a Series' index is not
    used), as a numpy array of the given dtype."""
    values = weights.to_numpy() if isinstance(weights, pd.Series) else np.asarray(weights)
    if values.ndim != 1 or len(values) != nrows:
        raise DataError(
            f"the weights array has shape {values.shape} but the data has {nrows:,} rows; "
            "pass one weight per row, or the name of a column"
        )
    return values


def validate(values: Any, name: str) -> np.ndarray:
    """The weights of the rows used as floats, after the checks of the module docstring."""
    series = pd.Series(values)
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    check_kind(numeric, name, series.dtype)
    missing = int(series.isna().sum())
    w = series.to_numpy(dtype=float, na_value=np.nan)
    check_counts(name, missing=missing, infinite=int((~np.isfinite(w)).sum()) - missing, negative=int((w < 0).sum()))
    return w
