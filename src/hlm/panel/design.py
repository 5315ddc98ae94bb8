"""From a model string and a data source to the panel design: y, X, panel and cluster codes.

A model is either Stata's ``"y x1 x2 i.f"`` (first token is the response; ``i.x`` is a
factor, ``a#b`` an interaction) or a formula ``"y ~ x1 + C(f) + x1:x2"`` whose right-hand
side goes through formulaic.  xtreg always estimates a constant, so the design always holds
an ``_cons`` column first.  Rows with a missing value in any used column are dropped and
counted.  When the right-hand side names only numeric columns the matrix is built with
numpy directly (no formulaic pass over millions of rows).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hlm.data.source import to_pandas
from hlm.errors import DataError, FormulaError, OptionError
from hlm.spec.factor_variables import stata_column_name
from hlm.spec.stata import parse_stata, split_command

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


@dataclass(frozen=True)
class PanelDesign:
    """The rows a panel model uses.  ``X`` is N x p (column 0 is the constant).  ``y``, ``X``
    and ``codes`` are None when the rows stay in an engine (:mod:`hlm.panel.engine`)."""

    model: str
    response: str
    names: tuple[str, ...]
    y: np.ndarray | None
    X: np.ndarray | None
    codes: np.ndarray | None
    panels: np.ndarray
    panel_var: str
    cluster_codes: np.ndarray | None
    cluster_var: str | None
    n_clusters: int
    n_dropped: int


def parse_model(model: str) -> tuple[str, str, str]:
    """``(response, formulaic right-hand side, syntax)`` of a Stata or formula model string."""
    if not isinstance(model, str) or not model.strip():
        raise FormulaError("the model is empty; write it as 'y x1 x2' or 'y ~ x1 + x2'")
    command, begin = split_command(model)
    if command is not None and command != "xtreg":
        raise FormulaError(f"'{command}' fits a mixed model: use hlm.fit (or 'hlm fit')")
    model = model[begin:]
    if "|" in model:
        raise FormulaError(
            "a panel model has no random-effects levels ('|'); the panel is given by panel=", model, model.index("|")
        )
    if "~" in model:
        lhs, rhs = model.split("~", 1)
        response = lhs.strip()
        if not _NAME.match(response):
            raise FormulaError("the response must be a column name", model, 0)
        rhs = rhs.strip() or "1"
        syntax = "formula"
    else:
        if "," in model and "nocon" in model[model.index(",") :].lower():
            raise FormulaError("xtreg always estimates a constant; remove 'noconstant'", model, model.index(","))
        if "," in model:
            raise FormulaError(
                "options such as ', fe' are keyword arguments here (estimator='fe')", model, model.index(",")
            )
        spec = parse_stata(model)
        response, rhs, syntax = spec.response, spec.fixed, "stata"
    return response, rhs, syntax


def _plain_columns(rhs: str, frame: pd.DataFrame) -> list[str] | None:
    """The column names when ``rhs`` is ``a + b + ...`` of numeric columns, else None."""
    if rhs == "1":
        return []
    parts = [p.strip() for p in rhs.split("+")]
    if all(_NAME.match(p) and "." not in p for p in parts) and all(
        p in frame.columns and pd.api.types.is_numeric_dtype(frame[p]) and not pd.api.types.is_bool_dtype(frame[p])
        for p in parts
    ):
        return list(dict.fromkeys(parts))
    return None


def _matrix(rhs: str, frame: pd.DataFrame, model: str, syntax: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Model matrix with ``_cons`` as column 0, in Fortran order (columns contiguous); Stata
    models name factor columns as Stata does (``1990.year``)."""
    N = len(frame)
    plain = _plain_columns(rhs, frame)
    if plain is not None:
        X = np.empty((N, 1 + len(plain)), order="F")
        X[:, 0] = 1.0
        for j, col in enumerate(plain, start=1):
            X[:, j] = frame[col].to_numpy(dtype=float)
        return X, ("_cons", *plain)
    import formulaic

    try:
        mm = formulaic.model_matrix(rhs, frame, na_action="ignore")
    except Exception as exc:  # formulaic raises many types for bad formulas
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FormulaError(f"cannot build the model matrix: {first}", model) from None
    names = [str(c) for c in mm.columns]
    if "Intercept" not in names:
        raise FormulaError("xtreg always estimates a constant; remove '0 +' / '- 1' from the model", model)
    order = [names.index("Intercept")] + [j for j, c in enumerate(names) if c != "Intercept"]
    values = np.asarray(mm, dtype=float)
    X = np.asfortranarray(values[:, order])
    rename = stata_column_name if syntax == "stata" else str
    return X, ("_cons", *[rename(names[j]) for j in order[1:]])


