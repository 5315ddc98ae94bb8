"""The GLMM model frame: the response as successes out of trials (or counts), X, the offset,
and the random-effect design A0 (n x q, sparse) whose columns are the levels of every scalar
random term, so that eta = offset + X beta + A0 Lambda_theta u with Lambda_theta diagonal.

lme4's ``cbind(successes, failures) ~ ...`` is read here: both expressions are evaluated on
the data and the response becomes the successes with trials = successes + failures (carried
through the shared model frame as its row weights, so rows dropped for missing values drop
both).  A two-level factor or bool response codes its first level 0, as R does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from hlm.data.source import to_pandas
from hlm.design import with_offset
from hlm.errors import DataError, OptionError
from hlm.glmm.family import Family
from hlm.modelframe import build_frame, used_columns
from hlm.spec import ModelSpec, parse_model

SUCCESSES, TRIALS, OFFSET = "hlm_successes_", "hlm_trials_", "hlm_offset_"
CBIND = re.compile(r"^\s*cbind\s*\((.*)\)\s*~(.*)$", re.S)


@dataclass(frozen=True)
class GlmmFrame:
    """Rows used: y successes/counts, n trials (1 for Poisson and binary), X, offset, A0."""

    spec: ModelSpec
    y: np.ndarray
    n: np.ndarray
    X: np.ndarray
    xnames: tuple[str, ...]
    offset: np.ndarray
    A0: sp.csc_matrix
    blocks: tuple[int, ...]  # per random term: its number of levels
    dims: tuple[int, ...]  # per random term: its number of effects k (A0 has levels x k columns, level-major)
    term_labels: tuple[tuple[str, tuple[str, ...]], ...]  # per term: (group name, its columns)
    level_keys: tuple[tuple[Any, ...], ...]  # per term: its factor's key values per level (A0's order)
    ndropped: int
    response: str
    design: Any = None  # the frozen FixedDesign (X and the formula's offset of new rows, for predict)
    factor_columns: tuple[tuple[str, ...], ...] = ()  # per term: the data columns its levels combine
    stata_offset: StataOffset | None = None  # Stata's exposure()/offset() column, for new rows
    rows: np.ndarray | None = None  # data rows each frame row sums (rows collapsed upstream); None: one each
    constant: float | None = None  # with ``rows``: the data-only log-likelihood term of the rows summed

    @cached_property
    def levels(self) -> tuple[tuple[str, ...], ...]:
        """Per term its level labels, in A0's column order (made when first asked for: 42,000
        joined labels cost more than a PIRLS step)."""
        return tuple(_level_labels(keys) for keys in self.level_keys)

    @property
    def nobs(self) -> int:
        """Data rows used (more than frame rows where they were collapsed upstream)."""
        return len(self.y) if self.rows is None else int(self.rows.sum())


@dataclass(frozen=True)
class Aggregated:
    """Rows already collapsed to sufficient statistics (by a GROUP BY, :mod:`hlm.glmm.collapse`):
    the response column holds the successes (counts) summed, ``trials`` the trials summed
    (binomial), ``rows`` how many data rows each stands for; the responses were checked there."""

    trials: str | None
    rows: str
    constant: float
    ndropped: int
    response: str  # the response as the model writes it (``cbind(s, f)`` or a column)


@dataclass(frozen=True)
class StataOffset:
    """Stata's ``exposure(t)`` (offset log t, t > 0) or ``offset(v)``: a column of the data."""

    column: str
    log: bool

    def __str__(self) -> str:
        return f"{'exposure' if self.log else 'offset'}({self.column})"

    def values(self, frame: pd.DataFrame) -> np.ndarray:
        """The offset per row (NaN where the column is missing)."""
        if self.column not in frame:
            raise DataError(f"{self}: no column '{self.column}' in the data")
        v = numbers(frame[self.column], f"{self}: the column '{self.column}'")
        if self.log:
            if (v[~np.isnan(v)] <= 0).any():
                raise DataError(f"{self}: the exposure must be > 0 in every row")
            return np.log(v)
        return v


def numbers(values: pd.Series, what: str) -> np.ndarray:
    """A numeric column as floats (NaN where missing); text is refused, never parsed as numbers."""
    if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
        raise DataError(f"{what} is not numeric ({values.dtype}); convert it or pick a numeric column")
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)


def split_cbind(inner: str) -> tuple[str, str]:
    depth = 0
    for i, ch in enumerate(inner):
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            return inner[:i].strip(), inner[i + 1 :].strip()
    raise DataError("cbind() needs two arguments: cbind(successes, failures)")


