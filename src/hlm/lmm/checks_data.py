"""Checks that the data can carry the model at all, before any optimising.

* :func:`check_factor_levels` -- a categorical fixed effect with so many levels that its
  dummy columns would swamp the machine (K'K grows as levels squared; the in-memory design
  as rows x levels): refused before the columns are built, with the advice to make the
  factor a random effect.
* :func:`check_fixed_count` -- n observations cannot identify p >= n fixed effects,
  counted before aliased columns are dropped (so 300 predictors on 200 rows says 301).
* :func:`check_scales` -- values whose squares overflow or underflow double precision
  (root mean square beyond 1e+-100): the cross-products the fit is computed from would be
  infinite or zero.  Within that range columns are standardised internally
  (:mod:`hlm.lmm.scaling`), so their units do not matter.
* :func:`check_response_varies` -- a response that the fixed effects reproduce exactly, a
  constant one above all: the residual sum of squares of y on X, relative to y'y, is
  below :data:`CONSTANT_TOL`, so sigma = 0 and no variance can be estimated.
* :func:`check_finite` -- estimates that came out non-finite are never returned.
* :func:`check_random_columns` -- random effects of one factor whose columns are linearly
  dependent over the rows (a slope on a constant): only their sum's variance is estimable.
* :func:`check_repeated_effects` -- one random effect listed several times on a factor.
* :func:`within_order_warning` -- nested levels with ids numbered within their parent that
  look listed inner to outer (:mod:`hlm.diagnose.ambiguity`): a warning naming both readings.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from hlm.aggregate.stats import Aggregates
from hlm.errors import DataError, IdentifiabilityError, StructureWarning

if TYPE_CHECKING:
    from hlm.lmm.result import LmmResult

if TYPE_CHECKING:
    from hlm.spec.terms import ModelSpec

MAX_FACTOR_LEVELS = 1000
MAX_DENSE_CELLS = 100_000_000  # rows x dummy columns of an in-memory design (800 MB of doubles)
SCALE_LIMIT = 1e100
CONSTANT_TOL = 1e-10


def check_factor_levels(levels: Mapping[str, int], nrows: int | None = None) -> None:
    """Refuse a categorical model column with more than :data:`MAX_FACTOR_LEVELS` levels, or
    (in memory, ``nrows`` given) one whose dummy columns would hold more than
    :data:`MAX_DENSE_CELLS` numbers."""
    for col, nlev in levels.items():
        cells = None if nrows is None else nrows * nlev
        dense = cells is not None and cells > MAX_DENSE_CELLS
        if nlev <= MAX_FACTOR_LEVELS and not dense:
            continue
        per = f" on {nrows:,} rows ({nrows / nlev:.3g} rows per level)" if nrows else ""
        limit = (
            f"at most {MAX_FACTOR_LEVELS:,} levels are accepted"
            if nlev > MAX_FACTOR_LEVELS
            else f"in memory they would hold {cells:,} numbers; backend='duckdb' keeps them out of memory"
        )
        raise DataError(
            f"the categorical column '{col}' has {nlev:,} levels{per}: as a fixed effect it needs {nlev - 1:,} "
            f"dummy columns ({limit}); model it as a random effect, (1 | {col}), or recode it into fewer levels"
        )


def frame_factor_levels(frame: pd.DataFrame, columns: list[str]) -> dict[str, int]:
    """Levels of the non-numeric columns among ``columns`` (counted without building dummies)."""
    out = {}
    for col in columns:
        values = frame[col]
        if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
            out[col] = int(values.nunique())
    return out


def check_fixed_count(nobs: int, p: int) -> None:
    """n observations identify at most n - 1 fixed effects next to the residual variance."""
    if nobs <= p:
        raise DataError(f"{nobs:,} observations cannot identify {p:,} fixed effects; add data or drop terms")


def check_scales(agg: Aggregates) -> None:
    """Refuse columns of [X y] whose root mean square lies outside 1e+-100 (or overflows)."""
    check_column_scales((*agg.xnames, agg.response), agg.ktk, agg.nobs)


def check_column_scales(names: Sequence[str], crossprod: np.ndarray, nobs: int) -> None:
    """Refuse a column whose root mean square (from the cross-products over ``nobs`` rows)
    lies outside 1e+-100 or overflows.  A zero sum of squares passes only for an all-zero
    column (it is dropped as aliased): squares that underflowed leave products with other
    columns (the intercept's: the sum) that are not zero."""
    M = np.asarray(crossprod, dtype=float)
    with np.errstate(over="ignore", invalid="ignore"):
        rms = np.sqrt(np.abs(np.diag(M)) / max(nobs, 1))
        underflow = (rms == 0) & (np.abs(M).sum(axis=1) > 0)
    for name, r, lost in zip(names, rms, underflow):
        if np.isfinite(r) and not lost and (r == 0 or 1 / SCALE_LIMIT <= r <= SCALE_LIMIT):
            continue
        size = "too large for double-precision cross-products" if not np.isfinite(r) or r > 1 else "too small"
        shown = "overflows" if not np.isfinite(r) else "underflows" if lost else f"{r:.3g}"
        raise DataError(
            f"the values of '{name}' are {size} (root mean square {shown}); some variables are on very different "
            f"scales: rescale '{name}' (e.g. change its units) to magnitudes between 1e-100 and 1e100"
        )


def check_response_varies(agg: Aggregates, syntax: str = "lme4") -> None:
    """Refuse a response the fixed effects fit exactly (a constant above all): no residual
    or random variation is left to estimate.  Read from the last pivot of the Cholesky
    factor of the column-scaled K'K: the relative residual sum of squares of y on X."""
    k = agg.ktk.shape[0]
    diag = np.diag(agg.ktk)
    scale = np.where(diag > 0, np.sqrt(np.abs(diag)), 1.0)
    corr = agg.ktk / np.outer(scale, scale)
    try:
        rss = float(np.linalg.cholesky(corr)[-1, -1] ** 2) if k > 1 else 1.0
    except np.linalg.LinAlgError:
        rss = 0.0
    if diag[-1] > 0 and rss > CONSTANT_TOL:
        return
    what = "constant" if k == 1 or rss <= 0 or _constant_given_intercept(agg) else "fitted exactly by the fixed effects"
    raise IdentifiabilityError(
        f"the response '{agg.response}' is (numerically) {what} in the {agg.nobs:,} observations used, so no "
        "residual or group variance can be estimated; check the response column (a filter, a recode, its units)"
    )


def _constant_given_intercept(agg: Aggregates) -> bool:
    """Whether y has no spread around its mean (relative to its size)."""
    n, sy, yy = agg.nobs, None, agg.ktk[-1, -1]
    for name in ("(Intercept)", "_cons"):
        if name in agg.xnames:
            sy = agg.ktk[agg.xnames.index(name), -1]
    if sy is None or yy <= 0:
        return yy <= 0
    return bool(yy - sy * sy / n <= CONSTANT_TOL * yy)


def check_finite(fit: LmmResult) -> None:
    """Refuse a fit whose estimates are not all finite numbers."""
    parts: dict[str, ArrayLike] = {
        "fixed effects": fit.profiled.beta,
        "variance parameters": fit.theta,
        "residual variance": [fit.profiled.sigma2],
        "standard errors": np.diag(fit.profiled.qxx_inv),
    }
    bad = [name for name, values in parts.items() if not np.all(np.isfinite(values))]
    if bad:
        raise DataError(
            f"the fit produced non-finite {' and '.join(bad)}: the problem is numerically degenerate for this data; "
            "check for near-constant or near-duplicate columns and rescale variables on extreme scales"
        )


def check_panel_response(
    names: Sequence[str], N: int, ZZ: np.ndarray, S: np.ndarray, T: np.ndarray, estimator: str
) -> None:
    """For ``xtreg`` (``names``: the columns of [X y]): refuse columns on extreme scales
    (:func:`check_column_scales`) and a response with no variation -- none at all, or, for
    ``fe`` and ``re``, whose sigma_e comes from within panels, none within any panel.  Read
    from the panel sums: total SS = y'y - (sum y)^2 / N, within SS = y'y - sum_i (sum_t y_it)^2 / T_i."""
    check_column_scales(names, ZZ, N)
    response = names[-1]
    yy, sy = float(ZZ[-1, -1]), S[:, -1]
    total = yy - float(sy.sum()) ** 2 / N
    within = yy - float(sy @ (sy / T))
    tol = CONSTANT_TOL * max(yy, np.finfo(float).tiny)
    if total <= tol:
        where = "constant"
    elif estimator in ("fe", "re") and within <= tol:
        where = "constant within every panel"
    else:
        return
    raise IdentifiabilityError(
        f"the response '{response}' is (numerically) {where} in the {N:,} observations used, so xtreg, "
        f"{estimator} has no residual variation to estimate; check the response column"
    )


def check_repeated_effects(agg: Aggregates) -> None:
    """Refuse a random effect listed more than once on one grouping factor (fifty
    ``(1 | g)`` terms are one random intercept, not fifty)."""
    for f, fac in enumerate(agg.factors):
        cols = [c for t, tf in enumerate(agg.term_factor) if tf == f for c in agg.term_columns[t]]
        repeated = [c for c in dict.fromkeys(cols) if cols.count(c) > 1]
        if repeated:
            c = repeated[0]
            times = "twice" if cols.count(c) == 2 else f"{cols.count(c)} times"
            raise IdentifiabilityError(
                f"'{agg.pool[c]}' appears {times} as a random effect of '{fac.name}'; list each random effect of a "
                "grouping factor once"
            )


def within_order_warning(spec: ModelSpec, agg: Aggregates) -> str | None:
    """Warn (:class:`StructureWarning`) and return the message when a nested path has ids
    numbered within their parents and looks listed inner to outer
    (:func:`hlm.diagnose.ambiguity.reversed_reading`); None otherwise."""
    from hlm.diagnose.ambiguity import reversed_reading
    from hlm.lmm.checks import factor_of, key_frame, nesting_paths

    messages = []
    groups = {t.group for t in spec.random}
    for path in nesting_paths(spec):
        fac = factor_of(agg, path)
        if fac is None or fac.pooled is not None or any((c,) in groups for c in path[1:]):
            continue  # an inner column with a term of its own is a modelled cross, not a nesting
        prefixes = [factor_of(agg, path[: j + 1]) for j in range(len(path))]
        counts = None if any(f is None for f in prefixes) else [f.nlevels for f in prefixes if f is not None]
        message = reversed_reading(key_frame(fac), path, syntax=spec.syntax, groups=counts)
        if message is not None:
            messages.append(message)
    if not messages:
        return None
    message = "; ".join(messages)
    warnings.warn(message, StructureWarning, stacklevel=3)
    return message


def check_random_columns(agg: Aggregates) -> None:
    """Refuse random effects of one grouping factor whose columns are linearly dependent
    over the rows (a slope on a constant column, the same column twice under two names):
    only the variance of their sum could be estimated.  Read from Z'Z = sum over any
    factor's groups of Z_g'Z_g, with the pivoted check the fixed effects use."""
    from hlm.lmm.collinear import aliased_columns

    first_ztz = next((f.ztz for f in agg.factors if f.ztz is not None), None)
    if first_ztz is None or len(agg.pool) < 2:
        return
    ztz = first_ztz.sum(axis=0)
    for f, fac in enumerate(agg.factors):
        cols = list(dict.fromkeys(c for t, tf in enumerate(agg.term_factor) if tf == f for c in agg.term_columns[t]))
        dropped = aliased_columns(ztz[np.ix_(cols, cols)]) if len(cols) >= 2 else []
        if dropped:
            c = cols[dropped[0]]
            others = [agg.pool[o] for o in cols[: dropped[0]]]
            what = (
                "zero"
                if ztz[c, c] <= 0
                else f"a multiple of {others[0]}"
                if len(others) == 1
                else f"a linear combination of {', '.join(others)}"
            )
            raise IdentifiabilityError(
                f"the random effect '{agg.pool[c]}' of '{fac.name}' is {what} in every row used, so its variance "
                f"cannot be told apart from the others'; drop '{agg.pool[c]}' from the random part (check the "
                "column: a constant, or a copy of another)"
            )
