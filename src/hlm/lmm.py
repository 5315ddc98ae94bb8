"""``hlm.fit``: the public stages of fitting a linear mixed model, as lme4's modular API.

parse the model string -> aggregate the data in one pass -> drop aliased fixed effects ->
lay out theta -> build the deviance function -> optimise -> assemble the :class:`Fit`.
Each stage is a function of its own and can be called separately.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Any

import numpy as np

from hlm.aggregate import Backend, aggregate_any, choose_backend
from hlm.aggregate.memory import aggregate_frame
from hlm.aggregate.stats import Aggregates
from hlm.checks import (
    boundary_messages,
    check_degrees_of_freedom,
    check_identifiable,
    implicit_nesting_warning,
    level_order,
)
from hlm.checks_data import (
    check_finite,
    check_fixed_count,
    check_random_columns,
    check_repeated_effects,
    check_response_varies,
    check_scales,
    within_order_warning,
)
from hlm.core.collinear import remove_collinear
from hlm.core.objective import DevianceFunction
from hlm.core.scaling import minimize_standardized
from hlm.core.structure import build_structure
from hlm.design import with_offset
from hlm.errors import ConvergenceWarning, DataError, OptionError, SingularFitWarning
from hlm.fit import Fit
from hlm.modelframe import build_frame
from hlm.source import check_file
from hlm.spec import ModelSpec, parse_model
from hlm.weights import Weights


def aggregate(
    spec: ModelSpec,
    data: Any,
    *,
    backend: Backend = "auto",
    sql: str | None = None,
    con: Any = None,
    weights: Weights = None,
) -> tuple[Aggregates, Any]:
    """One pass over the rows: the sufficient statistics and formulaic's fixed-part spec.

    ``backend``: "auto" (paths, SQL and duckdb relations -> DuckDB, Spark DataFrames ->
    Spark, frames -> numpy), "memory", "duckdb" or "spark"; see :func:`hlm.aggregate.aggregate_any`.
    ``weights``: precision weights (:mod:`hlm.weights`); every sum over rows is weighted.
    """
    if backend == "auto" and sql is None and choose_backend(data) == "memory":
        frame = build_frame(spec, data, weights)
        return aggregate_frame(frame), frame.x_model_spec
    return aggregate_any(spec, data, backend=backend, sql=sql, con=con, weights=weights)


def fit_aggregates(
    spec: ModelSpec,
    agg: Aggregates,
    *,
    reml: bool = True,
    data: Any = None,
    x_model_spec: Any = None,
    notes: tuple[str, ...] = (),
    weights: Weights = None,
) -> Fit:
    """Fit from precomputed aggregates (any backend); ``weights`` is the precision-weights
    argument they were computed with (kept for fitted values, residuals and the bootstrap)."""
    if not spec.random:
        raise DataError("the model has no random effects; add a term such as (1 | group), or use hlm.xtreg for OLS")
    check_repeated_effects(agg)
    check_scales(agg)
    check_random_columns(agg)
    check_identifiable(spec, agg)
    check_fixed_count(agg.nobs, len(agg.xnames))
    agg, dropped = remove_collinear(agg)
    if dropped:
        notes = notes + (f"omitted because of collinearity: {', '.join(dropped)}",)
    check_response_varies(agg)
    check_degrees_of_freedom(agg)
    struct = build_structure(agg, tuple(t.name for t in spec.random), tuple(t.cov for t in spec.random))
    devfun = DevianceFunction.build(agg, struct, reml)
    opt = minimize_standardized(agg, struct, devfun)
    profiled = devfun.profiled(np.asarray(opt.theta))
    result = Fit(
        spec=spec,
        reml=reml,
        aggregates=agg,
        structure=struct,
        devfun=devfun,
        optsummary=opt,
        profiled=profiled,
        dropped_columns=dropped,
        data=data,
        x_model_spec=x_model_spec,
        notes=notes,
        weights=weights,
    )
    check_finite(result)
    if result.singular:
        warnings.warn(
            "boundary (singular) fit: " + "; ".join(boundary_messages(result)), SingularFitWarning, stacklevel=3
        )
    elif not result.converged:
        warnings.warn(
            f"the optimizer did not pass the convergence checks ({opt.return_code}, scaled gradient "
            f"{opt.scaled_gradient:.2g}); check the model, or rescale predictors",
            ConvergenceWarning,
            stacklevel=3,
        )
    return result


def criterion(spec: ModelSpec, reml: bool | None) -> tuple[bool, tuple[str, ...]]:
    """REML or ML: the ``reml=`` argument, else what the model string says (Stata's ``, mle`` /
    ``, reml`` or its command's default), else REML; with a note when the string chose it.
    An argument that contradicts the string is an :class:`~hlm.errors.OptionError`."""
    if spec.reml is None:
        return (True if reml is None else bool(reml)), ()
    said = "REML" if spec.reml else "ML"
    if reml is not None and bool(reml) != spec.reml:
        asked = "REML" if reml else "ML"
        raise OptionError(
            f"the model string asks for {said} but {asked} was requested (reml={bool(reml)} / --ml); drop one of them"
        )
    if spec.command is not None and not re.search(r",[^|]*\b(mle|ml|reml)\b", spec.text, re.IGNORECASE):
        return spec.reml, (f"{said}: {spec.command} estimates by {said} unless told otherwise",)
    return spec.reml, ()


def fit(
    model: str | ModelSpec,
    data: Any = None,
    *,
    reml: bool | None = None,
    backend: Backend = "auto",
    sql: str | None = None,
    con: Any = None,
    reorder: bool = False,
    weights: Weights = None,
    offset: Any = None,
) -> Fit:
    """Fit a linear mixed model.

    Parameters
    ----------
    model : an lme4 formula (``"y ~ x + (1 | school/class)"``), read with R's semantics
        (``I(x^2)``, ``poly``, ``scale``, ``offset``, R's column names; see :mod:`hlm.spec.rformula`),
        or Stata ``mixed`` syntax (``"y x || school: || class:"``; no ``~``).
    data : pandas or polars DataFrame, pyarrow Table, or a path to .csv, .parquet or .dta.
    reml : REML (True) or maximum likelihood (False); None (default): what the model string
        says (Stata's ``, mle`` / ``, reml``; ``mixed`` means ML, ``xtmixed`` REML), else REML.
        An argument that contradicts the string raises :class:`~hlm.errors.OptionError`.
    backend : "auto" (files, ``sql=`` and duckdb relations -> DuckDB; Spark DataFrames ->
        Spark; frames -> numpy), "memory", "duckdb" or "spark".
    sql, con : aggregate the result of a DuckDB query (on ``con``, default a fresh connection).
    reorder : nested levels listed inner to outer (``|| student: || school:``) raise a
        :class:`~hlm.errors.NestingError` naming the right order; ``reorder=True`` fits that
        order instead, with a :class:`~hlm.errors.StructureWarning` and a note.  See
        :mod:`hlm.checks` for this and the other structure checks.
    weights : PRECISION weights, as lme4's ``lmer(..., weights = w)``: a column name (read
        in the same pass, on every backend) or one value per row; row i has residual
        variance sigma^2 / w_i.  Not sampling (survey) weights.  Numeric, finite, >= 0;
        a zero weight drops the row (counted in the notes).  See :mod:`hlm.weights`.
    offset : as lme4's ``offset=``: a column name or an array with one value per row (the
        same as adding ``offset(...)`` to the formula): y - offset is modelled, and fitted
        values and predictions add it back.
    """
    spec, data = with_offset(parse_model(model), data, offset)
    use_reml, notes = criterion(spec, reml)
    if offset is not None:  # the model string does not show it
        notes += (f"offset: {offset if isinstance(offset, str) else 'the array given as offset='}",)
    if isinstance(data, (str, os.PathLike)):
        check_file(data)
    agg, x_spec = aggregate(spec, data, backend=backend, sql=sql, con=con, weights=weights)
    if (reordered := level_order(spec, agg, reorder=reorder)) is not None:
        spec, note = reordered
        agg, x_spec = aggregate(spec, data, backend=backend, sql=sql, con=con, weights=weights)
        notes += (note,)
    implicit_nesting_warning(spec, agg)
    within_order_warning(spec, agg)
    if agg.ndropped:
        notes += (f"{agg.ndropped} rows dropped for missing values",)
    if agg.weights is not None:
        notes += (f"precision weights {agg.weights}: row i has residual variance sigma^2 / w_i",)
    if agg.zero_weights:
        notes += (f"{agg.zero_weights} rows dropped for a zero weight",)
    return fit_aggregates(spec, agg, reml=use_reml, data=data, x_model_spec=x_spec, notes=notes, weights=weights)
