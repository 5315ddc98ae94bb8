"""HTML rendering of a fit for notebooks (``Fit._repr_html_``): a header, the fixed
effects, the random-effects parameters with SEs and CIs, and the variance share per level,
built from the same tables as the text output; ``PanelFit._repr_html_`` likewise for xtreg
(header, coefficients, the panel variance components)."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from hlm.api import Fit
    from hlm.panel.results import PanelFit


def _num(x: object) -> str:
    if x is None:
        return ""
    if isinstance(x, (float, np.floating)):
        return "" if not np.isfinite(x) else f"{x:.4g}"
    return escape(str(x))


def _table(frame: pd.DataFrame, caption: str) -> str:
    head = "".join(f"<th>{escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_num(v)}</td>" for v in row) + "</tr>" for row in frame.itertuples(index=False)
    )
    return (
        f"<table class='hlm'><caption style='text-align:left;font-weight:bold'>{escape(caption)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def fit_html(fit: Fit) -> str:
    """The notebook representation."""
    from hlm.report.stata import random_effects_table

    crit = "REML" if fit.reml else "ML"
    groups = ", ".join(f"{escape(k)}: {v:,}" for k, v in fit.ngroups.items())
    ll = "REML log-likelihood" if fit.reml else "log-likelihood"
    chi2, k, p = fit.wald_test()
    parts = [
        "<div class='hlm-fit'>",
        f"<p><b>Linear mixed model ({crit})</b>: <code>{escape(fit.spec.text)}</code><br>",
        f"observations: {fit.nobs:,}; groups: {groups}; {ll}: {fit.loglik:.6g}; AIC {fit.aic:.6g}; BIC {fit.bic:.6g}",
        "" if k == 0 else f"; Wald &chi;&sup2;({k}) = {chi2:.2f}, p = {p:.4g}",
        "</p>",
        _table(fit.tidy(), "Fixed effects (z tests)"),
    ]
    parts.append(_table(random_effects_table(fit), "Random-effects parameters (SD scale, delta-method CIs)"))
    lr = fit.lr_test_linear()
    dist = "&chi;&#772;&sup2;(01)" if lr.distribution == "chibar2(01)" else f"&chi;&sup2;({lr.df}) (conservative)"
    parts.append(f"<p>LR test vs. linear model: {dist} = {lr.statistic:.2f}, p = {lr.p_value:.4g}</p>")
    icc = fit.icc()
    parts.append(_table(icc, "Variance share per level"))
    if icc.attrs.get("note"):
        parts.append(f"<p><small>{escape(icc.attrs['note'])}</small></p>")
    for note in fit.notes:
        parts.append(f"<p><small>note: {escape(note)}</small></p>")
    if fit.singular:
        from hlm.lmm.checks import boundary_messages

        parts += [f"<p><small>boundary (singular) fit: {escape(m)}</small></p>" for m in boundary_messages(fit)]
    parts.append("</div>")
    return "".join(parts)


def panel_html(fit: PanelFit) -> str:
    """The notebook representation of an xtreg fit: the numbers of its Stata table."""
    mt = fit.model_test
    t = f"T min {fit.T_min:,}, avg {fit.T_avg:.1f}, max {fit.T_max:,}"
    r2 = (
        f"R&sup2; {fit.r2:.4f}, adjusted {fit.adj_r2:.4f}"
        if fit.estimator == "pooled" and fit.r2 is not None and fit.adj_r2 is not None
        else f"R&sup2; within {fit.r2_within:.4f}, between {fit.r2_between:.4f}, overall {fit.r2_overall:.4f}"
    )
    se = {"conventional": "", "robust": "robust SEs", "cluster": f"SEs for {fit.n_clusters} clusters in "}[fit.vce]
    parts = [
        "<div class='hlm-fit'>",
        f"<p><b>{escape(fit.title)}</b>: <code>{escape(fit.model)}</code>, ",
        f"panels <code>{escape(fit.panel_var)}</code><br>",
        f"observations: {fit.nobs:,}; groups: {fit.ngroups:,} ({t}); {r2}; ",
        f"{escape(mt.label)} = {mt.stat:.2f}, p = {mt.p:.4g}",
        f"; {escape(se + (fit.cluster_var or ''))}" if se else "",
        "</p>",
        _table(fit.tidy(), "Coefficients (z tests)" if fit.df_resid is None else "Coefficients (t tests)"),
    ]
    if fit.estimator in ("fe", "re"):
        components = pd.DataFrame(
            {"parameter": ["sigma_u", "sigma_e", "rho"], "estimate": [fit.sigma_u, fit.sigma_e, fit.rho]}
        )
        parts.append(_table(components, "Variance components (rho: fraction of variance due to u_i)"))
    if (theta := fit.theta_summary()) is not None:
        parts.append(_table(pd.DataFrame([theta]), "theta over panels"))
    elif fit.theta is not None:
        parts.append(f"<p>theta = {fit.theta:.4g}</p>")
    if fit.f_u is not None:
        parts.append(
            f"<p>F test that all u_i = 0: {escape(fit.f_u.label)} = {fit.f_u.stat:.2f}, p = {fit.f_u.p:.4g}</p>"
        )
    if fit.estimator == "be" and fit.sigma is not None:
        parts.append(f"<p>sd(u_i + avg(e_i.)) = {fit.sigma:.4g}</p>")
    notes = [f"omitted (collinear): {', '.join(fit.omitted)}"] if fit.omitted else []
    notes += ["variance components: Baltagi-Chang (Stata's re sa)"] if fit.re_method == "baltagi-chang" else []
    notes += [f"{fit.n_dropped:,} observations with missing values dropped"] if fit.n_dropped else []
    parts += [f"<p><small>note: {escape(n)}</small></p>" for n in notes]
    parts.append("</div>")
    return "".join(parts)
