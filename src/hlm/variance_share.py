"""How the unexplained variance splits across levels, and how sure we are of it.

Variance-component parameters (Stata's ``mixed`` parameterisation): for each random term,
phi holds log sd of each column and atanh of each correlation; last comes log sigma.
They map to lme4's theta through Lambda_t = chol(Sigma_t / sigma^2).  With beta profiled
out, the deviance as a function of (theta, sigma) is

    ML:    -2 log L   = log|H| + n log(2 pi sigma^2) + r2(theta) / sigma^2
    REML:  -2 log L_R = log|H| + log|Q_XX| + (n - p) log(2 pi sigma^2) + r2(theta) / sigma^2

(r2 the penalised residual sum of squares).  The covariance of phi-hat is twice the
inverse of the deviance's Hessian at the optimum (central finite differences; profiling
beta out leaves the phi-block of the inverse information unchanged).  Components on the
boundary (sd = 0, |corr| = 1) are held fixed and get no standard error.

Variance share per level (random intercepts): with level variances v_l and residual
sigma^2, T = sum v_l + sigma^2; share_l = v_l / T; for nested levels the intra-class
correlation of two observations in the same level-l group is (v_l + sum of outer levels'
v) / T (crossed factors: v_l / T).  CIs: variances on the log scale, shares and ICCs on
the logit scale, delta method with the covariance of phi-hat.  With random slopes a
level's variance is z' Sigma z and depends on the covariates z; it is reported at the
values in ``at`` (default 0, where the variance is the intercept variance).

R^2 (Nakagawa & Schielzeth 2013, Johnson 2014): sigma_f^2 = var(X beta) over the rows
(n - 1 denominator, as MuMIn), sigma_r^2 = sum_f mean over rows of z' Sigma_f z =
trace(Sigma_f Z_f'Z_f) / n; marginal R^2 = sigma_f^2 / (sigma_f^2 + sigma_r^2 + sigma^2),
conditional = (sigma_f^2 + sigma_r^2) / (same).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np
import pandas as pd
from scipy import stats

from hlm.core.deviance import LOG2PI
from hlm.errors import DataError
from hlm.ranef import factor_columns, factor_order

if TYPE_CHECKING:
    from hlm.fit import Fit

VARCOMP_COLUMNS = ["level", "group", "var1", "var2", "estimate", "std_error", "conf_low", "conf_high"]
ICC_COLUMNS = ["level", "variance", "variance_low", "variance_high", "share", "share_low", "share_high",
               "icc", "icc_low", "icc_high"]
BOUNDARY_SD = 1e-6  # relative to sigma
BOUNDARY_CORR = 1.0 - 1e-6


@dataclass(frozen=True)
class Param:
    """One variance-component parameter on its estimation scale."""

    kind: str  # "sd" | "corr" | "residual"
    factor: int  # -1 for the residual
    term: int  # index into Structure.terms (-1 for the residual)
    i: int  # local positions within the term's columns
    j: int
    name: str


@dataclass(frozen=True)
class VarCompCov:
    """phi-hat, which entries are free, and the covariance of the free ones."""

    params: tuple[Param, ...]
    phi: np.ndarray
    free: np.ndarray  # bool
    cov: np.ndarray  # (nfree, nfree)
    hessian_evals: int

    def full_cov(self) -> np.ndarray:
        """Covariance of all phi (zeros for fixed boundary parameters)."""
        out = np.zeros((len(self.phi), len(self.phi)))
        idx = np.flatnonzero(self.free)
        out[np.ix_(idx, idx)] = self.cov
        return out


# ---- parameterisation --------------------------------------------------------------------
def parameters(fit: "Fit") -> tuple[tuple[Param, ...], np.ndarray]:
    """The phi parameters and their estimates (log sd, atanh corr, log sigma)."""
    lambdas = fit.structure.lambdas(fit.theta)
    params, phi = [], []
    for t, term in enumerate(fit.structure.terms):
        loc = list(term.local)
        lam = lambdas[term.factor][np.ix_(loc, loc)]
        cov = fit.sigma ** 2 * lam @ lam.T
        sd = np.sqrt(np.diag(cov))
        for i, col in enumerate(term.columns):
            params.append(Param("sd", term.factor, t, i, i, f"sd({col})"))
            phi.append(math.log(sd[i]) if sd[i] > 0 else -np.inf)
        for i in range(len(term.columns)):
            for j in range(i + 1, len(term.columns)):
                params.append(Param("corr", term.factor, t, i, j, f"corr({term.columns[i]},{term.columns[j]})"))
                r = cov[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else 0.0
                phi.append(math.atanh(float(np.clip(r, -1 + 1e-15, 1 - 1e-15))))
    params.append(Param("residual", -1, -1, 0, 0, "sd(Residual)"))
    phi.append(math.log(fit.sigma))
    return tuple(params), np.array(phi)


def term_cov_from_phi(fit: "Fit", params: tuple[Param, ...], phi: np.ndarray) -> list[np.ndarray]:
    """Sigma_t (absolute scale) for every term."""
    out = [np.zeros((len(t.columns), len(t.columns))) for t in fit.structure.terms]
    sds = [np.zeros(len(t.columns)) for t in fit.structure.terms]
    for p, value in zip(params, phi):
        if p.kind == "sd":
            sds[p.term][p.i] = math.exp(value) if np.isfinite(value) else 0.0
    for t in range(len(out)):
        out[t][np.diag_indices_from(out[t])] = 1.0
    for p, value in zip(params, phi):
        if p.kind == "corr":
            out[p.term][p.i, p.j] = out[p.term][p.j, p.i] = math.tanh(value)
    return [np.outer(s, s) * c for s, c in zip(sds, out)]


def _safe_chol(a: np.ndarray) -> np.ndarray:
    """Cholesky factor of a PSD matrix; a zero pivot gives a zero column."""
    n = a.shape[0]
    L = np.zeros_like(a)
    for j in range(n):
        d = a[j, j] - L[j, :j] @ L[j, :j]
        if d <= 1e-300:
            continue
        L[j, j] = math.sqrt(d)
        for i in range(j + 1, n):
            L[i, j] = (a[i, j] - L[i, :j] @ L[j, :j]) / L[j, j]
    return L


def theta_from_phi(fit: "Fit", params: tuple[Param, ...], phi: np.ndarray) -> tuple[np.ndarray, float]:
    """lme4's theta and sigma for phi."""
    sigma = math.exp(phi[-1])
    covs = term_cov_from_phi(fit, params, phi)
    struct = fit.structure
    lambdas = [np.zeros((len(c), len(c))) for c in struct.factor_cols]
    for term, cov in zip(struct.terms, covs):
        loc = list(term.local)
        lambdas[term.factor][np.ix_(loc, loc)] = _safe_chol(cov / sigma ** 2)
    theta = np.array([lambdas[f][r, c] for f, r, c in struct.theta_pos])
    return theta, sigma


