"""How the unexplained variance splits across levels, and how sure we are of it.

The variance parameters and their covariance come from :mod:`hlm.inference.varcomp`:
eta = (log sd, atanh r per random term, log sigma), Cov(eta-hat) = 2 H^{-1} from the
observed information of the fit's criterion; components on the boundary (zero SD, |r| = 1)
are held fixed and get no standard error.  :func:`varcomp_table` shows those numbers in
Stata's order of levels.

Variance share per level (random intercepts): with level variances v_l and residual
sigma^2, T = sum v_l + sigma^2; share_l = v_l / T; for nested levels the intra-class
correlation of two observations in the same level-l group is (v_l + sum of outer levels'
v) / T (crossed factors: v_l / T).  CIs: variances on the log scale, shares and ICCs on
the logit scale, delta method with Cov(eta-hat).  With random slopes a level's variance is
v = z' Sigma z, Sigma_ij = sd_i sd_j r_ij, and depends on the covariates z; it is reported
at the values in ``at`` (default 0, where the variance is the intercept variance).  Its
gradient in eta is exact:

    dv / d log sd_i = 2 z_i (Sigma z)_i,   dv / d atanh r_ij = 2 z_i z_j sd_i sd_j (1 - r_ij^2),
    d sigma^2 / d log sigma = 2 sigma^2,

and for a sum S of variances out of T, d log S = dS / S and
d logit(S / T) = dS / S - (dT - dS) / (T - S).

R^2 (Nakagawa & Schielzeth 2013, Johnson 2014): sigma_f^2 = var(X beta) over the rows
(n - 1 denominator, as MuMIn), sigma_r^2 = sum_f mean over rows of z' Sigma_f z =
trace(Sigma_f Z_f'Z_f) / n; marginal R^2 = sigma_f^2 / (sigma_f^2 + sigma_r^2 + sigma^2),
conditional = (sigma_f^2 + sigma_r^2) / (same).

Precision weights (:mod:`hlm.weights`): sigma^2 is the residual variance of a row of
weight 1 (row i has sigma^2 / w_i), so the shares and ICCs are those of such a row.  R^2
has no single residual variance to use and is refused for weighted fits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from hlm.errors import DataError
from hlm.lmm.information import VarCompInfo
from hlm.lmm.params import VarParams
from hlm.lmm.ranef import factor_order
from hlm.lmm.result import LmmResult

VARCOMP_COLUMNS = ["level", "group", "var1", "var2", "estimate", "std_error", "conf_low", "conf_high"]
ICC_COLUMNS = [
    "level",
    "variance",
    "variance_low",
    "variance_high",
    "share",
    "share_low",
    "share_high",
    "icc",
    "icc_low",
    "icc_high",
]


# ---- the random-effects parameter table ----------------------------------------------------
def stata_factor_order(fit: LmmResult) -> list[int]:
    """Factors outermost first (Stata's order of levels): for nested chains the reverse of
    the chain, for crossed factors fewest levels first."""
    if fit.aggregates.chain is not None:
        return list(reversed(fit.aggregates.chain))
    return list(reversed(factor_order(fit)))


def varcomp_table(fit: LmmResult, vc: VarCompInfo | None = None, *, level: float = 0.95) -> pd.DataFrame:
    """:func:`hlm.inference.varcomp.varcomp` (SDs and correlations with SEs and CIs on the
    log-SD / atanh scale) in Stata's order: levels outermost first; within a term slopes
    before the intercept, then correlations (var1 before var2 in the term's column order)."""
    from hlm.inference.varcomp import varcomp

    frame = varcomp(fit, level=level, info=vc)
    struct, factors = fit.structure, fit.aggregates.factors
    order = {f: i for i, f in enumerate(stata_factor_order(fit))}
    keyed, residual = [], None
    columns = (frame["estimate"], frame["std_error"], frame["conf_low"], frame["conf_high"])
    for p, *values in zip(VarParams.of(struct).params, *columns):
        numbers = tuple(float(v) for v in values)
        if p.kind == "sigma":
            residual = ("Residual", "Residual", None, None) + numbers
            continue
        term = struct.terms[p.term]
        a, b = min(p.i, p.j), max(p.i, p.j)
        if term.cov != "unstructured":  # one SD (and one correlation) for all the term's effects
            within = (int(p.kind == "cor"), 0, p.term, 0)
            v1, v2 = p.var1, p.var2
        elif p.kind == "sd":
            within = (0, int(term.columns[a] == "(Intercept)"), p.term, a)
            v1, v2 = term.columns[a], None
        else:
            within = (1, 0, p.term, a * 1000 + b)
            v1, v2 = term.columns[a], term.columns[b]
        keyed.append(((order[term.factor], within), (factors[term.factor].name, term.group, v1, v2) + numbers))
    keyed.sort(key=lambda item: item[0])
    return pd.DataFrame([row for _, row in keyed] + [residual], columns=VARCOMP_COLUMNS)


# ---- variance share per level ---------------------------------------------------------------
def _level_variances(
    fit: LmmResult, info: VarCompInfo, at: Mapping[str, float], levels: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """[v_level for levels..., sigma^2] with v = z' Sigma_f z at covariates ``at``, and their
    gradients in eta (rows; see the module docstring)."""
    struct, params, est = fit.structure, info.vp.params, info.estimates
    row = {f: r for r, f in enumerate(levels)}
    v = np.zeros(len(levels) + 1)
    grad = np.zeros((len(levels) + 1, len(params)))
    sds = [np.zeros(len(t.columns)) for t in struct.terms]
    cors = [np.eye(len(t.columns)) for t in struct.terms]
    for p, e in zip(params, est):
        shared = p.term >= 0 and struct.terms[p.term].cov != "unstructured"
        if p.kind == "sd":
            sds[p.term][slice(None) if shared else p.i] = e
        elif p.kind == "cor" and shared:  # exchangeable: every pair
            cors[p.term][:] = e
            np.fill_diagonal(cors[p.term], 1.0)
        elif p.kind == "cor":
            cors[p.term][p.i, p.j] = cors[p.term][p.j, p.i] = e
    zs = [np.array([1.0 if c == "(Intercept)" else float(at.get(c, 0.0)) for c in t.columns]) for t in struct.terms]
    covz = []
    for t, term in enumerate(struct.terms):
        cov = np.outer(sds[t], sds[t]) * cors[t]
        covz.append(cov @ zs[t])
        v[row[term.factor]] += float(zs[t] @ covz[t])
    for k, p in enumerate(params):
        if p.kind == "sigma":
            v[-1] = est[k] ** 2
            grad[-1, k] = 2.0 * est[k] ** 2
            continue
        z, r = zs[p.term], row[struct.terms[p.term].factor]
        if struct.terms[p.term].cov != "unstructured":  # v_t = s^2 z'[(1 - r) I + r J] z
            sd = sds[p.term][0]
            grad[r, k] = (
                2.0 * float(z @ covz[p.term])
                if p.kind == "sd"
                else sd**2 * (z.sum() ** 2 - z @ z) * (1.0 - est[k] ** 2)
            )
        elif p.kind == "sd":
            grad[r, k] = 2.0 * z[p.i] * covz[p.term][p.i]
        else:
            sd = sds[p.term]
            grad[r, k] = 2.0 * z[p.i] * z[p.j] * sd[p.i] * sd[p.j] * (1.0 - est[k] ** 2)
    return v, grad


def icc_table(
    fit: LmmResult, at: Mapping[str, float] | None = None, *, level: float = 0.95, vc: VarCompInfo | None = None
) -> pd.DataFrame:
    """One row per level (innermost first) and the residual; see the module docstring.

    ``at`` maps random-slope column names (as in ``fit.varcorr``'s var1) to the covariate
    values at which slope variances enter; unnamed columns are 0.  ``vc`` is
    :attr:`hlm.lmm.result.LmmResult.varcomp_info`'s result when already computed.
    """
    at = dict(at or {})
    known = {c for t in fit.structure.terms for c in t.columns}
    unknown = sorted(set(at) - known)
    if unknown:
        raise DataError(
            f"at= names {', '.join(unknown)}, which are not random-effect columns ({', '.join(sorted(known))})"
        )
    info = fit.varcomp_info if vc is None else vc
    levels = list(fit.aggregates.chain) if fit.aggregates.chain is not None else factor_order(fit)
    v, grad = _level_variances(fit, info, at, levels)
    full = np.zeros((len(info.free), len(info.free)))
    full[np.ix_(info.free, info.free)] = info.vcov
    z = stats.norm.ppf(0.5 + level / 2)
    nested = fit.aggregates.chain is not None
    total, grad_total = float(v.sum()), grad.sum(axis=0)
    names = [fit.aggregates.factors[f].name for f in levels] + ["Residual"]

    def ci(members: list[int], logit: bool) -> tuple[float, float]:
        """Delta-method limits of log(S) (back: exp) or logit(S / T) (back: expit), S the
        variance of ``members``."""
        s = float(v[members].sum())
        rest = total - s
        if not s > 0 or (logit and not rest > 0):
            return float("nan"), float("nan")
        g = grad[members].sum(axis=0)
        if logit:
            val, d = math.log(s / rest), g / s - (grad_total - g) / rest
        else:
            val, d = math.log(s), g / s
        se = math.sqrt(max(float(d @ full @ d), 0.0))
        if se == 0 or not np.isfinite(se):
            return float("nan"), float("nan")
        lo, hi = val - z * se, val + z * se
        return (_expit(lo), _expit(hi)) if logit else (math.exp(lo), math.exp(hi))

    rows = []
    for r, name in enumerate(names):
        vlo, vhi = ci([r], logit=False)
        slo, shi = ci([r], logit=True)
        if r == len(names) - 1:
            icc, ilo, ihi = float("nan"), float("nan"), float("nan")
        else:
            members = list(range(r, len(levels))) if nested else [r]
            icc = float(v[members].sum()) / total
            ilo, ihi = ci(members, logit=True)
        rows.append((name, float(v[r]), vlo, vhi, float(v[r]) / total, slo, shi, icc, ilo, ihi))
    out = pd.DataFrame(rows, columns=ICC_COLUMNS)
    slopes = sorted({c for t in fit.structure.terms for c in t.columns if c != "(Intercept)"})
    notes = []
    if slopes:
        shown = ", ".join(f"{c} = {at.get(c, 0.0):g}" for c in slopes)
        notes.append(
            "with random slopes a level's variance is z' Sigma z and changes with the covariates; "
            f"shares and ICCs shown at {shown}"
        )
    if not nested and len(levels) > 1:
        notes.append(
            "crossed factors: the ICC of a factor is the correlation of two observations that "
            "share only that factor's group"
        )
    out.attrs["note"] = "; ".join(notes)
    return out


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ---- R^2 ----------------------------------------------------------------------------------
def _column_sums(fit: LmmResult) -> np.ndarray:
    """Sum over rows of each fixed-effect column (from an intercept in X or in the Z pool)."""
    agg = fit.aggregates
    for icol, name in enumerate(agg.xnames):
        if name in ("(Intercept)", "_cons"):
            return agg.ktk[icol, : len(agg.xnames)]
    if "(Intercept)" in agg.pool:
        c = agg.pool.index("(Intercept)")
        for fac in agg.factors:
            if fac.ztk is not None:
                return fac.ztk[:, c, : len(agg.xnames)].sum(axis=0)
    raise DataError("R^2 needs the column means of X: the model has no intercept in the fixed or random part")


def _global_ztz(fit: LmmResult) -> np.ndarray:
    for fac in fit.aggregates.factors:
        if fac.ztz is not None:
            return fac.ztz.sum(axis=0)
    raise DataError("the aggregates carry no Z'Z")


def r2_table(fit: LmmResult) -> dict[str, float]:
    """Nakagawa & Schielzeth marginal and conditional R^2 (Johnson's extension for slopes)."""
    agg = fit.aggregates
    if agg.weights is not None:
        raise DataError(
            "R^2 is not defined for a fit with precision weights (the residual variance sigma^2 / w_i "
            "differs by row); report the variance components or fit without weights"
        )
    n, p = fit.nobs, len(agg.xnames)
    beta = np.asarray(fit.profiled.beta, dtype=float)
    ss = float(beta @ agg.ktk[:p, :p] @ beta)
    mean = float(_column_sums(fit) @ beta) / n
    var_f = (ss - n * mean**2) / (n - 1)
    ztz = _global_ztz(fit)
    lambdas = fit.structure.lambdas(fit.theta)
    var_r = 0.0
    for f, cols in enumerate(fit.structure.factor_cols):
        if not cols:
            continue
        sigma_f = fit.sigma**2 * lambdas[f] @ lambdas[f].T
        var_r += float(np.trace(sigma_f @ ztz[np.ix_(list(cols), list(cols))])) / n
    var_e = fit.sigma**2
    tot = var_f + var_r + var_e
    return {
        "marginal": var_f / tot,
        "conditional": (var_f + var_r) / tot,
        "var_fixed": var_f,
        "var_random": var_r,
        "var_residual": var_e,
    }
