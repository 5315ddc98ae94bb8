"""Optimise theta on standardised columns, so the fit does not depend on the units.

With K = [X y] and the random-effect pool Z rescaled to unit root mean square,
K* = K D_k and Z* = Z D_z (D diagonal, D = 1 / rms), the model keeps its form:
beta* = D_x^{-1} beta / s_y, sigma* = sigma / s_y, and b* = D_z^{-1} b / s_y, so the relative
covariance factor becomes Lambda* = D_z^{-1} Lambda (row r of each Lambda_f scaled by that
column's rms; columns of identity or exchangeable terms keep their units, as their
form would not survive).  theta* is found on the standardised aggregates -- where a predictor
measured in nanoseconds or in light years gives the same problem -- and mapped back,
theta = D_z theta* row by row; everything else of the fit is then computed from the
original aggregates at that theta.  Every cross-product scales as ``D A D``, exactly what a
pass over the rescaled rows would give.  A fit that ends with a zero diagonal in Lambda gets
more starts (:func:`_zero_column_restart`, :func:`_ridge_restart`), the lower optimum kept.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from hlm.aggregate.stats import Aggregates, CrossBlock, FactorStats
from hlm.lmm.objective import DevianceFunction
from hlm.lmm.optimize import SINGULAR_TOL, OptSummary, minimize
from hlm.lmm.quasi_newton import quasi_newton
from hlm.lmm.start import all_from_moments, anova_start
from hlm.lmm.structure import Structure

# BOBYQA's initial trust radius for crossed scalar intercepts whose every theta starts from its
# ANOVA moment: fewer evaluations than 0.25 on every such design measured (InstEval 59 -> 44,
# Penicillin 89 -> 77); not from lme4's start theta = 1 (weights, slopes), where it was mixed
MOMENT_START_RADIUS = 0.1


def _rms(sumsq: np.ndarray, n: int) -> np.ndarray:
    rms = np.sqrt(np.asarray(sumsq, dtype=float) / max(n, 1))
    return np.where(np.isfinite(rms) & (rms > 0), rms, 1.0)


def column_scales(agg: Aggregates, struct: Structure) -> tuple[np.ndarray, np.ndarray]:
    """Root mean squares of the columns of K = [X y] and of the pool Z (1 for a zero column,
    and for the columns of a structured term -- identity or exchangeable, whose form a
    per-column rescaling would not keep)."""
    k_rms = _rms(np.diag(agg.ktk), agg.nobs)
    z_rms = np.ones(len(agg.pool))
    first_ztz = next((f.ztz for f in agg.factors if f.ztz is not None), None)
    for j, name in enumerate(agg.pool):
        if name in agg.xnames:
            z_rms[j] = k_rms[agg.xnames.index(name)]
        elif first_ztz is not None:
            z_rms[j] = _rms(first_ztz[:, j, j].sum(), agg.nobs)
    for term in struct.terms:
        if term.cov != "unstructured":
            z_rms[[struct.factor_cols[term.factor][i] for i in term.local]] = 1.0
    return k_rms, z_rms


def _scale_factor(fac: FactorStats, dz: np.ndarray, dk: np.ndarray) -> FactorStats:
    pooled = fac.pooled
    if pooled is not None:
        pooled = replace(pooled, sss=pooled.sss * np.multiply.outer(dk, dk), sums=pooled.sums * dk)
    return replace(
        fac,
        pooled=pooled,
        ztz=None if fac.ztz is None else fac.ztz * np.multiply.outer(dz, dz),
        ztk=None if fac.ztk is None else fac.ztk * np.multiply.outer(dz, dk),
    )


def standardized(agg: Aggregates, k_rms: np.ndarray, z_rms: np.ndarray) -> Aggregates:
    """The aggregates of the rows with every column of K and Z divided by its rms."""
    dk, dz = 1.0 / k_rms, 1.0 / z_rms
    cross = tuple(CrossBlock(b.i, b.j, b.gi, b.gj, b.zz * np.multiply.outer(dz, dz)) for b in agg.cross)
    return replace(
        agg,
        ktk=agg.ktk * np.multiply.outer(dk, dk),
        cross=cross,
        factors=tuple(_scale_factor(f, dz, dk) for f in agg.factors),
    )


def _row_scales(struct: Structure, z_rms: np.ndarray) -> np.ndarray:
    """Per theta: the multiplier D_z of its row of Lambda_f (theta = multiplier x theta*)."""
    return np.array([1.0 / z_rms[struct.factor_cols[f][r]] for f, r, _ in struct.theta_pos])


def _ridge_restart(struct: Structure, theta: np.ndarray) -> np.ndarray | None:
    """A second start when a zero diagonal of Lambda has a nonzero entry below it: the
    criterion is then flat along a ridge (that column's entries only matter through their
    norm), which can hold BOBYQA short of a lower boundary point.  The restart is 2 I on
    those factors' blocks (the solution elsewhere), in standardised units; None otherwise."""
    lambdas = struct.lambdas(theta)
    ridge: set[int] = set()
    for f, lam in enumerate(lambdas):
        zero = np.flatnonzero(np.abs(np.diag(lam)) < SINGULAR_TOL)
        if any(np.any(lam[j + 1 :, j] != 0.0) for j in zero):
            ridge.add(f)
    if not ridge:
        return None
    restart = np.array(theta, dtype=float)
    for i, (f, r, c) in enumerate(struct.theta_pos):
        if f in ridge:
            restart[i] = 2.0 if r == c else 0.0
    return restart