def deviance_at(fit: "Fit", theta: np.ndarray, sigma: float) -> float:
    """-2 log L (ML) or -2 log L_R (REML) at (theta, sigma), beta profiled out."""
    prof = fit.devfun.profiled(theta)
    n, p = fit.nobs, len(fit.aggregates.xnames)
    s2 = sigma ** 2
    if fit.reml:
        return prof.logdet_h + prof.logdet_x + (n - p) * (LOG2PI + math.log(s2)) + prof.pwrss / s2
    return prof.logdet_h + n * (LOG2PI + math.log(s2)) + prof.pwrss / s2


def boundary_mask(fit: "Fit", params: tuple[Param, ...], phi: np.ndarray) -> np.ndarray:
    """True for parameters held fixed: sd at zero, |corr| at one, or a corr of a zero sd."""
    fixed = np.zeros(len(phi), dtype=bool)
    sd_zero: set[tuple[int, int]] = set()
    for k, p in enumerate(params):
        if p.kind == "sd" and (not np.isfinite(phi[k]) or math.exp(phi[k]) < BOUNDARY_SD * fit.sigma):
            fixed[k] = True
            sd_zero.add((p.term, p.i))
    for k, p in enumerate(params):
        if p.kind == "corr" and (abs(math.tanh(phi[k])) > BOUNDARY_CORR or (p.term, p.i) in sd_zero
                                 or (p.term, p.j) in sd_zero):
            fixed[k] = True
    return fixed


