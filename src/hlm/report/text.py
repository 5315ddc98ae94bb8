"""Plain-text summaries of fits."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from hlm.fit import Fit


def _fmt(x: float, width: int = 10) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return " " * (width - 2) + "NA"
    return f"{x:>{width}.4g}" if abs(x) >= 1e5 or (abs(x) < 1e-3 and x != 0) else f"{x:>{width}.4f}"


def lme4_summary(fit: "Fit") -> str:
    """``summary(lmer)``-style text."""
    crit = "REML" if fit.reml else "maximum likelihood"
    lines = [f"Linear mixed model fit by {crit}", f"Formula: {fit.spec.text}", ""]
    if fit.reml:
        lines.append(f"REML criterion at convergence: {fit.reml_criterion:.4f}")
    else:
        lines.append(f"{'AIC':>10} {'BIC':>10} {'logLik':>10} {'deviance':>10}")
        lines.append(f"{fit.aic:>10.1f} {fit.bic:>10.1f} {fit.loglik:>10.1f} {fit.deviance:>10.1f}")
    lines += ["", "Random effects:", f" {'Groups':<12} {'Name':<14} {'Variance':>10} {'Std.Dev.':>10} Corr"]
    vc = fit.varcorr
    for group in dict.fromkeys(vc["group"]):
        block = vc[vc["group"] == group]
        var = block[block["var2"].isna()]
        cor = block[block["var2"].notna()]
        for i, (_, row) in enumerate(var.iterrows()):
            name = "" if pd.isna(row["var1"]) else str(row["var1"])
            corrs = " ".join(f"{c:5.2f}" for c in cor[cor["var2"] == row["var1"]]["sdcor"])
            lines.append(f" {group if i == 0 else '':<12} {name:<14} {row['vcov']:>10.4g} {row['sdcor']:>10.4g} {corrs}")
    groups = "; ".join(f"{k}, {v}" for k, v in fit.ngroups.items())
    lines += [f"Number of obs: {fit.nobs}, groups:  {groups}", "", "Fixed effects:",
              f" {'':<16} {'Estimate':>10} {'Std. Error':>10} {'z value':>8}"]
    for _, row in fit.tidy().iterrows():
        lines.append(f" {row['term']:<16} {_fmt(row['estimate'])} {_fmt(row['std_error'])} {row['statistic']:>8.2f}")
    for note in fit.notes:
        lines.append(f"note: {note}")
    if fit.singular:
        lines.append("boundary (singular) fit: " + ", ".join(fit.boundary_components()) + " estimated at zero")
    elif not fit.converged:
        lines.append(f"warning: convergence checks failed ({fit.optsummary.return_code})")
    return "\n".join(lines)
