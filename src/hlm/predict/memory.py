"""Predictions, fitted values and residuals: a second pass over rows, chunk by chunk.

    population (re=False):  offset + X_new beta
    conditional (re=True):  offset + X_new beta + sum_f Z_new,f b_f[level]

X_new comes from the frozen fixed-effects design kept on the fit (:mod:`hlm.design`), so
factor codings, polynomial and scaling constants match the fit, and the model's offset is
added to both; Z columns are rebuilt from each random term's right-hand
side and matched to the fit's Z column pool by name; levels are matched to the fit's
level labels (numbers that are integral match across int/float storage, so ``308`` and
``308.0`` are the same level).  A level the fit has not seen contributes zero (its
population value, ``new_levels="population"``) or raises :class:`~hlm.errors.DataError`
(``"error"``).  Rows with a missing value in a needed column predict NaN.  Rows are
processed in chunks, so memory does not grow with the data beyond the output.

``fitted`` and ``residuals`` cover the rows the fit used: with precision weights, rows
weighing 0 are left out as lme4 leaves them out; residuals are response residuals
y - fitted (lme4's default for lmer), not scaled by sqrt(w).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from formulaic import model_matrix
from formulaic.errors import FormulaicError

from hlm.aggregate.stats import pooled_message
from hlm.data.source import to_pandas
from hlm.design import OFFSET_COLUMN, pool_name
from hlm.errors import DataError, OptionError
from hlm.lmm.result import LmmResult
from hlm.modelframe import used_columns
from hlm.weights import ARRAY_NAME, as_array

CHUNK_ROWS = 200_000


def _norm_part(values: pd.Series) -> np.ndarray:
    """Label strings with integral floats written as integers."""
    if pd.api.types.is_float_dtype(values):
        arr = values.to_numpy(dtype=float)
        if np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            return arr.astype(np.int64).astype(str).astype(object)
    return values.astype(str).to_numpy(dtype=object)


def _norm_label_text(part: str) -> str:
    try:
        x = float(part)
    except ValueError:
        return part
    return str(int(x)) if np.isfinite(x) and x == round(x) and "." in part else part


_SEP = "\x1f"  # joins the columns of an interaction factor (cannot clash with values)


def _level_index(fac: Any) -> pd.Index:
    """The fit's levels as normalised keys (see :func:`_row_labels`)."""
    keys = getattr(fac, "keys", None)
    if keys is not None:
        parts = [_norm_part(pd.Series(k)) for k in keys]
        out = parts[0].astype(str).astype(object)
        for part in parts[1:]:
            out = out + _SEP + part.astype(str).astype(object)
        return pd.Index(out)
    labels: list[str] = []
    for lab in fac.labels:  # labels only: split the lme4-style label
        pieces = str(lab).split(":")
        labels.append(_SEP.join(_norm_label_text(p) for p in pieces) if len(pieces) == len(fac.columns) else str(lab))
    return pd.Index(labels)


