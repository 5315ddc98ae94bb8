"""Parametric bootstrap (lme4's ``bootMer``): simulate responses from the fitted model, refit
from the simulated sufficient statistics, and take percentiles of the replicates.

Each replicate draws b* = Lambda u*, u* ~ N(0, sigma^2 I), e* ~ N(0, sigma^2 I) and
y* = X beta + Z b* + e*.  Only the y-parts of the aggregates change (Z_g'y*, X'y*, y*'y*),
so the refit reuses X'X, Z'Z and Z'X and goes straight to the optimiser.

Nested factors (``how="aggregates"``, the default for them; no rows needed).  Let c_g be
the random effects of leaf group g laid out on the Z-column pool (each level's b* of the
group containing g), A_g = Z_g'Z_g, B_g = X_g'Z_g and C = X'X.  The noise enters through
t = W'e for W = [Z_leaf-blocks, X], t ~ N(0, sigma^2 [[blockdiag A_g, B'], [B, C]]), and
e'e = ||P_W e||^2 + sigma^2 chi2_{n - rank W}.  Drawing t_g = sigma L_g xi_g (A_g = L_g L_g',
by eigen-decomposition, rank r_g) and t_X = sigma (sum_g B_g L_g^{+'} xi_g + L_S xi_X) with
S = C - sum_g B_g A_g^+ B_g' = L_S L_S' reproduces that covariance, and then
||P_W e||^2 = sigma^2 (sum_g |xi_g|^2 + |xi_X|^2).  So

    Z_g'y* = A_g c_g + B_g' beta + t_g,     X'y* = C beta + sum_g B_g c_g + t_X,
    y*'y*  = |mu|^2 + 2 mu'e + e'e,   |mu|^2 = beta'C beta + 2 beta' sum B_g c_g + sum c_g'A_g c_g,
    mu'e   = beta't_X + sum_g c_g't_g,

exactly in distribution, at O(groups) per replicate.  Crossed factors (``how="rows"``) need
one more pass over the rows, so the fit must carry its data (``fit.data``).

Precision weights: the aggregates are those of the rows scaled by sqrt(w), where the errors
are N(0, sigma^2 I), so the draws above hold unchanged; on the rows, e*_i ~ N(0, sigma^2 / w_i)
and the y-parts are re-summed with the weights.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd

from hlm.aggregate.stats import Aggregates, pooled_message
from hlm.errors import OptionError
from hlm.inference.profile import CI_COLUMNS
from hlm.lmm.objective import DevianceFunction
from hlm.lmm.params import VarParams
from hlm.lmm.result import LmmResult
from hlm.numerics.bobyqa import minimize_bounded
from hlm.weights import ARRAY_NAME

Seed = int | np.random.SeedSequence | np.random.Generator | None
How = Literal["auto", "aggregates", "rows"]


@dataclass(frozen=True)
class BootResult:
    """Replicates (nsim, nparams) of the variance parameters (.sigNN, .sigma) and fixed effects."""

    names: tuple[str, ...]
    estimates: np.ndarray
    replicates: np.ndarray
    how: str


class _AggregateSimulator:
    """Draws the y-dependent aggregates of a nested model directly (module docstring)."""

    def __init__(self, fit: LmmResult) -> None:
        agg, struct = fit.aggregates, fit.structure
        if (msg := pooled_message(agg)) is not None:
            raise OptionError(
                f"the parametric bootstrap simulates every group, but {msg}; "
                "use confint(method='profile') or method='wald'"
            )
        assert agg.chain is not None, "nested grouping factors form a chain"
        self.agg, self.struct, self.chain = agg, struct, agg.chain
        p = agg.p
        leaf = agg.factors[self.chain[0]]
        assert leaf.ztz is not None and leaf.ztk is not None  # not pooled, so the groups' arrays are kept
        self.A: np.ndarray = leaf.ztz  # (G, z, z)
        self.B = np.transpose(leaf.ztk[:, :, :p], (0, 2, 1))  # (G, p, z)
        self.C = agg.ktk[:p, :p]
        lam, U = np.linalg.eigh(self.A)
        tol = 1e-10 * np.maximum(lam.max(axis=1, keepdims=True), 1e-300)
        self.keep = lam > tol
        root = np.where(self.keep, np.sqrt(np.where(self.keep, lam, 1.0)), 0.0)
        inv_root = np.where(self.keep, 1.0 / np.where(self.keep, root, 1.0), 0.0)
        self.L = U * root[:, None, :]  # A_g = L L'
        self.BLp = np.einsum("gpz,gzr->gpr", self.B, U * inv_root[:, None, :])  # B_g L_g^{+'}
        S = self.C - np.einsum("gpr,gqr->pq", self.BLp, self.BLp)
        ls, Us = np.linalg.eigh((S + S.T) / 2)
        ks = ls > 1e-10 * max(ls.max(), 1e-300)
        self.LS = Us[:, ks] * np.sqrt(ls[ks])
        rank = int(self.keep.sum()) + int(ks.sum())
        self.resid_df = agg.nobs - rank
        # leaf group -> group at each level of the chain
        anc = [np.arange(leaf.nlevels)]
        for par in agg.parents:
            anc.append(par[anc[-1]])
        self.anc = dict(zip(self.chain, anc))

    def draw(
        self, rng: np.random.Generator, beta: np.ndarray, sigma: float, theta: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, float]:
        agg, struct = self.agg, self.struct
        G, z = self.A.shape[0], self.A.shape[1]
        c = np.zeros((G, z))
        for f, lam in enumerate(struct.lambdas(theta)):
            J = list(struct.factor_cols[f])
            b = sigma * rng.standard_normal((agg.factors[f].nlevels, len(J))) @ lam.T
            c[:, J] += b[self.anc[f]]
        xi = rng.standard_normal((G, z)) * self.keep
        xi_x = rng.standard_normal(self.LS.shape[1])
        t_g = sigma * np.einsum("gzr,gr->gz", self.L, xi)
        t_x = sigma * (np.einsum("gpr,gr->p", self.BLp, xi) + self.LS @ xi_x)
        Ac = np.einsum("gab,gb->ga", self.A, c)
        Bc = np.einsum("gpz,gz->p", self.B, c)
        zty = Ac + np.einsum("gpz,p->gz", self.B, beta) + t_g
        xty = self.C @ beta + Bc + t_x
        mu2 = beta @ self.C @ beta + 2.0 * beta @ Bc + float(np.sum(c * Ac))
        mue = beta @ t_x + float(np.sum(c * t_g))
        ee = sigma**2 * (float(np.sum(xi**2) + np.sum(xi_x**2)) + rng.chisquare(self.resid_df))
        return zty, xty, mu2 + 2.0 * mue + ee

    def aggregates(self, rng: np.random.Generator, beta: np.ndarray, sigma: float, theta: np.ndarray) -> Aggregates:
        zty, xty, yty = self.draw(rng, beta, sigma, theta)
        agg = self.agg
        p = agg.p
        ktk = agg.ktk.copy()
        ktk[:p, p] = ktk[p, :p] = xty
        ktk[p, p] = yty
        leaf_idx = self.chain[0]
        factors = list(agg.factors)
        leaf_ztk = factors[leaf_idx].ztk
        assert leaf_ztk is not None  # checked when built
        ztk = leaf_ztk.copy()
        ztk[:, :, p] = zty
        factors[leaf_idx] = replace(factors[leaf_idx], ztk=ztk)
        return replace(agg, ktk=ktk, factors=tuple(factors))


class _RowSimulator:
    """Simulates y* on the model frame's rows and recomputes the y-parts of the aggregates."""

    def __init__(self, fit: LmmResult) -> None:
        if fit.data is None:
            raise OptionError(
                "this bootstrap needs the rows (crossed factors): fit from a data frame or file, "
                "or use confint(method='profile')"
            )
        from hlm.modelframe import build_frame

        agg = fit.aggregates
        if agg.weights == ARRAY_NAME and fit.weights is None:
            raise OptionError("this bootstrap needs the weights array: refit with hlm.fit(..., weights=...)")
        frame = build_frame(fit.spec, fit.data, fit.weights if fit.weights is not None else agg.weights)
        self.w = frame.w
        self.sd_scale = 1.0 if frame.w is None else 1.0 / np.sqrt(frame.w)
        cols = [list(frame.xnames).index(nm) for nm in agg.xnames]
        self.X, self.Z = frame.X[:, cols], frame.Z
        self.codes = [f.codes for f in frame.factors]
        self.agg, self.struct = agg, fit.structure

    def aggregates(self, rng: np.random.Generator, beta: np.ndarray, sigma: float, theta: np.ndarray) -> Aggregates:
        agg, struct = self.agg, self.struct
        y = self.X @ beta + sigma * self.sd_scale * rng.standard_normal(len(self.X))
        for f, lam in enumerate(struct.lambdas(theta)):
            J = list(struct.factor_cols[f])
            b = sigma * rng.standard_normal((agg.factors[f].nlevels, len(J))) @ lam.T
            y += np.einsum("na,na->n", self.Z[:, J], b[self.codes[f]])
        p = agg.p
        ktk = agg.ktk.copy()
        wy = y if self.w is None else self.w * y
        ktk[:p, p] = ktk[p, :p] = self.X.T @ wy
        ktk[p, p] = y @ wy
        factors = []
        for f, stats in enumerate(agg.factors):
            if stats.ztk is None:
                factors.append(stats)
                continue
            ztk = stats.ztk.copy()
            for a in range(self.Z.shape[1]):
                ztk[:, a, p] = np.bincount(self.codes[f], weights=self.Z[:, a] * wy, minlength=stats.nlevels)
            factors.append(replace(stats, ztk=ztk))
        return replace(agg, ktk=ktk, factors=tuple(factors))