def _read_cbind(model: Any, frame: pd.DataFrame) -> tuple[Any, pd.DataFrame, str | None]:
    """``cbind(s, f) ~ rhs`` -> ``SUCCESSES ~ rhs`` with the columns SUCCESSES and TRIALS added."""
    if not isinstance(model, str) or not (m := CBIND.match(model)):
        return model, frame, None
    s_expr, f_expr = split_cbind(m.group(1))
    try:
        raw = [pd.Series(frame.eval(e), index=frame.index) for e in (s_expr, f_expr)]
    except Exception as exc:  # noqa: BLE001 - any evaluation failure is the user's expression
        raise DataError(f"cannot evaluate cbind({s_expr}, {f_expr}): {str(exc).splitlines()[0]}") from None
    s, f = (pd.Series(numbers(v, f"cbind(): '{e}'"), index=frame.index) for e, v in zip((s_expr, f_expr), raw))
    for name, v in ((s_expr, s), (f_expr, f)):
        vals = v.dropna().to_numpy(dtype=float)
        if (vals < 0).any() or (vals != np.round(vals)).any():
            raise DataError(f"cbind(): '{name}' must be whole numbers >= 0 (successes and failures)")
    frame = frame.assign(**{SUCCESSES: s.astype(float), TRIALS: (s + f).astype(float)})
    return f"{SUCCESSES} ~{m.group(2)}", frame, f"cbind({s_expr}, {f_expr})"


def _binary(frame: pd.DataFrame, col: str) -> pd.DataFrame:
    """A bool, two-level factor or text response as 0/1 (first level 0)."""
    v = frame[col]
    if pd.api.types.is_bool_dtype(v):
        return frame.assign(**{col: v.astype(float)})
    if pd.api.types.is_numeric_dtype(v):
        return frame
    levels = list(v.cat.categories) if isinstance(v.dtype, pd.CategoricalDtype) else sorted(v.dropna().unique())
    if len(levels) != 2:
        raise DataError(f"the binomial response '{col}' has {len(levels)} levels; it needs exactly two (or 0/1)")
    return frame.assign(**{col: v.map({levels[0]: 0.0, levels[1]: 1.0}).astype(float)})


def _check_response(family: Family, y: np.ndarray, n: np.ndarray, response: str, trials: bool) -> None:
    if family.name == "binomial":
        if trials:
            return
        if ((y != 0) & (y != 1)).any():
            inside = bool(((y >= 0) & (y <= 1)).all())
            raise DataError(
                f"the binomial response '{response}' must be 0/1"
                + (" (proportions need trials: cbind(successes, failures) ~ ...)" if inside else "")
            )
        return
    if (y < 0).any():
        raise DataError(f"the count response '{response}' has negative values; counts must be >= 0")
    if (y != np.round(y)).any():
        raise DataError(f"the count response '{response}' has non-integer values; counts must be whole numbers")


def _level_labels(keys: tuple[np.ndarray, ...]) -> tuple[str, ...]:
    """Per level its key values joined by ':' (``str`` of each value; numbers and text through
    ``tolist`` at C speed, other kinds such as dates value by value)."""
    text = [list(map(str, k.tolist() if np.asarray(k).dtype.kind in "iufbOU" else list(k))) for k in keys]
    return tuple(text[0]) if len(text) == 1 else tuple(":".join(parts) for parts in zip(*text))


def _design(
    mf: Any,
) -> tuple[sp.csc_matrix, tuple[int, ...], tuple[int, ...], tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]:
    """A0 from the shared frame's Z pool and factor codes, its terms in lme4's order
    (decreasing number of levels); a term's columns are level-major (level j, effect c: j k + c)."""
    cols, blocks, dims, labels, levels, columns = [], [], [], [], [], []
    nrow = len(mf.y)
    for t, (term, zcols) in enumerate(zip(mf.spec.random, mf.term_columns)):
        fac = mf.factors[mf.term_factor[t]]
        nlev, k = len(fac.first), len(zcols)
        rows = np.repeat(np.arange(nrow), k)
        where = (fac.codes[:, None] * k + np.arange(k)[None, :]).ravel()
        cols.append(sp.csc_matrix((mf.Z[:, list(zcols)].ravel(), (rows, where)), shape=(nrow, nlev * k)))
        blocks.append(nlev)
        dims.append(k)
        labels.append((term.name, tuple(mf.pool[c] for c in zcols)))
        levels.append(fac.keys)
        columns.append(tuple(fac.columns))
    if not cols:
        raise OptionError("a GLMM needs at least one random term such as (1 | g); for a GLM use statsmodels")
    order = sorted(range(len(cols)), key=lambda t: -blocks[t])
    return (
        sp.hstack([cols[t] for t in order], format="csc"),
        tuple(blocks[t] for t in order),
        tuple(dims[t] for t in order),
        tuple(labels[t] for t in order),
        tuple(levels[t] for t in order),
        tuple(columns[t] for t in order),
    )