def _row_labels(frame: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    labels = _norm_part(frame[columns[0]])
    for col in columns[1:]:
        labels = labels + _SEP + _norm_part(frame[col])
    return labels


def _needed_columns(fit: LmmResult) -> list[str]:
    spec = fit.spec
    cols = [c for c in used_columns(spec) if c != spec.response]
    return cols


def _fixed_matrix(fit: LmmResult, chunk: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """X of the chunk's rows in the fit's column order, and the offset."""
    design = fit.x_model_spec
    if design is None:
        raise DataError(
            "this fit carries no fixed-effects model spec (it was fitted from aggregates); "
            "predictions need hlm.fit(model, data)"
        )
    X = design.matrix(chunk)
    pos = {n: i for i, n in enumerate(design.names)}
    missing = [n for n in fit.aggregates.xnames if n not in pos]
    if missing:
        raise DataError(f"the new rows do not produce the fixed-effect column(s) {', '.join(missing)}")
    return X[:, [pos[n] for n in fit.aggregates.xnames]], design.offset(chunk)


def _pool_matrix(fit: LmmResult, chunk: pd.DataFrame) -> np.ndarray:
    """Z pool columns for the chunk's rows (matched to the fit's pool by name)."""
    pool = fit.aggregates.pool
    Z = np.zeros((len(chunk), len(pool)))
    filled = [False] * len(pool)
    designs = getattr(fit.x_model_spec, "random", ())
    for t, term in enumerate(fit.spec.random):
        if designs:  # lme4: the frozen designs of the fit (R's semantics and names)
            zd = designs[t]
            names = zd.names if zd is not None else ("(Intercept)",)
            Zt = zd.matrix(chunk) if zd is not None else np.ones((len(chunk), 1))
            for j, name in enumerate(names):
                Z[:, pool.index(name)] = Zt[:, j]
            continue
        try:
            mz = model_matrix(term.rhs, chunk, na_action="raise", output="pandas")
        except (FormulaicError, SyntaxError, ValueError, TypeError) as exc:
            raise DataError(
                f"cannot build the random term for '{term.name}' on the new rows: {str(exc).splitlines()[0]}"
            ) from None
        for j, col in enumerate(mz.columns):
            name = pool_name(col, fit.spec.syntax)
            if name not in pool:
                raise DataError(
                    f"the new rows give a random-effect column '{name}' the fit does not have "
                    "(categorical random slopes need every level's coding as in the fit)"
                )
            k = pool.index(name)
            if not filled[k]:
                Z[:, k] = mz.iloc[:, j].to_numpy(dtype=float)
                filled[k] = True
    return Z


def predict_frame(
    fit: LmmResult, frame: pd.DataFrame, *, re: bool, new_levels: str, chunk_rows: int = CHUNK_ROWS
) -> np.ndarray:
    """Predictions for complete rows of ``frame`` (no missing values in needed columns)."""
    beta = np.asarray(fit.profiled.beta, dtype=float)
    out = np.empty(len(frame))
    if re and (msg := pooled_message(fit.aggregates)) is not None:
        raise DataError(
            f"{msg}, nor are their conditional modes; predict with re=False, or write conditional predictions with "
            "hlm.write_predictions(fit, data, 'out.parquet'), which computes them in DuckDB"
        )
    modes = fit.conditional_modes if re else None
    agg, struct = fit.aggregates, fit.structure
    lookups = [(_level_index(fac), fac.columns) for fac in agg.factors] if re else []
    for start in range(0, len(frame), chunk_rows):
        chunk = frame.iloc[start : start + chunk_rows].reset_index(drop=True)
        X, offset = _fixed_matrix(fit, chunk)
        pred = X @ beta + offset
        if re and modes is not None:
            Z = _pool_matrix(fit, chunk)
            for f, (index, columns) in enumerate(lookups):
                codes = index.get_indexer(pd.Index(_row_labels(chunk, columns)))
                unknown = codes < 0
                if unknown.any() and new_levels == "error":
                    bad = str(_row_labels(chunk.loc[unknown], columns)[0]).replace(_SEP, ":")
                    raise DataError(
                        f"level '{bad}' of '{agg.factors[f].name}' was not in the fitted data; "
                        "use new_levels='population' to predict it at the population level"
                    )
                J = list(struct.factor_cols[f])
                fmodes = modes.modes[f]
                assert fmodes is not None  # pooled factors were refused above
                b = fmodes[np.where(unknown, 0, codes)]
                contrib = np.einsum("ij,ij->i", Z[:, J], b)
                pred += np.where(unknown, 0.0, contrib)
        out[start : start + len(chunk)] = pred
    return out


def predict(
    fit: LmmResult,
    newdata: Any = None,
    *,
    re: bool = True,
    new_levels: Literal["population", "error"] = "population",
    chunk_rows: int = CHUNK_ROWS,
) -> pd.Series:
    """Predictions for ``newdata`` (default: the fitted data); see the module docstring."""
    if new_levels not in ("population", "error"):
        raise OptionError(f"new_levels must be 'population' or 'error', not {new_levels!r}")
    data = fit.data if newdata is None else newdata
    if data is None:
        raise DataError("this fit keeps no data; pass newdata")
    cols = _needed_columns(fit)
    if newdata is not None and OFFSET_COLUMN in cols and OFFSET_COLUMN not in getattr(newdata, "columns", ()):
        raise DataError(
            f"the fit's offset was given as an array (offset=): give newdata a column '{OFFSET_COLUMN}' "
            "with the new rows' offsets"
        )
    frame = to_pandas(data, cols, value_labels=fit.spec.syntax != "stata")
    index = frame.index if isinstance(data, pd.DataFrame) else pd.RangeIndex(len(frame))
    keep = frame.notna().all(axis=1).to_numpy()
    out = np.full(len(frame), np.nan)
    if keep.any():
        out[keep] = predict_frame(fit, frame.loc[keep], re=re, new_levels=new_levels, chunk_rows=chunk_rows)
    return pd.Series(out, index=index, name="predicted")


def _used_rows(fit: LmmResult) -> tuple[pd.DataFrame, np.ndarray | None]:
    """The rows the fit used (none missing in a model column, no zero precision weight) and
    their precision weights (None without)."""
    if fit.data is None:
        raise DataError("this fit keeps no data (fitted from aggregates); use fit.predict(data)")
    cols = used_columns(fit.spec)
    name = fit.aggregates.weights
    frame = to_pandas(
        fit.data, cols + [name] if name not in (None, ARRAY_NAME) else cols, value_labels=fit.spec.syntax != "stata"
    )
    keep = frame[cols].notna().all(axis=1).to_numpy()
    if name is None:
        return frame.loc[keep, cols], None
    if name == ARRAY_NAME and fit.weights is None:
        raise DataError("this fit keeps no weights array; refit with hlm.fit(..., weights=...)")
    w = frame[name].to_numpy(dtype=float, na_value=np.nan) if name != ARRAY_NAME else as_array(fit.weights, len(frame))
    keep = keep & (np.asarray(w, dtype=float) != 0)
    return frame.loc[keep, cols], np.asarray(w, dtype=float)[keep]


def fitted(fit: LmmResult, *, chunk_rows: int = CHUNK_ROWS) -> pd.Series:
    """Conditional fitted values X beta + Z b for the rows used in the fit (lme4's fitted)."""
    frame, _ = _used_rows(fit)
    values = predict_frame(fit, frame, re=True, new_levels="error", chunk_rows=chunk_rows)
    return pd.Series(values, index=frame.index, name="fitted")


def residuals(fit: LmmResult, *, pearson: bool = False, chunk_rows: int = CHUNK_ROWS) -> pd.Series:
    """Response minus conditional fitted values for the rows used in the fit; ``pearson``:
    times sqrt(w_i) under precision weights (lme4's type="pearson"; the same without)."""
    frame, w = _used_rows(fit)
    values = predict_frame(fit, frame, re=True, new_levels="error", chunk_rows=chunk_rows)
    res = frame[fit.spec.response].to_numpy(dtype=float) - values
    if pearson and w is not None:
        res = res * np.sqrt(w)
    return pd.Series(res, index=frame.index, name="residual")