def required_columns(rhs: str) -> list[str]:
    """Data columns the right-hand side uses."""
    if rhs == "1":
        return []
    import formulaic

    try:
        return sorted(formulaic.Formula(rhs).required_variables)
    except Exception as exc:
        raise FormulaError(f"cannot parse the right-hand side '{rhs}': {exc}") from None


def sorted_codes(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Codes 0..n-1 of a column's values in sorted label order.  Integer ids in a compact
    range are coded by a presence count (O(N), no hashing); others by pd.factorize."""
    values = column.to_numpy()
    if values.dtype.kind in "iu" and len(values):
        lo, hi = int(values.min()), int(values.max())
        if hi - lo <= 4 * len(values):
            offset = (values - lo).astype(np.intp, copy=False)
            present = np.bincount(offset, minlength=hi - lo + 1) > 0
            rank = np.cumsum(present, dtype=np.intp) - 1
            return rank[offset], np.flatnonzero(present) + lo
    codes, labels = pd.factorize(column, sort=True)
    return codes, np.asarray(labels)


def build_design(model: str, data: Any, *, panel: str, cluster: str | None = None) -> PanelDesign:
    """Parse, select columns, drop incomplete rows and code panels (sorted labels)."""
    if not isinstance(panel, str) or not panel:
        raise OptionError("panel= must name the panel variable (Stata's xtset / i())")
    response, rhs, syntax = parse_model(model)
    used = [response, *required_columns(rhs), panel] + ([cluster] if cluster else [])
    frame = to_pandas(data, list(dict.fromkeys(used)), value_labels=False)  # Stata: values, not labels
    incomplete = frame.isna().to_numpy().any(axis=1)
    n_dropped = int(incomplete.sum())
    if n_dropped:
        frame = frame.loc[~incomplete]
    if len(frame) == 0:
        raise DataError("no complete rows: every row has a missing value in a used column")
    if not pd.api.types.is_numeric_dtype(frame[response]) or pd.api.types.is_bool_dtype(frame[response]):
        raise DataError(f"the response '{response}' must be numeric")
    y = frame[response].to_numpy(dtype=float)
    X, names = _matrix(rhs, frame, model, syntax)
    if not (np.isfinite(y).all() and np.isfinite(X).all()):
        raise DataError("the response or a regressor has infinite values; remove or recode them")
    codes, panels = sorted_codes(frame[panel])
    cluster_codes, n_clusters = None, 0
    if cluster:
        cluster_codes, labels = pd.factorize(frame[cluster], sort=True)
        n_clusters = len(labels)
        if n_clusters < 2:
            raise OptionError(f"cluster variable '{cluster}' has a single cluster; cluster-robust SEs need at least 2")
    return PanelDesign(
        model=model,
        response=response,
        names=names,
        y=y,
        X=X,
        codes=codes.astype(np.intp, copy=False),
        panels=panels,
        panel_var=panel,
        cluster_codes=cluster_codes,
        cluster_var=cluster,
        n_clusters=n_clusters,
        n_dropped=n_dropped,
    )
