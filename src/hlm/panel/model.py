"""Linear panel estimators with Stata ``xtreg`` conventions, fitted from sufficient statistics.

Model y_it = a + x_it'b + u_i + e_it for panels i = 1..n with T_i rows each (N rows in all,
k slopes, K = k + 1 coefficients with ``_cons``).  All estimators solve a system from the
moment matrices of :mod:`hlm.panel.stats`:

- ``pooled``: OLS (Stata ``regress``), s^2 = SSR / (N - K).
- ``fe`` (within): b = W_xx^-1 W_xy with W = Z'Z - sum_i S_i S_i'/T_i, sigma_e^2 = SSR /
  (N - n - k); Stata's ``_cons`` = ybar - xbar'b with Var = sigma_e^2/N + xbar'V_b xbar;
  u_i = ybar_i - xbar_i'b - _cons, sigma_u = sd(u_i) over panels; F test that all u_i = 0.
- ``be``: OLS on the n panel means, unweighted.
- ``re``: GLS by quasi-demeaning z_it - theta_i zbar_i, theta_i = 1 - sqrt(sigma_e^2 /
  (T_i sigma_u^2 + sigma_e^2)), V = s^2 (X*'X*)^-1 with s^2 = SSR*/(N - K).  sigma_e^2 is the
  within estimate.  sigma_u^2 by Swamy-Arora as Stata's default: SSR_be/(n - K) -
  sigma_e^2/Tbar, Tbar the harmonic mean of T_i; or, with ``sa=True``, Baltagi-Chang
  (Stata's ``re sa``): (sum_i T_i ubar_i^2 - (n - K) sigma_e^2) / (N - tr[(X'PX)^-1 X'Z Z'X])
  from the T_i-weighted between regression.  Negative estimates are set to 0.

R-squared within / between / overall follow Stata: squared correlations of (y - ybar_i,
(x - xbar_i)'b), (ybar_i, xbar_i'b) over panels and (y, x'b) over rows, for each
estimator's slopes b.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats as sps

from hlm.aggregate import choose_backend
from hlm.errors import DataError, OptionError
from hlm.lmm.checks_data import check_panel_response
from hlm.lmm.collinear import independent_columns
from hlm.panel import covariance as cov
from hlm.panel.design import PanelDesign, build_design
from hlm.panel.engine import engine_design
from hlm.panel.results import PanelFit, TestStat
from hlm.panel.stats import PanelStats, panel_stats

Estimator = Literal["fe", "re", "be", "pooled"]
VCE = Literal["conventional", "robust", "cluster"]
_ESTIMATORS = ("fe", "re", "be", "pooled")
_VCES = ("conventional", "robust", "cluster")


def xtreg(
    model: str,
    data: Any,
    *,
    panel: str,
    estimator: Estimator = "re",
    vce: VCE = "conventional",
    cluster: str | None = None,
    sa: bool = False,
) -> PanelFit:
    """Fit a linear panel model as Stata's ``xtreg`` does: without an ``estimator`` the
    random-effects GLS (Stata's default, ``re``), else ``fe``, ``be`` or ``pooled``.

    ``model`` is ``"y x1 x2"`` (Stata) or ``"y ~ x1 + x2"`` (formula); ``panel`` names the
    panel variable.  ``vce="robust"`` with ``fe``/``re`` clusters on the panel variable, as
    Stata does; ``vce="cluster"`` needs ``cluster=``.  ``sa=True`` (``re`` only) uses the
    Baltagi-Chang variance components.
    """
    if estimator not in _ESTIMATORS:
        raise OptionError(f"estimator must be one of {', '.join(_ESTIMATORS)}, not {estimator!r}")
    if vce not in _VCES:
        raise OptionError(f"vce must be one of {', '.join(_VCES)}, not {vce!r}")
    if vce == "cluster" and not cluster:
        raise OptionError("vce='cluster' needs cluster= naming the cluster variable")
    if cluster and vce != "cluster":
        raise OptionError("cluster= is only used with vce='cluster'")
    if estimator == "be" and vce != "conventional":
        raise OptionError("xtreg, be has no robust or cluster-robust standard errors (as in Stata)")
    if sa and estimator != "re":
        raise OptionError("sa=True (Baltagi-Chang variance components) applies to estimator='re' only")
    fitter = {"fe": _fit_fe, "re": _fit_re, "be": _fit_be, "pooled": _fit_pooled}[estimator]
    backend = choose_backend(data)
    if backend != "memory" and (vce == "conventional" or backend == "spark"):
        if vce != "conventional":
            raise OptionError(
                "robust and cluster standard errors need a second pass over the rows, which the "
                "Spark path does not make yet; use vce='conventional' or collect the rows"
            )
        design, stats = engine_design(model, data, panel=panel)  # one GROUP BY where the data is
        check_panel_response((*design.names, design.response), stats.N, stats.ZZ, stats.S, stats.T, estimator)
        return fitter(design, stats, vce, sa)
    if vce == "robust" and estimator in ("fe", "re"):
        vce, cluster = "cluster", panel  # Stata: xtreg, fe/re vce(robust) = vce(cluster panelvar)
        design = build_design(model, data, panel=panel, cluster=None)
        design = _with_panel_clusters(design)
    else:
        design = build_design(model, data, panel=panel, cluster=cluster)
    stats = panel_stats(design)
    check_panel_response((*design.names, design.response), stats.N, stats.ZZ, stats.S, stats.T, estimator)
    if vce == "cluster" and estimator in ("fe", "re"):
        assert design.codes is not None and design.cluster_codes is not None  # built from the rows
        cov.check_nested(design.codes, design.cluster_codes, stats.n)
    return fitter(design, stats, vce, sa)


def _with_panel_clusters(design: PanelDesign) -> PanelDesign:
    from dataclasses import replace

    return replace(design, cluster_codes=design.codes, cluster_var=design.panel_var, n_clusters=len(design.panels))


# ----------------------------------------------------------------------------- algebra


def ols(M: np.ndarray, kx: list[int]) -> tuple[np.ndarray, np.ndarray, float]:
    """(A^-1, b, SSR) of the regression of the last column on columns kx of moment matrix M."""
    y = M.shape[0] - 1
    Ainv = np.linalg.inv(M[np.ix_(kx, kx)])
    Ainv = (Ainv + Ainv.T) / 2
    b = Ainv @ M[kx, y]
    ssr = float(M[y, y] - b @ M[kx, y])
    return Ainv, b, max(ssr, 0.0)


def _corr2(M: np.ndarray, idx: list[int], b: np.ndarray) -> float:
    """Squared correlation of y and x'b from a centred moment matrix M."""
    y = M.shape[0] - 1
    vxb = float(b @ M[np.ix_(idx, idx)] @ b)
    if vxb <= 0 or M[y, y] <= 0:
        return float("nan")
    return float((b @ M[idx, y]) ** 2 / (vxb * M[y, y]))


def _r2s(stats: PanelStats, idx: list[int], b: np.ndarray) -> tuple[float, float, float]:
    """Stata's R-squared (within, between, overall) for slopes b on columns idx."""
    mu = stats.ZZ[0] / stats.N
    overall = stats.ZZ - stats.N * np.outer(mu, mu)
    within = stats.within
    mbar = stats.means.mean(axis=0)
    between = stats.between(weighted=False) - stats.n * np.outer(mbar, mbar)
    return _corr2(within, idx, b), _corr2(between, idx, b), _corr2(overall, idx, b)


def _wald(b: np.ndarray, V: np.ndarray) -> float:
    if len(b) == 0:
        return float("nan")
    return float(b @ np.linalg.solve(V, b))


def _f_test(b: np.ndarray, V: np.ndarray, df2: float) -> TestStat:
    k = len(b)
    F = _wald(b, V) / k if k else float("nan")
    return TestStat("F", F, k, df2, float(sps.f.sf(F, k, df2)) if k else float("nan"))


def _chi2_test(b: np.ndarray, V: np.ndarray) -> TestStat:
    k = len(b)
    W = _wald(b, V)
    return TestStat("chi2", W, k, None, float(sps.chi2.sf(W, k)) if k else float("nan"))


def _panel_shape(stats: PanelStats) -> dict[str, Any]:
    return dict(
        nobs=stats.N, ngroups=stats.n, T_min=int(stats.T.min()), T_avg=float(stats.T.mean()), T_max=int(stats.T.max())
    )


def _common(design: PanelDesign, stats: PanelStats, vce: str) -> dict[str, Any]:
    return dict(
        model=design.model,
        response=design.response,
        panel_var=design.panel_var,
        vce=vce,
        cluster_var=design.cluster_var if vce == "cluster" else None,
        n_clusters=design.n_clusters if vce == "cluster" else None,
        n_dropped=design.n_dropped,
        stats=stats,
        **_panel_shape(stats),
    )


def _slopes_last_cons(
    names: tuple[str, ...], kx: list[int], b: np.ndarray, V: np.ndarray
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Reorder (``_cons`` first) -> Stata's order (slopes, then ``_cons``)."""
    order = list(range(1, len(kx))) + [0]
    terms = tuple(names[kx[i]] for i in order)
    return terms, b[order], V[np.ix_(order, order)]


def _by_panel(design: PanelDesign, values: np.ndarray) -> pd.Series:
    return pd.Series(values, index=pd.Index(design.panels, name=design.panel_var))


def _omitted(names: tuple[str, ...], kept: list[int], candidates: list[int]) -> tuple[str, ...]:
    return tuple(names[j] for j in candidates if j not in kept)


def _cluster_vcov(design: PanelDesign, Xt: np.ndarray, e: np.ndarray, bread: np.ndarray, K: int) -> np.ndarray:
    assert design.cluster_codes is not None  # vce="cluster" names the clusters
    meat = cov.cluster_meat(Xt, e, design.cluster_codes, design.n_clusters)
    q = cov.stata_scale("cluster", len(e), K, design.n_clusters)
    return cov.sandwich(bread, meat, q)


# ----------------------------------------------------------------------------- estimators


def _within(
    stats: PanelStats, names: tuple[str, ...]
) -> tuple[np.ndarray, list[int], np.ndarray, np.ndarray, float, int, tuple[str, ...]]:
    """Within regression: (W, slope columns, A^-1, b, SSR, df)."""
    p = stats.ZZ.shape[0] - 1
    W = stats.within
    cand = list(range(1, p))
    slopes = independent_columns(W, cand, np.diag(stats.ZZ))
    if not slopes:
        raise DataError("no regressor varies within panels; the within estimator has nothing to estimate")
    Ainv, b, ssr = ols(W, slopes)
    df = stats.N - stats.n - len(slopes)
    if df <= 0:
        raise DataError(f"too few rows for the within estimator: N - n - k = {df}")
    return W, slopes, Ainv, b, ssr, df, _omitted(names, slopes, cand)


def _fit_fe(design: PanelDesign, stats: PanelStats, vce: str, sa: bool) -> PanelFit:
    N, n, y = stats.N, stats.n, stats.ZZ.shape[0] - 1
    W, slopes, Ainv, b, ssr, df, omitted = _within(stats, design.names)
    k = len(slopes)
    s2 = ssr / df
    xbar, ybar = stats.ZZ[0, slopes] / N, stats.ZZ[0, y] / N
    cons = ybar - xbar @ b
    means = stats.means
    a = means[:, y] - means[:, slopes] @ b  # alpha_i = _cons + u_i
    u = a - cons
    if vce == "cluster":
        assert design.y is not None and design.X is not None and design.codes is not None  # rows in memory
        e = design.y - design.X[:, slopes] @ b - a[design.codes]
        Vb = _cluster_vcov(design, design.X[:, slopes], e, Ainv, k + 1)
        var_cons = float(xbar @ Vb @ xbar)
        df_t = design.n_clusters - 1
    else:
        Vb = s2 * Ainv
        var_cons = s2 / N + float(xbar @ Vb @ xbar)
        df_t = df
    V = np.empty((k + 1, k + 1))
    V[:k, :k] = Vb
    V[:k, k] = V[k, :k] = -Vb @ xbar
    V[k, k] = var_cons
    params = np.append(b, cons)
    terms = tuple(design.names[j] for j in slopes) + ("_cons",)
    sigma_e = float(np.sqrt(s2))
    sigma_u = float(np.std(u, ddof=1)) if n > 1 else float("nan")
    # F test that all u_i = 0: pooled OLS on the same regressors against the within fit
    _, _, ssr_pooled = ols(stats.ZZ, [0] + slopes)
    F_u = ((ssr_pooled - ssr) / (n - 1)) / s2 if n > 1 else float("nan")
    f_u = TestStat("F", F_u, n - 1, df, float(sps.f.sf(F_u, n - 1, df)) if n > 1 else float("nan"))
    # corr(u_i, Xb) over the rows
    T = stats.T
    xb_i = means[:, slopes] @ b
    Eu, Exb = float(T @ u) / N, float(xbar @ b)
    mu = stats.ZZ[0] / N
    cxx = stats.ZZ[np.ix_(slopes, slopes)] / N - np.outer(mu[slopes], mu[slopes])
    cov_uxb = float((T * u) @ xb_i) / N - Eu * Exb
    var_u = float(T @ (u * u)) / N - Eu**2
    var_xb = float(b @ cxx @ b)
    corr = cov_uxb / np.sqrt(var_u * var_xb) if var_u > 0 and var_xb > 0 else float("nan")
    r2w, r2b, r2o = _r2s(stats, slopes, b)
    return PanelFit(
        estimator="fe",
        terms=terms,
        params=params,
        vcov=V,
        df_resid=df_t,
        omitted=omitted,
        r2_within=r2w,
        r2_between=r2b,
        r2_overall=r2o,
        sigma_u=sigma_u,
        sigma_e=sigma_e,
        rho=sigma_u**2 / (sigma_u**2 + sigma_e**2),
        ssr=ssr,
        model_test=_f_test(b, Vb, df_t),
        f_u=f_u,
        corr_u_xb=float(corr),
        u=_by_panel(design, u),
        **_common(design, stats, vce),
    )


def _re_components(stats: PanelStats, names: tuple[str, ...], sa: bool) -> tuple[float, float, float | None]:
    """(sigma_u^2, sigma_e^2, harmonic-mean Tbar or None for sa)."""
    N, n, p = stats.N, stats.n, stats.ZZ.shape[0] - 1
    _, slopes, _, _, ssr_w, df_w, _ = _within(stats, names)
    s2e = ssr_w / df_w
    scale = np.diag(stats.ZZ)
    if sa:
        B = stats.between(weighted=True)
        kb = independent_columns(B, list(range(p)), scale)
        Binv, _, quad = ols(B, kb)
        C = stats.S.T @ stats.S
        tr = float(np.trace(Binv @ C[np.ix_(kb, kb)]))
        s2u, tbar = (quad - (n - len(kb)) * s2e) / (N - tr), None
    else:
        U = stats.between(weighted=False)
        kb = independent_columns(U, list(range(p)), scale)
        _, _, ssr_b = ols(U, kb)
        tbar = n / float(np.sum(1.0 / stats.T))
        s2u = ssr_b / (n - len(kb)) - s2e / tbar
    if n - len(kb) <= 0:
        raise DataError(f"random effects need more panels ({n}) than coefficients ({len(kb)})")
    return max(s2u, 0.0), s2e, tbar


def _fit_re(design: PanelDesign, stats: PanelStats, vce: str, sa: bool) -> PanelFit:
    N, p = stats.N, stats.ZZ.shape[0] - 1
    s2u, s2e, tbar = _re_components(stats, design.names, sa)
    theta = 1.0 - np.sqrt(s2e / (stats.T * s2u + s2e))
    M = stats.moment(theta * (2.0 - theta) / stats.T)
    kx = independent_columns(M, list(range(p)), np.diag(stats.ZZ))
    if not kx or kx[0] != 0:
        raise DataError("the constant is collinear with the regressors")
    Ainv, b, ssr = ols(M, kx)
    K = len(kx)
    s2 = ssr / (N - K)
    if vce == "cluster":
        means = stats.means
        assert design.y is not None and design.X is not None and design.codes is not None  # rows in memory
        th = theta[design.codes]
        Xt = design.X[:, kx] - th[:, None] * means[design.codes][:, kx]
        e = design.y - design.X[:, kx] @ b - th * (means[:, p] - means[:, kx] @ b)[design.codes]
        V = _cluster_vcov(design, Xt, e, Ainv, K)
    else:
        V = s2 * Ainv
    terms, params, V = _slopes_last_cons(design.names, kx, b, V)
    bs, Vs = params[:-1], V[:-1, :-1]
    r2w, r2b, r2o = _r2s(stats, kx[1:], b[1:])
    balanced = bool(stats.T.min() == stats.T.max())
    sigma_u, sigma_e = float(np.sqrt(s2u)), float(np.sqrt(s2e))
    return PanelFit(
        estimator="re",
        terms=terms,
        params=params,
        vcov=V,
        df_resid=None,
        omitted=_omitted(design.names, kx, list(range(p))),
        r2_within=r2w,
        r2_between=r2b,
        r2_overall=r2o,
        sigma_u=sigma_u,
        sigma_e=sigma_e,
        rho=s2u / (s2u + s2e) if s2u + s2e > 0 else float("nan"),
        ssr=ssr,
        model_test=_chi2_test(bs, Vs),
        theta=float(theta[0]) if balanced else None,
        theta_by_panel=_by_panel(design, theta),
        re_method="baltagi-chang" if sa else "swamy-arora",
        Tbar=tbar,
        sigma=float(np.sqrt(s2)),
        **_common(design, stats, vce),
    )


def _fit_be(design: PanelDesign, stats: PanelStats, vce: str, sa: bool) -> PanelFit:
    n, p = stats.n, stats.ZZ.shape[0] - 1
    U = stats.between(weighted=False)
    kx = independent_columns(U, list(range(p)), np.diag(stats.ZZ))
    Ainv, b, ssr = ols(U, kx)
    df = n - len(kx)
    if df <= 0:
        raise DataError(f"the between estimator needs more panels ({n}) than coefficients ({len(kx)})")
    s2 = ssr / df
    terms, params, V = _slopes_last_cons(design.names, kx, b, s2 * Ainv)
    r2w, r2b, r2o = _r2s(stats, kx[1:], b[1:])
    return PanelFit(
        estimator="be",
        terms=terms,
        params=params,
        vcov=V,
        df_resid=df,
        omitted=_omitted(design.names, kx, list(range(p))),
        r2_within=r2w,
        r2_between=r2b,
        r2_overall=r2o,
        ssr=ssr,
        sigma=float(np.sqrt(s2)),
        model_test=_f_test(params[:-1], V[:-1, :-1], df),
        **_common(design, stats, vce),
    )


def _fit_pooled(design: PanelDesign, stats: PanelStats, vce: str, sa: bool) -> PanelFit:
    N, p = stats.N, stats.ZZ.shape[0] - 1
    kx = independent_columns(stats.ZZ, list(range(p)), np.diag(stats.ZZ))
    Ainv, b, ssr = ols(stats.ZZ, kx)
    K = len(kx)
    df = N - K
    if df <= 0:
        raise DataError(f"too few rows ({N}) for {K} coefficients")
    s2 = ssr / df
    df_t = df
    if vce == "conventional":
        V = s2 * Ainv
    else:
        assert design.y is not None and design.X is not None  # robust and cluster SEs read the rows
        Xt = design.X[:, kx]
        e = design.y - Xt @ b
        if vce == "cluster":
            V = _cluster_vcov(design, Xt, e, Ainv, K)
            df_t = design.n_clusters - 1
        else:
            V = cov.sandwich(Ainv, cov.robust_meat(Xt, e), cov.stata_scale("robust", N, K))
    terms, params, V = _slopes_last_cons(design.names, kx, b, V)
    mu = stats.ZZ[0, p] / N
    tss = stats.ZZ[p, p] - N * mu * mu
    r2 = 1.0 - ssr / tss if tss > 0 else float("nan")
    r2w, r2b, r2o = _r2s(stats, kx[1:], b[1:])
    return PanelFit(
        estimator="pooled",
        terms=terms,
        params=params,
        vcov=V,
        df_resid=df_t,
        omitted=_omitted(design.names, kx, list(range(p))),
        r2_within=r2w,
        r2_between=r2b,
        r2_overall=r2o,
        r2=r2,
        adj_r2=1.0 - (1.0 - r2) * (N - 1) / df,
        ssr=ssr,
        sigma=float(np.sqrt(s2)),
        model_test=_f_test(params[:-1], V[:-1, :-1], df_t),
        **_common(design, stats, vce),
    )