def _stata_offset(spec: ModelSpec, frame: pd.DataFrame, offset: StataOffset, weights: str | None) -> np.ndarray:
    """The offset on the rows the model frame keeps: built as the response of a second frame,
    with missing values made common to the offset and the response so both frames keep the same rows."""
    off = offset.values(frame)
    y = numbers(frame[spec.response], f"the response '{spec.response}'")
    frame[spec.response] = np.where(np.isnan(off), np.nan, y)
    frame[OFFSET] = np.where(np.isnan(y), np.nan, off)
    return build_frame(
        replace(spec, response=OFFSET), frame[[OFFSET, *used_columns(spec)[1:], *_w(weights)]], weights
    ).y


def _check_offset(off: np.ndarray) -> np.ndarray:
    if not np.isfinite(off).all():
        raise DataError("the offset has infinite values or NaN (a log of a non-positive exposure?)")
    return off


def _w(weights: str | None) -> list[str]:
    return [] if weights is None else [weights]


def glmm_frame(
    model: Any,
    data: Any,
    family: Family,
    *,
    offset: Any = None,
    weights: Any = None,
    aggregated: Aggregated | None = None,
) -> GlmmFrame:
    """Read the data into memory and build the GLMM frame (see the module docstring)."""
    frame = to_pandas(data).copy()
    if aggregated is not None:
        return _aggregated_frame(model, frame, offset, aggregated)
    text = model if isinstance(model, str) else None
    model, frame, cbind = _read_cbind(model, frame)
    if cbind is not None and family.name != "binomial":
        raise OptionError("cbind(successes, failures) is a binomial response; use family='binomial'")
    if weights is not None:
        raise OptionError("weights= is not supported for GLMMs yet; give binomial trials as cbind(successes, failures)")
    trials = TRIALS if cbind else None
    spec = parse_model(model)
    if text is not None:
        spec = replace(spec, text=text)
    if not isinstance(offset, StataOffset):
        spec, frame = with_offset(spec, frame, offset)
    if family.name == "binomial" and cbind is None:
        frame = _binary(frame, spec.response)
    off = _stata_offset(spec, frame, offset, trials) if isinstance(offset, StataOffset) else None
    mf = build_frame(spec, frame[[*used_columns(spec), *_w(trials)]], trials)
    y = mf.y
    if mf.x_model_spec.has_offset:  # the shared frame models y - offset: recover the offset
        zero = frame.assign(**{spec.response: 0.0})
        off = -build_frame(spec, zero, trials).y
        _check_offset(off)
        y = y + off
        whole = np.round(y)  # undo the subtraction's rounding on whole-number responses
        y = np.where(np.abs(y - whole) < 1e-9 * np.maximum(1.0, np.abs(y)), whole, y)
    off = np.zeros(len(y)) if off is None else _check_offset(off)
    n = mf.w if cbind and mf.w is not None else np.ones(len(y))
    _check_response(family, y, n, spec.response, cbind is not None)
    A0, blocks, dims, labels, levels, columns = _design(mf)
    return GlmmFrame(
        spec,
        y,
        n,
        mf.X,
        mf.xnames,
        off,
        A0,
        blocks,
        dims,
        labels,
        levels,
        mf.ndropped,
        cbind or spec.response,
        mf.x_model_spec,
        columns,
        offset if isinstance(offset, StataOffset) else None,
    )


def _aggregated_frame(model: Any, frame: pd.DataFrame, offset: Any, agg: Aggregated) -> GlmmFrame:
    """The frame of rows collapsed upstream: y and trials are the sums, nothing is dropped here
    (the GROUP BY kept complete rows only)."""
    spec = model if isinstance(model, ModelSpec) else parse_model(model)
    if not isinstance(offset, StataOffset):
        spec, frame = with_offset(spec, frame, offset)
    columns = [*used_columns(spec), *([offset.column] if isinstance(offset, StataOffset) else []), agg.rows]
    counts = Family.of("poisson", None)  # the summed response is a count: read (and checked) as one
    gf = glmm_frame(spec, frame[list(dict.fromkeys(columns))], counts, offset=offset)
    rows = frame[agg.rows].to_numpy(dtype=float)
    n = frame[agg.trials].to_numpy(dtype=float) if agg.trials is not None else np.ones(len(rows))
    return replace(gf, n=n, rows=rows, constant=agg.constant, ndropped=agg.ndropped, response=agg.response)