def _zero_column_restart(struct: Structure, theta: np.ndarray) -> np.ndarray | None:
    """A start that reopens every column of a vector term's Lambda_f whose diagonal is zero:
    that column becomes 0.3 e_j (standardised units), the rest of theta is kept.  A column
    with a zero diagonal spans only the directions of the columns before it, and BOBYQA can
    settle there at a local optimum above a lower one (kb07-like maximal model: 1.6 above
    lme4's); None when no such column exists."""
    lambdas = struct.lambdas(theta)
    zero = {
        (f, j)
        for f, lam in enumerate(lambdas)
        if lam.shape[0] > 1
        for j in np.flatnonzero(np.abs(np.diag(lam)) < SINGULAR_TOL)
    }
    if not zero:
        return None
    restart = np.array(theta, dtype=float)
    for i, (f, r, c) in enumerate(struct.theta_pos):
        if (f, c) in zero and np.isfinite(struct.lower[i]) == (r == c):
            restart[i] = 0.3 if r == c else 0.0
    return restart


def _search(devfun: DevianceFunction, theta0: np.ndarray, struct: Structure) -> OptSummary:
    """Crossed vector effects with an analytic gradient: the quasi-Newton search and its
    boundary test (:mod:`hlm.lmm.quasi_newton`).  Otherwise BOBYQA from theta0, then the
    restarts of a boundary optimum; the lowest converged kept."""
    if devfun.has_gradient and not struct.structured and any(len(c) > 1 for c in struct.factor_cols):
        return quasi_newton(devfun, theta0, struct)
    gradient = devfun.gradient if devfun.has_gradient else None
    close = devfun.scalar_crossed and all_from_moments(devfun.agg, struct)
    opt = minimize(devfun, theta0, struct.lower, gradient=gradient, radius=MOMENT_START_RADIUS if close else 0.25)
    for start_at in (_zero_column_restart, _ridge_restart):
        if (restart := start_at(struct, np.asarray(opt.theta))) is None:
            continue
        bounded = max(4 * opt.feval, 300)  # extra work
        again = minimize(devfun, restart, struct.lower, maxeval=bounded, gradient=gradient, worse_than=opt.fmin)
        if again.converged and again.fmin < opt.fmin:
            opt = replace(again, theta0=opt.theta0, feval=opt.feval + again.feval, seconds=opt.seconds + again.seconds)
    return opt


def minimize_standardized(agg: Aggregates, struct: Structure, devfun: DevianceFunction) -> OptSummary:
    """Minimise ``devfun`` (built on ``agg``) over theta, searching on standardised columns;
    the summary is in the original theta, its criterion ``devfun``'s there."""
    k_rms, z_rms = column_scales(agg, struct)
    if np.all(k_rms == 1.0) and np.all(z_rms == 1.0):
        return _search(devfun, anova_start(agg, struct), struct)
    std = standardized(agg, k_rms, z_rms)
    opt = _search(devfun.rescaled(std, bool(np.all(z_rms == 1.0))), anova_start(std, struct), struct)
    m = _row_scales(struct, z_rms)
    theta = np.asarray(opt.theta) * m
    return replace(
        opt,
        theta0=tuple(map(float, np.asarray(opt.theta0) * m)),
        theta=tuple(map(float, theta)),
        fmin=float(devfun(theta)),
        gradient=tuple(map(float, np.asarray(opt.gradient) / m)),
    )


def standardized_theta(agg: Aggregates, struct: Structure, theta: np.ndarray) -> np.ndarray:
    """theta* = D_z^{-1} theta: the relative covariance factor on unit-rms columns, where a
    bound (a zero variance) is judged independently of the predictors' units."""
    return np.asarray(theta, dtype=float) / _row_scales(struct, column_scales(agg, struct)[1])