def varcomp_cov(fit: "Fit", *, step: float = 1e-3) -> VarCompCov:
    """Covariance of phi-hat from a central-difference Hessian of the deviance."""
    params, phi = parameters(fit)
    free = ~boundary_mask(fit, params, phi)
    idx = np.flatnonzero(free)
    k = len(idx)
    evals = 0

    def dev(delta: np.ndarray) -> float:
        nonlocal evals
        evals += 1
        x = phi.copy()
        x[idx] += delta
        theta, sigma = theta_from_phi(fit, params, x)
        return deviance_at(fit, theta, sigma)

    f0 = dev(np.zeros(k))
    H = np.empty((k, k))
    e = np.eye(k) * step
    plus = [dev(e[a]) for a in range(k)]
    minus = [dev(-e[a]) for a in range(k)]
    for a in range(k):
        H[a, a] = (plus[a] - 2 * f0 + minus[a]) / step ** 2
        for b in range(a + 1, k):
            H[a, b] = H[b, a] = (dev(e[a] + e[b]) - dev(e[a] - e[b]) - dev(e[b] - e[a]) + dev(-e[a] - e[b])) / (4 * step ** 2)
    try:
        cov = 2.0 * np.linalg.inv(H)
    except np.linalg.LinAlgError:
        cov = np.full((k, k), np.nan)
    if np.any(np.diag(cov) < 0):
        cov = np.full((k, k), np.nan)
    return VarCompCov(params, phi, free, cov, evals)


# ---- the random-effects parameter table ----------------------------------------------------
def stata_factor_order(fit: "Fit") -> list[int]:
    """Factors outermost first (Stata's order of levels): for nested chains the reverse of
    the chain, for crossed factors fewest levels first."""
    if fit.aggregates.chain is not None:
        return list(reversed(fit.aggregates.chain))
    return list(reversed(factor_order(fit)))


def varcomp_table(fit: "Fit", vc: VarCompCov | None = None, *, level: float = 0.95) -> pd.DataFrame:
    """SDs and correlations with delta-method SEs and CIs (log sd, atanh corr), Stata's order:
    levels outermost first; within a term slopes before the intercept, then correlations."""
    vc = vc or varcomp_cov(fit)
    z = stats.norm.ppf(0.5 + level / 2)
    full = vc.full_cov()
    rows = []
    order = {f: i for i, f in enumerate(stata_factor_order(fit))}
    keyed = []
    for k, p in enumerate(vc.params):
        if p.kind == "residual":
            continue
        cols = fit.structure.terms[p.term].columns
        within = (0, int(cols[p.i] == "(Intercept)"), p.term, p.i) if p.kind == "sd" else (1, 0, p.term, p.i * 1000 + p.j)
        keyed.append(((order[p.factor], within), k))
    keyed.sort()
    for _, k in keyed + [((0,), len(vc.params) - 1)]:
        p = vc.params[k]
        free = bool(vc.free[k])
        se_phi = math.sqrt(full[k, k]) if free and np.isfinite(full[k, k]) else float("nan")
        if p.kind == "corr":
            est = math.tanh(vc.phi[k])
            se = (1 - est ** 2) * se_phi
            lo, hi = math.tanh(vc.phi[k] - z * se_phi), math.tanh(vc.phi[k] + z * se_phi)
            term = fit.structure.terms[p.term]
            v1, v2 = term.columns[p.i], term.columns[p.j]
            group = term.group
        else:
            est = math.exp(vc.phi[k]) if np.isfinite(vc.phi[k]) else 0.0
            se = est * se_phi
            lo, hi = math.exp(vc.phi[k] - z * se_phi), math.exp(vc.phi[k] + z * se_phi)
            if p.kind == "sd":
                term = fit.structure.terms[p.term]
                group, v1, v2 = term.group, term.columns[p.i], None
            else:
                group, v1, v2 = "Residual", None, None
        if not free:
            se, lo, hi = float("nan"), float("nan"), float("nan")
        lev = fit.aggregates.factors[p.factor].name if p.factor >= 0 else "Residual"
        rows.append((lev, group, v1, v2, est, se, lo, hi))
    return pd.DataFrame(rows, columns=VARCOMP_COLUMNS)


