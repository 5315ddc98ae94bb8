"""GLMM predictions (lme4's ``predict.merMod``):

    link (type="link"):        eta = offset + X beta [+ sum_t z_t' b_t[level]]   (the last with re=True)
    response (type="response"): mu = g^-1(eta) -- a probability for the binomial (also with
                                trials, as lme4's fitted values), a mean count for Poisson/nbinom2.

Without ``newdata`` the rows are those the fit used.  New rows get X and the formula's offset
from the fit's frozen design (factor codings as in the fit), Stata's ``exposure()``/``offset()``
from their column, and an array ``offset=`` from a column ``(offset)``.  A level the fit has not
seen contributes 0 (its random effect's mean; lme4's ``allow.new.levels=TRUE``) or, with
``new_levels="error"``, raises :class:`~hlm.errors.DataError`.  Rows missing a needed value
predict NaN.

Residuals of the rows used (lme4's ``residuals.merMod``), with m = n mu the conditional mean,
y/n the observed proportion for the binomial:

    response:  y/n - mu (binomial), y - mu (counts)
    pearson:   (y - m) / sqrt(V(m)),  V = n mu (1 - mu), mu, mu + mu^2/phi
    deviance:  sign(y - m) sqrt(d),   d = 2 [log p(y | saturated) - log p(y | m)]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from scipy import special

from hlm.data.source import to_pandas
from hlm.design import OFFSET_COLUMN
from hlm.errors import DataError, OptionError
from hlm.glmm.theta import lambda_matrix
from hlm.modelframe import used_columns

if TYPE_CHECKING:
    from hlm.glmm.frame import GlmmFrame
    from hlm.glmm.result import GlmmResult


def _label(value: Any) -> str:
    """A level label with integral floats written as integers (308.0 and 308 are one level)."""
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and value == round(value):
        return str(int(value))
    return str(value)


def _norm(label: str) -> str:
    parts = label.split(":")
    out = []
    for p in parts:
        try:
            x = float(p)
            out.append(str(int(x)) if np.isfinite(x) and x == round(x) and "." in p else p)
        except ValueError:
            out.append(p)
    return ":".join(out)


def _needed(fit: GlmmResult) -> list[str]:
    f = fit.frame
    cols = [c for c in used_columns(f.spec) if c != f.spec.response]
    if f.stata_offset is not None:
        cols.append(f.stata_offset.column)
    return list(dict.fromkeys(cols))


def _new_eta(fit: GlmmResult, frame: pd.DataFrame, re: bool, new_levels: str) -> np.ndarray:
    """eta for complete new rows (see the module docstring)."""
    f = fit.frame
    if f.design is None:
        raise DataError("this fit carries no fixed-effects design; predictions for new rows need hlm.fit(model, data)")
    X_all = f.design.matrix(frame)
    pos = {n: i for i, n in enumerate(f.design.names)}
    missing = [n for n in f.xnames if n not in pos]
    if missing:
        raise DataError(f"the new rows do not produce the fixed-effect column(s) {', '.join(missing)}")
    X = X_all[:, [pos[n] for n in f.xnames]]
    eta = X @ fit.fixef.to_numpy() + f.design.offset(frame)
    if f.stata_offset is not None:
        eta += f.stata_offset.values(frame)
    if not re:
        return eta
    b = lambda_matrix(fit.theta, f.dims, f.blocks) @ fit.modes.u
    start = 0
    for (group, names), levels, columns in zip(f.term_labels, f.levels, f.factor_columns):
        k = len(names)
        index = pd.Index([_norm(lev) for lev in levels])
        rows = frame[list(columns)].to_numpy(dtype=object)
        codes = index.get_indexer(pd.Index([":".join(_label(v) for v in r) for r in rows]))
        unknown = codes < 0
        if unknown.any() and new_levels == "error":
            raise DataError(
                f"a level of '{group}' was not in the fitted data; use new_levels='population' to predict it at 0"
            )
        for c, name in enumerate(names):
            if name == "(Intercept)":
                z = np.ones(len(frame))
            elif name in pos:
                z = X_all[:, pos[name]]
            else:
                raise DataError(f"the random slope column '{name}' is not a fixed-effect column; cannot rebuild it")
            eff = b[start + np.where(unknown, 0, codes) * k + c]
            eta += np.where(unknown, 0.0, z * eff)
        start += len(levels) * k
    return eta


def predict(
    fit: GlmmResult,
    newdata: Any = None,
    *,
    type: Literal["link", "response"] = "link",
    re: bool = True,
    new_levels: Literal["population", "error"] = "population",
) -> pd.Series:
    """Predictions on the link or response scale (see the module docstring)."""
    if type not in ("link", "response"):
        raise OptionError(f"type must be 'link' or 'response', not {type!r}")
    if new_levels not in ("population", "error"):
        raise OptionError(f"new_levels must be 'population' or 'error', not {new_levels!r}")
    f = fit.frame
    if newdata is None:
        _rows_kept(fit)
        eta = fit.modes.eta if re else f.offset + f.X @ fit.fixef.to_numpy()
        index: pd.Index = pd.RangeIndex(len(eta))
    else:
        cols = _needed(fit)
        if OFFSET_COLUMN in cols and OFFSET_COLUMN not in getattr(newdata, "columns", ()):
            raise DataError(f"the fit's offset was an array (offset=): give newdata a column '{OFFSET_COLUMN}'")
        frame = to_pandas(newdata, cols, value_labels=f.spec.syntax != "stata")
        index = frame.index if isinstance(newdata, pd.DataFrame) else pd.RangeIndex(len(frame))
        keep = frame.notna().all(axis=1).to_numpy()
        eta = np.full(len(frame), np.nan)
        if keep.any():
            eta[keep] = _new_eta(fit, frame.loc[keep], re, new_levels)
    values = fit.family_info.mean(eta) if type == "response" else eta
    return pd.Series(values, index=index, name="predicted")


def _rows_kept(fit: GlmmResult, any_order: bool = False) -> GlmmFrame:
    """The fit's frame when it holds the data's rows; a fit from a file or SQL read them summed
    by covariate pattern and group (and in the database's order), so per-row values need the rows
    given back."""
    rows = fit.frame.rows
    if rows is not None and not (any_order and bool(np.all(rows == 1))):
        raise DataError(
            "this fit read its rows summed by DuckDB (one per covariate pattern and group): "
            "give the rows as newdata, e.g. fit.predict(rows, type='response')"
        )
    return fit.frame


def _unit_deviance(family: str, y: np.ndarray, n: np.ndarray, m: np.ndarray, phi: float | None) -> np.ndarray:
    if family == "binomial":
        return 2.0 * (special.xlogy(y, y / m) + special.xlogy(n - y, (n - y) / (n - m)))
    if family == "poisson":
        return 2.0 * (special.xlogy(y, y / m) - (y - m))
    p = float(phi)  # type: ignore[arg-type]
    return 2.0 * (special.xlogy(y, y / m) - (y + p) * np.log((y + p) / (m + p)))


def residuals(
    fit: GlmmResult, kind: Literal["deviance", "pearson", "response"] = "deviance", *, any_order: bool = False
) -> pd.Series:
    """Residuals of the rows used (see the module docstring); ``any_order``: rows a database read
    one by one may come in its order (for order-free summaries such as quantiles)."""
    f = _rows_kept(fit, any_order)
    mu = fit.family_info.mean(fit.modes.eta)
    m = f.n * mu
    if kind == "response":
        values = f.y / f.n - mu if fit.family == "binomial" else f.y - mu
    elif kind == "pearson":
        phi = fit.dispersion
        var = m * (1 - mu) if fit.family == "binomial" else mu if phi is None else mu + mu**2 / phi
        with np.errstate(divide="ignore", invalid="ignore"):  # a fitted probability of 0 or 1 (separation)
            values = (f.y - m) / np.sqrt(var)
    elif kind == "deviance":
        d = _unit_deviance(fit.family, f.y, f.n, m, fit.dispersion)
        values = np.sign(f.y - m) * np.sqrt(np.maximum(d, 0.0))
    else:
        raise OptionError(f"type must be 'deviance', 'pearson' or 'response', not {kind!r}")
    return pd.Series(values, index=pd.RangeIndex(len(values)), name="residual")