def bootstrap(
    fit: LmmResult, *, nsim: int = 1000, seed: Seed = None, how: How = "auto", progress: bool = True
) -> BootResult:
    """``nsim`` parametric-bootstrap replicates of every variance parameter and fixed effect.

    ``how="aggregates"`` simulates the sufficient statistics directly (nested factors only),
    ``how="rows"`` simulates responses on the rows (needs ``fit.data``); ``"auto"`` picks
    the first that applies.  A rich progress bar is shown when ``progress`` is true.
    """
    if nsim < 1:
        raise OptionError("nsim must be at least 1")
    if how == "auto":
        how = "rows" if fit.devfun.crossed_factors else "aggregates"
    sim: _AggregateSimulator | _RowSimulator
    if how == "aggregates":
        if fit.devfun.crossed_factors:
            raise OptionError("how='aggregates' needs nested grouping factors; use how='rows'")
        sim = _AggregateSimulator(fit)
    elif how == "rows":
        sim = _RowSimulator(fit)
    else:
        raise OptionError(f"unknown how {how!r}; use 'auto', 'aggregates' or 'rows'")
    rng = np.random.default_rng(seed)
    vp = VarParams.of(fit.structure)
    theta0 = np.asarray(fit.theta, dtype=float)
    beta, sigma = fit.profiled.beta, fit.sigma
    lower = np.asarray(fit.structure.lower, dtype=float)
    upper = np.full(len(theta0), np.inf)
    names = tuple(p.name for p in vp.params) + tuple(fit.aggregates.xnames)
    est = np.concatenate([vp.estimates(theta0, sigma), beta])
    out = np.empty((nsim, len(names)))

    def one(i: int) -> None:
        agg = sim.aggregates(rng, beta, sigma, theta0)
        devfun = DevianceFunction.build(agg, fit.structure, fit.reml)
        start = np.where(np.isfinite(lower), np.maximum(theta0, 0.05), theta0)
        theta, _ = minimize_bounded(
            lambda t: devfun(t), start, np.where(np.isfinite(lower), lower, -np.inf), upper, 0.25, ftol=1e-8, xtol=1e-6
        )
        prof = devfun.profiled(theta)
        out[i] = np.concatenate([vp.estimates(theta, float(np.sqrt(prof.sigma2))), prof.beta])

    if progress:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress(
            TextColumn("[bold]bootstrap[/] ({task.fields[how]})"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=True,
        ) as bar:
            task = bar.add_task("bootstrap", total=nsim, how=how)
            for i in range(nsim):
                one(i)
                bar.advance(task)
    else:
        for i in range(nsim):
            one(i)
    return BootResult(names, est, out, how)


def boot_confint(
    fit: LmmResult,
    *,
    level: float = 0.95,
    nsim: int = 1000,
    seed: Seed = None,
    how: How = "auto",
    progress: bool = True,
) -> pd.DataFrame:
    """Percentile intervals from :func:`bootstrap` (lme4's ``confint(method="boot")``)."""
    res = bootstrap(fit, nsim=nsim, seed=seed, how=how, progress=progress)
    lo, hi = np.nanquantile(res.replicates, [(1 - level) / 2, (1 + level) / 2], axis=0)
    vp = VarParams.of(fit.structure)
    rows: list[tuple[object, ...]] = []
    for k, p in enumerate(vp.params):
        rows.append((p.name, p.kind, p.group, p.var1, p.var2, res.estimates[k], lo[k], hi[k], "boot"))
    for j, name in enumerate(fit.aggregates.xnames):
        k = len(vp.params) + j
        rows.append((name, "fixed", None, name, None, res.estimates[k], lo[k], hi[k], "boot"))
    return pd.DataFrame(rows, columns=CI_COLUMNS)
