"""Fit a two-level random-intercept logit by multilevel pseudo-ML (:mod:`hlm.survey.logit`):
BOBYQA over (tau, beta) on the adaptive Gauss-Hermite pseudo-likelihood, polished once from
its optimum, then WeMix's full sandwich over (beta, tau^2) clustered at the groups."""

from __future__ import annotations

from typing import Any

import numpy as np

from hlm.errors import DataError, OptionError
from hlm.glmm.stata import command_of, read_command
from hlm.numerics.bobyqa import bobyqa
from hlm.numerics.derivatives import derivatives
from hlm.spec import ModelSpec, parse_model
from hlm.survey.fit import chain_weights, weighted_frame
from hlm.survey.logit import BinaryRows, group_loglik, weighted_glm
from hlm.survey.logit_result import PseudoLogitFit
from hlm.survey.weights import PwScale

BOUNDARY = 1e-4  # an intercept variance below this is on its boundary: no sandwich over it


def _estimate(rows: BinaryRows, nagq: int, beta0: np.ndarray) -> tuple[np.ndarray, str, int]:
    def fun(x: np.ndarray) -> float:
        value = -2.0 * float(group_loglik(rows, x[1:], float(x[0]), nagq).sum())
        return value if np.isfinite(value) else np.inf

    x0 = np.concatenate([[1.0], beta0])
    lower = np.concatenate([[0.0], np.full(len(beta0), -np.inf)])
    run = bobyqa(fun, x0, lower, step=0.2, ftol_abs=1e-10, ftol_rel=1e-14, xtol_abs=1e-9, maxeval=20_000)
    polish = bobyqa(fun, run.x, lower, step=0.01, ftol_abs=1e-12, ftol_rel=1e-15, xtol_abs=1e-10, maxeval=20_000)
    best = polish if fun(polish.x) <= fun(run.x) else run
    return best.x, best.code, run.feval + polish.feval


def sandwich(rows: BinaryRows, nagq: int, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cluster-robust, model-based) vcov of phi = (beta, tau^2): H^-1 [K/(K-1) sum g_k g_k'] H^-1
    and -H^-1, by Richardson-extrapolated central differences of the groups' contributions."""
    p = rows.X.shape[1]

    def per_group(x: np.ndarray) -> np.ndarray:
        tau = float(np.sqrt(x[p])) if len(x) > p else float(np.sqrt(phi[p]))
        return group_loglik(rows, x[:p], tau, nagq)

    h = 1e-3 * np.maximum(np.abs(phi), 1e-2)
    _, g, H = derivatives(per_group, phi, h, levels=2)
    Hinv = np.linalg.inv(H.sum(axis=2))
    K = rows.ngroups
    return Hinv @ (K / (K - 1) * g @ g.T) @ Hinv, -Hinv


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
    """Pseudo-ML fit of a binary ``spec`` with one random intercept, weights for both levels."""
    if not isinstance(nagq, int) or isinstance(nagq, bool) or nagq < 1:
        raise OptionError(f"nagq must be a whole number >= 1, not {nagq!r}")
    mf, frame, rows, notes = weighted_frame(spec, data, pweights, notes)
    intercept_only = len(mf.term_columns) == 1 and [mf.pool[c] for c in mf.term_columns[0]] == ["(Intercept)"]
    if not intercept_only:
        raise OptionError("a weighted logit takes one random intercept (1 | group), two levels; no slopes or nesting")
    if not np.isin(mf.y, (0.0, 1.0)).all():
        raise DataError(f"the response '{spec.response}' of a weighted logit must be coded 0/1")
    pweights = [pweights] if isinstance(pweights, str) else list(pweights)
    cw = chain_weights(mf, frame, rows, pweights, cond_weights, pwscale)
    lw = cw.weights
    br = BinaryRows(mf.y, mf.X, lw.cond[0], cw.codes[0], lw.cond[1])
    x, code, nevals = _estimate(br, nagq, weighted_glm(br, lw.uncond[0]))
    tau, beta = float(x[0]), x[1:]
    if tau**2 > BOUNDARY:
        V, Vmodel = sandwich(br, nagq, np.append(beta, tau**2))
    else:
        V, Vmodel = sandwich(br, nagq, beta)
        notes += ("the intercept variance is on its boundary 0: the sandwich covers beta alone",)
    group = mf.factors[cw.chain[0]].name
    return PseudoLogitFit(
        spec=spec,
        xnames=mf.xnames,
        beta=beta,
        variance=tau**2,
        vcov=V,
        vcov_model=Vmodel,
        loglik=float(group_loglik(br, beta, tau, nagq).sum()),
        nagq=nagq,
        nobs=len(mf.y),
        ngroups={group: br.ngroups},
        pweights=tuple(pweights),
        cond_weights=cond_weights,
        scaling=lw.scaling,
        cluster=group,
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
