"""The stages of fitting a linear mixed model, as lme4's modular API names them.

parse the model string -> aggregate the data in one pass (:func:`aggregate`, lme4's ``lFormula``)
-> drop aliased fixed effects -> lay out theta -> build the deviance function (``mkLmerDevfun``)
-> optimise (``optimizeLmer``) -> assemble the record (``mkMerMod``), all in :func:`fit_aggregates`.
Each stage is a function of its own; :func:`hlm.api.fit` composes them for users.
"""

from __future__ import annotations

import re
import warnings
from typing import Any, TypeVar

import numpy as np

from hlm.aggregate import Backend, aggregate_any
from hlm.aggregate.stats import Aggregates
from hlm.errors import ConvergenceWarning, DataError, OptionError, SingularFitWarning
from hlm.lmm.checks import (
    boundary_messages,
    check_degrees_of_freedom,
    check_identifiable,
)
from hlm.lmm.checks_data import (
    check_finite,
    check_fixed_count,
    check_random_columns,
    check_repeated_effects,
    check_response_varies,
    check_scales,
)
from hlm.lmm.collinear import remove_collinear
from hlm.lmm.objective import DevianceFunction
from hlm.lmm.result import LmmResult
from hlm.lmm.scaling import minimize_standardized
from hlm.lmm.structure import build_structure
from hlm.spec import ModelSpec
from hlm.weights import Weights

R = TypeVar("R", bound=LmmResult)


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
    record: type[R] = LmmResult,  # type: ignore[assignment]
) -> R:
    """Fit from precomputed aggregates (any backend); ``weights`` is the precision-weights
    argument they were computed with (kept for fitted values, residuals and the bootstrap).
    ``record`` is the result class built at the end (the record, or a subclass such as
    :class:`hlm.api.Fit`)."""
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
    result = record(
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
