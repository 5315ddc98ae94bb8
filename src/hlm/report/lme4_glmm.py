"""glmer's ``summary()`` layout for a GLMM: the method line, family and link, formula, the
information criteria with -2 logLik as "deviance" (what glmer's summary prints) and the
residual df, the quantiles of the Pearson residuals ("Scaled residuals"), the random effects
(variance, SD, correlations), nbinom2's dispersion, and the fixed effects with Wald z,
Pr(>|z|) and R's significance stars, then their correlations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hlm.errors import DataError
from hlm.glmm.predict import residuals
from hlm.glmm.separation import separation_message
from hlm.report.text import abbreviate

if TYPE_CHECKING:
    from hlm.glmm.result import GlmmResult

_FAMILY = {"binomial": "binomial", "poisson": "poisson", "negative_binomial": "nbinom2"}


def _stars(p: float) -> str:
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "." if p < 0.1 else ""


def _num(x: float) -> str:
    return "NA" if not np.isfinite(x) else f"{x:.4g}" if abs(x) >= 1e5 or (abs(x) < 1e-3 and x != 0) else f"{x:.4f}"


def _fixed(fit: GlmmResult) -> list[str]:
    tidy = fit.tidy()
    width = max(len(t) for t in tidy["term"])
    lines = [f"{'':<{width}} {'Estimate':>10} {'Std. Error':>10} {'z value':>8} {'Pr(>|z|)':>10}"]
    cols = [tidy[c].to_numpy(dtype=float) for c in ("estimate", "std_error", "statistic", "p_value")]
    for term, est, se, z, p in zip(tidy["term"], *cols):
        shown = f"{p:.3g}" if p >= 2e-16 else "<2e-16"
        lines.append(
            f"{term:<{width}} {_num(est):>10} {_num(se):>10} {z:>8.3f} {shown:>10} {_stars(float(p))}".rstrip()
        )
    lines += ["---", "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"]
    names = list(tidy["term"])
    if len(names) > 1:
        V = fit.vcov.to_numpy()
        with np.errstate(invalid="ignore"):
            sd = np.sqrt(np.diag(V))
            C = V / np.outer(sd, sd)
        lines += [
            "",
            "Correlation of Fixed Effects:",
            " " * (width + 1) + " ".join(f"{abbreviate(s):>6}" for s in names[:-1]),
        ]
        lines += [
            f"{names[i]:<{width}} " + " ".join(f"{C[i, j]:>6.3f}" for j in range(i)) for i in range(1, len(names))
        ]
    return lines


def _random(fit: GlmmResult) -> list[str]:
    vc = fit.varcorr
    lines = [f" {'Groups':<12} {'Name':<14} {'Variance':>10} {'Std.Dev.':>10} Corr"]
    for group in dict.fromkeys(vc["group"]):
        block = vc[vc["group"] == group]
        var, cor = block[block["var2"].isna()], block[block["var2"].notna()]
        for i, (name, v, sd) in enumerate(zip(var["var1"], var["vcov"].to_numpy(float), var["sdcor"].to_numpy(float))):
            corrs = " ".join(f"{c:5.2f}" for c in cor[cor["var2"] == name]["sdcor"])
            lines.append(f" {group if i == 0 else '':<12} {name:<14} {v:>10.4g} {sd:>10.4g} {corrs}".rstrip())
    groups = "; ".join(f"{g}, {n}" for g, n in fit.ngroups.items())
    return lines + [f"Number of obs: {fit.nobs}, groups:  {groups}"]


def lme4_glmm_summary(fit: GlmmResult) -> str:
    """``summary(glmer)``-style text (see the module docstring)."""
    how = "Laplace Approximation" if fit.nagq == 1 else f"Adaptive Gauss-Hermite Quadrature, nAGQ = {fit.nagq}"
    family = _FAMILY[fit.family] + (f"({fit.dispersion:.4g})" if fit.dispersion is not None else "")
    try:
        res = residuals(fit, "pearson", any_order=True).to_numpy()
    except DataError:  # rows summed by the database: there are no per-row residuals
        res = np.array([])
    res = res[np.isfinite(res)]  # a fitted probability of exactly 0 or 1 (separation) has none
    q = np.quantile(res, [0, 0.25, 0.5, 0.75, 1.0]) if len(res) else np.full(5, np.nan)
    lines = [
        f"Generalized linear mixed model fit by maximum likelihood ({how})",
        f" Family: {family}  ( {fit.link} )",
        f"Formula: {fit.spec.text}",
        "",
        "".join(f"{h:>9}" for h in ("AIC", "BIC", "logLik", "deviance", "df.resid")),
        f"{fit.aic:>9.1f}{fit.bic:>9.1f}{fit.loglik:>9.1f}{fit.deviance:>9.1f}{fit.nobs - fit.df_model:>9d}",
        "",
        "Scaled residuals: ",
        "".join(f"{h:>9}" for h in ("Min", "1Q", "Median", "3Q", "Max")),
        "".join(f"{v:>9.4f}" for v in q),
        "",
        "Random effects:",
        *_random(fit),
    ]
    if fit.dispersion is not None:
        lines.append(f"Dispersion parameter for nbinom2 family (): {fit.dispersion:.4g}")
    lines += ["", "Fixed effects:", *_fixed(fit)]
    if not fit.converged:
        lines.append("warning: the optimizer did not converge")
    if fit.separation:
        lines.append(f"warning: {separation_message(fit.separation)}")
    return "\n".join(lines + [f"note: {n}" for n in fit.notes])
