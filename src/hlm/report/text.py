"""Plain-text summaries of fits in lme4's layout, and the JSON sections that the text,
HTML and ``to_dict`` outputs share."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hlm.errors import DataError

if TYPE_CHECKING:
    from hlm.api import Fit

RESIDUAL_ROWS_LIMIT = 1_000_000  # scaled residuals need a pass over the rows


def _fmt(x: float, width: int = 10) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return " " * (width - 2) + "NA"
    return f"{x:>{width}.4g}" if abs(x) >= 1e5 or (abs(x) < 1e-3 and x != 0) else f"{x:>{width}.4f}"


def abbreviate(name: str, minlength: int = 6) -> str:
    """R's ``abbreviate`` for the usual fixed-effect names: drop lower-case vowels from the
    end until the name is short enough (``(Intercept)`` -> ``(Intr)``)."""
    if len(name) <= minlength:
        return name
    chars = list(name)
    for i in range(len(chars) - 1, 0, -1):
        if len(chars) <= minlength:
            break
        if chars[i] in "aeiou" and chars[i - 1] != " ":
            del chars[i]
    i = len(chars) - 1
    while len(chars) > minlength and i > 0:  # then lower-case letters from the end
        if chars[i].islower():
            del chars[i]
        i -= 1
    out = "".join(chars)
    return out if len(out) <= minlength + 2 else out[:minlength]


def scaled_residual_quantiles(fit: Fit) -> np.ndarray | None:
    """Min, quartiles, max of Pearson residuals / sigma (lme4's scaled residuals; None without
    data or for very large data)."""
    from hlm.predict.memory import residuals

    if fit.data is None or fit.nobs > RESIDUAL_ROWS_LIMIT:
        return None
    try:
        res = residuals(fit, pearson=True).to_numpy() / fit.sigma
    except DataError:
        return None
    return np.quantile(res, [0, 0.25, 0.5, 0.75, 1.0])


def lme4_summary(fit: Fit, *, residuals: bool = True) -> str:
    """``summary(lmer)``-style text."""
    crit = "REML" if fit.reml else "maximum likelihood"
    lines = [f"Linear mixed model fit by {crit}", f"Formula: {fit.spec.text}", ""]
    if fit.reml:
        where = "at convergence" if fit.converged else "where the optimizer stopped (not converged)"
        lines.append(f"REML criterion {where}: {fit.reml_criterion:.4f}")
    else:
        lines.append(f"{'AIC':>10} {'BIC':>10} {'logLik':>10} {'deviance':>10} {'df.resid':>9}")
        lines.append(
            f"{fit.aic:>10.1f} {fit.bic:>10.1f} {fit.loglik:>10.1f} {fit.deviance:>10.1f} {fit.nobs - fit.df_model:>9d}"
        )
    q = scaled_residual_quantiles(fit) if residuals else None
    if q is not None:
        lines += [
            "",
            "Scaled residuals: ",
            "".join(f"{h:>9}" for h in ("Min", "1Q", "Median", "3Q", "Max")),
            "".join(f"{v:>9.4f}" for v in q),
        ]
    lines += ["", "Random effects:", f" {'Groups':<12} {'Name':<14} {'Variance':>10} {'Std.Dev.':>10} Corr"]
    vc = fit.varcorr
    for group in dict.fromkeys(vc["group"]):
        block = vc[vc["group"] == group]
        var = block[block["var2"].isna()]
        cor = block[block["var2"].notna()]
        for i, (_, row) in enumerate(var.iterrows()):
            name = "" if pd.isna(row["var1"]) else str(row["var1"])
            corrs = " ".join(f"{c:5.2f}" for c in cor[cor["var2"] == row["var1"]]["sdcor"])
            lines.append(
                f" {group if i == 0 else '':<12} {name:<14} {row['vcov']:>10.4g} {row['sdcor']:>10.4g} {corrs}"
            )
    groups = "; ".join(f"{k}, {v}" for k, v in fit.ngroups.items())
    lines += [
        f"Number of obs: {fit.nobs}, groups:  {groups}",
        "",
        "Fixed effects:",
        f" {'':<16} {'Estimate':>10} {'Std. Error':>10} {'t value':>8}",
    ]
    for _, row in fit.tidy().iterrows():
        lines.append(f" {row['term']:<16} {_fmt(row['estimate'])} {_fmt(row['std_error'])} {row['statistic']:>8.3f}")
    names = list(fit.aggregates.xnames)
    if len(names) > 1:
        V = fit.vcov.to_numpy()
        sd = np.sqrt(np.diag(V))
        C = V / np.outer(sd, sd)
        short = [abbreviate(n) for n in names]
        width = max(len(n) for n in names)
        lines += ["", "Correlation of Fixed Effects:", " " * (width + 1) + " ".join(f"{s:>6}" for s in short[:-1])]
        for i in range(1, len(names)):
            lines.append(f"{names[i]:<{width}} " + " ".join(f"{C[i, j]:>6.3f}" for j in range(i)))
    for note in fit.notes:
        lines.append(f"note: {note}")
    if fit.singular:
        from hlm.lmm.checks import boundary_messages

        lines += [f"boundary (singular) fit: {m}" for m in boundary_messages(fit)]
    elif not fit.converged:
        lines.append(f"warning: convergence checks failed ({fit.optsummary.return_code})")
    return "\n".join(lines)


def _clean(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as JSON-ready dicts (NaN -> None)."""
    return [{str(k): _clean(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def output_sections(fit: Fit, *, ranef: bool = False) -> dict[str, Any]:
    """Sections ``to_dict`` adds: varcomp (SDs with SEs and CIs), LR test vs the linear
    model, Wald chi2 of the slopes, ICC per level, R^2, and optionally the ranef table."""
    from hlm.report.stata import random_effects_table

    chi2, k, p = fit.wald_test()
    lr = fit.lr_test_linear()
    out: dict[str, Any] = {
        "varcomp": records(random_effects_table(fit)),
        "lr_test_linear": {
            "statistic": _clean(lr.statistic),
            "df": lr.df,
            "p_value": _clean(lr.p_value),
            "distribution": lr.distribution,
            "loglik_linear": _clean(lr.loglik0),
        },
        "wald_slopes": {"chi2": _clean(chi2), "df": k, "p_value": _clean(p)},
    }
    icc = fit.icc()
    out["icc"] = records(icc)
    out["icc_note"] = icc.attrs.get("note", "")
    try:
        out["r2"] = {k2: _clean(v) for k2, v in fit.r2().items()}
    except DataError as exc:
        out["r2"] = None
        out["r2_note"] = str(exc)
    if ranef:
        out["ranef"] = records(fit.ranef())
    return out