# ---- LR test versus the linear model --------------------------------------------------------
@dataclass(frozen=True)
class LRTestLinear:
    statistic: float
    df: int
    p_value: float
    chibar: bool  # chibar2(01) (one component) or conservative chi2(df)
    loglik_linear: float

    def to_dict(self) -> dict:
        return {"statistic": self.statistic, "df": self.df, "p_value": self.p_value,
                "distribution": "chibar2(01)" if self.chibar else f"chi2({self.df})",
                "loglik_linear": self.loglik_linear}


def lr_test_linear(fit: "Fit") -> LRTestLinear:
    """Stata's "LR test vs. linear model": OLS from K'K; REML fits compare REML criteria."""
    ktk = fit.aggregates.ktk
    n, p = fit.nobs, len(fit.aggregates.xnames)
    xtx, xty, yty = ktk[:p, :p], ktk[:p, p], ktk[p, p]
    if p:
        beta = np.linalg.solve(xtx, xty)
        rss = float(yty - xty @ beta)
        logdet_x = float(np.linalg.slogdet(xtx)[1])
    else:
        rss, logdet_x = float(yty), 0.0
    if fit.reml:
        dev_lin = (n - p) * (1 + LOG2PI + math.log(rss / (n - p))) + logdet_x
    else:
        dev_lin = n * (1 + LOG2PI + math.log(rss / n))
    lr = max(dev_lin - fit.profiled.objective, 0.0)
    k = fit.structure.ntheta
    if k == 1:
        pval = 0.5 * float(stats.chi2.sf(lr, 1)) if lr > 0 else 1.0
    else:
        pval = float(stats.chi2.sf(lr, k))
    return LRTestLinear(lr, k, pval, k == 1, -0.5 * dev_lin)


# ---- variance share per level ---------------------------------------------------------------
def _level_variances(fit: "Fit", params: tuple[Param, ...], at: Mapping[str, float],
                     levels: list[int]) -> Callable[[np.ndarray], np.ndarray]:
    """phi -> [v_level for levels..., sigma^2] with v = z' Sigma_f z at covariates ``at``."""
    zvec = {}
    for f in levels:
        cols = factor_columns(fit, f)
        zvec[f] = np.array([1.0 if c == "(Intercept)" else float(at.get(c, 0.0)) for c in cols])

    def fn(phi: np.ndarray) -> np.ndarray:
        covs = term_cov_from_phi(fit, params, phi)
        out = []
        for f in levels:
            v = 0.0
            for term, cov in zip(fit.structure.terms, covs):
                if term.factor == f:
                    zt = zvec[f][list(term.local)]
                    v += float(zt @ cov @ zt)
            out.append(v)
        out.append(math.exp(2 * phi[-1]))
        return np.array(out)

    return fn


def _grad(fn: Callable[[np.ndarray], float], phi: np.ndarray, free: np.ndarray, h: float = 1e-6) -> np.ndarray:
    g = np.zeros(len(phi))
    for k in np.flatnonzero(free):
        e = np.zeros(len(phi))
        e[k] = h
        g[k] = (fn(phi + e) - fn(phi - e)) / (2 * h)
    return g


