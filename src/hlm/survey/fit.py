"""Fit a linear mixed model by multilevel pseudo-maximum likelihood (sampling weights at every
level) in memory: validate the weights, lay out the rows along the nesting chain, maximise the
profiled pseudo-likelihood (:mod:`hlm.survey.pseudo`) over theta by BOBYQA, and assemble a
:class:`~hlm.survey.result.PseudoFit` with WeMix's/Stata's cluster-robust SEs."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from hlm.aggregate.memory import aggregate_frame
from hlm.aggregate.stats import Aggregates
from hlm.data.source import to_pandas
from hlm.errors import DataError, NestingError, OptionError
from hlm.lmm.structure import Structure, build_structure
from hlm.modelframe import ModelFrame, build_frame, used_columns
from hlm.numerics.bobyqa import bobyqa
from hlm.spec import ModelSpec
from hlm.survey.pseudo import WeightedRows, evaluate, robust_vcov, weighted_rows
from hlm.survey.result import PseudoFit, varcorr_table
from hlm.survey.weights import LevelWeights, PwScale, check_columns, level_weights


def _labels(mf: ModelFrame, f: int) -> np.ndarray:
    keys = mf.factors[f].keys
    return np.array(["/".join(str(k[g]) for k in keys) for g in range(len(keys[0]))], dtype=object)


@dataclass(frozen=True)
class ChainWeights:
    """The model's nesting chain (innermost first) and each level's sampling weights on it."""

    weights: LevelWeights
    chain: tuple[int, ...]
    codes: list[np.ndarray]  # per chain factor: the rows' group codes
    parents: list[np.ndarray]  # chain level l's groups -> level l + 1's
    top: list[np.ndarray]  # per chain factor: the top-level group of each group


def chain_weights(
    mf: ModelFrame, frame: pd.DataFrame, rows: np.ndarray, pweights: list[str], cond_weights: bool, pwscale: PwScale
) -> ChainWeights:
    """Check the model is nested with one weight column per level and read the level weights."""
    agg = aggregate_frame(mf)
    if agg.chain is None or len(agg.chain) != len(agg.factors):
        raise NestingError(
            "sampling weights need nested grouping factors (each level inside the next); these are crossed"
        )
    chain = agg.chain
    if len(pweights) != len(chain) + 1:
        raise OptionError(
            f"pweights gives {len(pweights)} columns but the model has {len(chain) + 1} levels; give one per level, "
            "the observations' first, then " + ", ".join(mf.factors[f].name for f in chain)
        )
    codes = [mf.factors[f].codes for f in chain]
    parents = list(agg.parents)
    nlev = [len(mf.factors[f].keys[0]) for f in chain]
    values = [frame[c].to_numpy(dtype=float)[rows] for c in pweights]
    lw = level_weights(
        values,
        pweights,
        codes,
        parents,
        nlev,
        [_labels(mf, f) for f in chain],
        conditional=cond_weights,
        pwscale=pwscale,
    )
    top = [np.arange(nlev[-1])]
    for level in range(len(chain) - 2, -1, -1):
        top.insert(0, top[0][parents[level]])
    return ChainWeights(lw, chain, codes, parents, top)


def _layout(mf: ModelFrame, cw: ChainWeights) -> WeightedRows:
    lw = cw.weights
    K = np.column_stack([mf.X, mf.y])
    return weighted_rows(
        mf.Z,
        K,
        lw.cond[0],
        lw.uncond[0],
        cw.codes[0],
        tuple(cw.parents),
        lw.cond[1:],
        lw.uncond[1:],
        tuple(cw.top),
        cw.chain,
    )


def _optimize(wr: WeightedRows, struct: Structure) -> tuple[np.ndarray, str, int]:
    """BOBYQA on -2 log pseudolikelihood, restarted once from its optimum (as lme4's polish)."""

    def fun(theta: np.ndarray) -> float:
        return evaluate(wr, struct, theta).m2loglik

    lower = struct.lower
    run = bobyqa(fun, struct.theta0(), lower, step=0.2, ftol_abs=1e-12, ftol_rel=1e-15, xtol_abs=1e-10, maxeval=20000)
    start = np.where(np.isfinite(lower), np.maximum(run.x, lower + 1e-6), run.x)
    again = bobyqa(fun, start, lower, step=0.01, ftol_abs=1e-13, ftol_rel=1e-16, xtol_abs=1e-11, maxeval=20000)
    best = again if fun(again.x) <= fun(run.x) else run
    return best.x, best.code, run.feval + again.feval


def weighted_frame(
    spec: ModelSpec, data: Any, pweights: list[str] | str, notes: tuple[str, ...]
) -> tuple[ModelFrame, pd.DataFrame, np.ndarray, tuple[str, ...]]:
    """The model frame of the rows with positive sampling weights, the data read, the model
    frame's rows in it and the notes on dropped rows."""
    if not spec.random:
        raise DataError("the model has no random effects; add a term such as (1 | group)")
    pweights = [pweights] if isinstance(pweights, str) else list(pweights)
    cols = list(dict.fromkeys(used_columns(spec) + pweights))
    frame = to_pandas(data, cols, value_labels=spec.syntax != "stata")
    nzero = check_columns(frame, pweights)
    if nzero:
        frame = frame.loc[(frame[pweights] > 0).all(axis=1).to_numpy()].reset_index(drop=True)
        notes += (f"{nzero} rows dropped for a zero sampling weight (as WeMix drops them)",)
    # the row numbers ride along as precision weights, to find the rows the model frame kept
    mf = build_frame(spec, frame, weights=np.arange(1.0, len(frame) + 1.0))
    assert mf.w is not None
    rows = mf.w.astype(np.int64) - 1
    mf = replace(mf, w=None, weights=None)
    if mf.ndropped:
        notes += (f"{mf.ndropped} rows dropped for missing values",)
    if np.linalg.matrix_rank(mf.X) < mf.X.shape[1]:
        raise DataError(
            "the fixed-effects design is rank deficient; drop the collinear columns (not done with pweights)"
        )
    return mf, frame, rows, notes


def fit_pseudo(
    spec: ModelSpec,
    data: Any,
    pweights: list[str],
    *,
    cond_weights: bool = False,
    pwscale: PwScale = None,
    notes: tuple[str, ...] = (),
) -> PseudoFit:
    """Pseudo-ML fit of ``spec`` to an in-memory ``data`` with one sampling-weight column per level
    (observations first); see :mod:`hlm.survey.weights` for the forms and checks."""
    mf, frame, rows, notes = weighted_frame(spec, data, pweights, notes)
    pweights = [pweights] if isinstance(pweights, str) else list(pweights)
    cw = chain_weights(mf, frame, rows, pweights, cond_weights, pwscale)
    return finish_pseudo(spec, _layout(mf, cw), aggregate_frame(mf), pweights, cond_weights, cw.weights.scaling, notes)


def finish_pseudo(
    spec: ModelSpec,
    wr: WeightedRows,
    agg: Aggregates,
    pweights: list[str],
    cond_weights: bool,
    scaling: str,
    notes: tuple[str, ...],
) -> PseudoFit:
    """Maximise the pseudo-likelihood of the weighted statistics ``wr`` (from memory or SQL) and
    assemble the record; ``agg`` supplies the names, counts and the random-effect layout."""
    chain = wr.chain
    struct = build_structure(agg, tuple(t.name for t in spec.random), tuple(t.cov for t in spec.random))
    theta, code, nevals = _optimize(wr, struct)
    pt = evaluate(wr, struct, theta)
    V, Vmodel = robust_vcov(pt)
    return PseudoFit(
        spec=spec,
        xnames=agg.xnames,
        beta=pt.beta,
        vcov=V,
        vcov_model=Vmodel,
        loglik=-0.5 * pt.m2loglik,
        sigma=float(np.sqrt(pt.sigma2)),
        theta=theta,
        varcorr=varcorr_table(struct, agg.pool, agg.factors, theta, pt.sigma2),
        nobs=agg.nobs,
        ngroups={agg.factors[f].name: agg.factors[f].nlevels for f in chain},
        pweights=tuple(pweights),
        cond_weights=cond_weights,
        scaling=scaling,
        weight_sums=(wr.nweights,) + tuple(float(u.sum()) for u in wr.uncond),
        cluster=agg.factors[chain[-1]].name,
        nclusters=len(wr.cond[-1]),
        optimizer=code,
        nevals=nevals,
        rows=wr,
        structure=struct,
        aggregates=agg,
        notes=notes,
    )
