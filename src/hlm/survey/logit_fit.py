"""Fit a logit with nested random intercepts (two or three levels) by multilevel pseudo-ML
(:mod:`hlm.survey.logit`): BOBYQA over (the SDs, beta) on the adaptive Gauss-Hermite
pseudo-likelihood, polished once from its optimum, then WeMix's full sandwich over (beta, the
variances) clustered at the top-level groups."""

from __future__ import annotations

from typing import Any

import numpy as np

from hlm.errors import DataError, OptionError
from hlm.glmm.stata import command_of, read_command
from hlm.modelframe import ModelFrame
from hlm.numerics.bobyqa import bobyqa
from hlm.numerics.derivatives import derivatives
from hlm.spec import ModelSpec, parse_model
from hlm.survey.fit import ChainWeights, chain_weights, weighted_frame
from hlm.survey.logit import BinaryRows, group_loglik, weighted_glm
from hlm.survey.logit_result import PseudoLogitFit
from hlm.survey.weights import PwScale

BOUNDARY = 1e-4  # an intercept variance below this is on its boundary: no sandwich over it


def _estimate(rows: BinaryRows, nagq: int, beta0: np.ndarray, L: int) -> tuple[np.ndarray, str, int]:
    """BOBYQA over x = (the L level SDs, beta)."""

    def fun(x: np.ndarray) -> float:
        value = -2.0 * float(group_loglik(rows, x[L:], x[:L], nagq).sum())
        return value if np.isfinite(value) else np.inf

    x0 = np.concatenate([np.ones(L), beta0])
    lower = np.concatenate([np.zeros(L), np.full(len(beta0), -np.inf)])
    run = bobyqa(fun, x0, lower, step=0.2, ftol_abs=1e-10, ftol_rel=1e-14, xtol_abs=1e-9, maxeval=20_000)
    polish = bobyqa(fun, run.x, lower, step=0.01, ftol_abs=1e-12, ftol_rel=1e-15, xtol_abs=1e-10, maxeval=20_000)
    best = polish if fun(polish.x) <= fun(run.x) else run
    return best.x, best.code, run.feval + polish.feval


def sandwich(
    rows: BinaryRows, nagq: int, beta: np.ndarray, variances: np.ndarray, free: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """(cluster-robust, model-based) vcov of phi = (beta, the ``free`` variances):
    H^-1 [K/(K-1) sum g_k g_k'] H^-1 and -H^-1, by Richardson-extrapolated central differences of
    the top-level groups' contributions (the other variances held at their estimates)."""
    p = len(beta)
    phi = np.concatenate([beta, variances[free]])

    def per_group(x: np.ndarray) -> np.ndarray:
        v = variances.copy()
        v[free] = x[p:]
        return group_loglik(rows, x[:p], np.sqrt(v), nagq)

    h = 1e-3 * np.maximum(np.abs(phi), 1e-2)
    _, g, H = derivatives(per_group, phi, h, levels=2)
    Hinv = np.linalg.inv(H.sum(axis=2))
    K = g.shape[1]
    return Hinv @ (K / (K - 1) * g @ g.T) @ Hinv, -Hinv


def _binary_rows(mf: ModelFrame, cw: ChainWeights) -> BinaryRows:
    lw = cw.weights
    if len(cw.chain) == 1:
        return BinaryRows(mf.y, mf.X, lw.cond[0], cw.codes[0], lw.cond[1])
    return BinaryRows(mf.y, mf.X, lw.cond[0], cw.codes[0], lw.cond[1], cw.parents[0], lw.cond[2])


def fit_pseudo_logit(
    spec: ModelSpec,
    data: Any,
    pweights: list[str],
    *,
    cond_weights: bool = False,
    pwscale: PwScale = None,
    nagq: int = 13,
    notes: tuple[str, ...] = (),
) -> PseudoLogitFit:
    """Pseudo-ML fit of a binary ``spec`` with nested random intercepts at two or three levels."""
    if not isinstance(nagq, int) or isinstance(nagq, bool) or nagq < 1:
        raise OptionError(f"nagq must be a whole number >= 1, not {nagq!r}")
    mf, frame, rows, notes = weighted_frame(spec, data, pweights, notes)
    intercepts = all([mf.pool[c] for c in cols] == ["(Intercept)"] for cols in mf.term_columns)
    if not intercepts or len(mf.term_columns) > 2:
        raise OptionError("a weighted logit takes nested random intercepts at two or three levels; no slopes")
    if not np.isin(mf.y, (0.0, 1.0)).all():
        raise DataError(f"the response '{spec.response}' of a weighted logit must be coded 0/1")
    pweights = [pweights] if isinstance(pweights, str) else list(pweights)
    cw = chain_weights(mf, frame, rows, pweights, cond_weights, pwscale)
    br, L = _binary_rows(mf, cw), len(cw.chain)
    x, code, nevals = _estimate(br, nagq, weighted_glm(br, cw.weights.uncond[0]), L)
    variances, beta = x[:L] ** 2, x[L:]
    free = [level for level in range(L) if variances[level] > BOUNDARY]
    V, Vmodel = sandwich(br, nagq, beta, variances, free)
    names = [mf.factors[f].name for f in cw.chain]
    if len(free) < L:
        notes += ("a variance on its boundary 0 is left out of the sandwich (held at 0)",)
    return PseudoLogitFit(
        spec=spec,
        xnames=mf.xnames,
        beta=beta,
        variances=dict(zip(names, variances.tolist())),
        vcov=V,
        vcov_model=Vmodel,
        free=tuple(names[level] for level in free),
        loglik=float(group_loglik(br, beta, x[:L], nagq).sum()),
        nagq=nagq,
        nobs=len(mf.y),
        ngroups={name: len(mf.factors[f].keys[0]) for name, f in zip(names, cw.chain)},
        pweights=tuple(pweights),
        cond_weights=cond_weights,
        scaling=cw.weights.scaling,
        cluster=names[-1],
        optimizer=code,
        nevals=nevals,
        notes=notes,
    )


def fit_weighted_glmm(
    model: str | ModelSpec,
    data: Any,
    family: str,
    link: str | None,
    nagq: int | None,
    pweights: list[str],
    cond_weights: bool,
    pwscale: PwScale,
) -> PseudoLogitFit:
    """``hlm.fit`` with pweights and a GLMM family or command (``melogit``): the weighted logit,
    refusing every other family and link."""
    if isinstance(model, str) and command_of(model) is not None:
        read = read_command(model)
        if family not in ("gaussian", read.family) or link not in (None, read.link):
            raise OptionError(f"the model's command fits {read.family} ({read.link}); it contradicts family=/link=")
        if read.exposure is not None or read.offset is not None:
            raise OptionError("exposure()/offset() are not available for a weighted logit")
        model, family, link = read.model, read.family, read.link
    if family != "binomial" or link not in (None, "logit"):
        raise OptionError(
            f"sampling weights fit the logit only (family='binomial', link='logit'), not {family} ({link or 'default'})"
        )
    nagq = 13 if nagq is None else nagq
    return fit_pseudo_logit(parse_model(model), data, pweights, cond_weights=cond_weights, pwscale=pwscale, nagq=nagq)