def _logit(x: float) -> float:
    return math.log(x / (1 - x)) if 0 < x < 1 else float("nan")


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def icc_table(fit: "Fit", at: Mapping[str, float] | None = None, *, level: float = 0.95,
              vc: VarCompCov | None = None) -> pd.DataFrame:
    """One row per level (innermost first) and the residual; see the module docstring.

    ``at`` maps random-slope column names (as in ``fit.varcorr``'s var1) to the covariate
    values at which slope variances enter; unnamed columns are 0.
    """
    at = dict(at or {})
    known = {c for t in fit.structure.terms for c in t.columns}
    unknown = sorted(set(at) - known)
    if unknown:
        raise DataError(f"at= names {', '.join(unknown)}, which are not random-effect columns "
                        f"({', '.join(sorted(known))})")
    vc = vc or varcomp_cov(fit)
    levels = list(fit.aggregates.chain) if fit.aggregates.chain is not None else factor_order(fit)
    fn = _level_variances(fit, vc.params, at, levels)
    full = vc.full_cov()
    z = stats.norm.ppf(0.5 + level / 2)
    nested = fit.aggregates.chain is not None
    v = fn(vc.phi)
    total = float(v.sum())
    rows = []
    names = [fit.aggregates.factors[f].name for f in levels] + ["Residual"]

    def ci(g: Callable[[np.ndarray], float], back: Callable[[float], float]) -> tuple[float, float]:
        val = g(vc.phi)
        if not np.isfinite(val):
            return float("nan"), float("nan")
        grad = _grad(g, vc.phi, vc.free)
        se = math.sqrt(max(float(grad @ full @ grad), 0.0))
        if se == 0 or not np.isfinite(se):
            return float("nan"), float("nan")
        return back(val - z * se), back(val + z * se)

    for r, name in enumerate(names):
        var = float(v[r])
        vlo, vhi = ci(lambda x, r=r: math.log(fn(x)[r]) if fn(x)[r] > 0 else float("nan"), math.exp)
        share = var / total
        slo, shi = ci(lambda x, r=r: _logit(fn(x)[r] / fn(x).sum()), _expit)
        if r == len(names) - 1:
            icc, ilo, ihi = float("nan"), float("nan"), float("nan")
        else:
            members = list(range(r, len(levels))) if nested else [r]
            icc = float(v[members].sum()) / total
            ilo, ihi = ci(lambda x, m=members: _logit(fn(x)[m].sum() / fn(x).sum()), _expit)
        rows.append((name, var, vlo, vhi, share, slo, shi, icc, ilo, ihi))
    out = pd.DataFrame(rows, columns=ICC_COLUMNS)
    slopes = sorted({c for t in fit.structure.terms for c in t.columns if c != "(Intercept)"})
    notes = []
    if slopes:
        shown = ", ".join(f"{c} = {at.get(c, 0.0):g}" for c in slopes)
        notes.append("with random slopes a level's variance is z' Sigma z and changes with the covariates; "
                     f"shares and ICCs shown at {shown}")
    if not nested and len(levels) > 1:
        notes.append("crossed factors: the ICC of a factor is the correlation of two observations that "
                     "share only that factor's group")
    out.attrs["note"] = "; ".join(notes)
    return out


# ---- R^2 ----------------------------------------------------------------------------------
def _column_sums(fit: "Fit") -> np.ndarray:
    """Sum over rows of each fixed-effect column (from an intercept in X or in the Z pool)."""
    agg = fit.aggregates
    for icol, name in enumerate(agg.xnames):
        if name in ("(Intercept)", "_cons"):
            return agg.ktk[icol, :len(agg.xnames)]
    if "(Intercept)" in agg.pool:
        c = agg.pool.index("(Intercept)")
        for fac in agg.factors:
            if fac.ztk is not None:
                return fac.ztk[:, c, :len(agg.xnames)].sum(axis=0)
    raise DataError("R^2 needs the column means of X: the model has no intercept in the fixed or random part")


def _global_ztz(fit: "Fit") -> np.ndarray:
    for fac in fit.aggregates.factors:
        if fac.ztz is not None:
            return fac.ztz.sum(axis=0)
    raise DataError("the aggregates carry no Z'Z")


def r2_table(fit: "Fit") -> dict[str, float]:
    """Nakagawa & Schielzeth marginal and conditional R^2 (Johnson's extension for slopes)."""
    agg = fit.aggregates
    n, p = fit.nobs, len(agg.xnames)
    beta = np.asarray(fit.profiled.beta, dtype=float)
    ss = float(beta @ agg.ktk[:p, :p] @ beta)
    mean = float(_column_sums(fit) @ beta) / n
    var_f = (ss - n * mean ** 2) / (n - 1)
    ztz = _global_ztz(fit)
    lambdas = fit.structure.lambdas(fit.theta)
    var_r = 0.0
    for f, cols in enumerate(fit.structure.factor_cols):
        if not cols:
            continue
        sigma_f = fit.sigma ** 2 * lambdas[f] @ lambdas[f].T
        var_r += float(np.trace(sigma_f @ ztz[np.ix_(list(cols), list(cols))])) / n
    var_e = fit.sigma ** 2
    tot = var_f + var_r + var_e
    return {"marginal": var_f / tot, "conditional": (var_f + var_r) / tot,
            "var_fixed": var_f, "var_random": var_r, "var_residual": var_e}
