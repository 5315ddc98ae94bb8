"""Standard errors and Wald confidence limits of the variance components (Stata's ``mixed``).

The covariance of the natural variance parameters eta = (log sd, atanh r, log sigma) is
2 H_eta^{-1}, with H_eta the observed information of :mod:`hlm.lmm.information` (where the
maths is stated).  Then

    se(sd) = sd se(log sd),  CI = exp(log sd -+ z se(log sd));
    se(r)  = (1 - r^2) se(atanh r),  CI = tanh(atanh r -+ z se(atanh r)).

Parameters on the boundary (zero SD, |r| = 1, correlations of a zero SD) are held fixed and
get no standard error.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from hlm.lmm.information import VarCompInfo
from hlm.lmm.params import VarParam
from hlm.lmm.result import LmmResult

VARCOMP_COLUMNS = [
    "parameter",
    "kind",
    "group",
    "var1",
    "var2",
    "estimate",
    "std_error",
    "conf_low",
    "conf_high",
    "se_natural",
]


def varcomp_vcov(fit: LmmResult, info: VarCompInfo | None = None) -> pd.DataFrame:
    """Covariance of the free natural parameters (log sd, atanh r, log sigma), labelled;
    ``info`` is the fit's ``varcomp_info`` when already computed."""
    info = fit.varcomp_info if info is None else info
    names = [_natural_label(p) for p, f in zip(info.vp.params, info.free) if f]
    return pd.DataFrame(info.vcov, index=names, columns=names)


def _natural_label(p: VarParam) -> str:
    if p.kind == "sd":
        return f"log_sd:{p.group}|{p.var1}"
    if p.kind == "cor":
        return f"atanh_cor:{p.group}|{p.var1},{p.var2}"
    return "log_sd:Residual"


def varcomp(fit: LmmResult, *, level: float = 0.95, info: VarCompInfo | None = None) -> pd.DataFrame:
    """Random-effect SDs, correlations and the residual SD with standard errors and CIs.

    One row per variance parameter in lme4's order (``.sig01`` ... then ``.sigma``); columns
    ``parameter, kind, group, var1, var2, estimate, std_error, conf_low, conf_high,
    se_natural`` (the SE on the log-SD / atanh scale).  Boundary parameters have NaN
    standard errors and limits.  ``info`` is the fit's ``varcomp_info`` when already computed.
    """
    info = fit.varcomp_info if info is None else info
    se_nat = np.full(len(info.free), np.nan)
    se_nat[info.free] = np.sqrt(np.maximum(np.diag(info.vcov), 0.0))
    q = stats.norm.ppf(0.5 + level / 2.0)
    rows = []
    for k, (p, est, nat, se) in enumerate(zip(info.vp.params, info.estimates, info.natural, se_nat)):
        if p.kind == "cor":  # an exchangeable correlation's interval ends at its lower limit -1/(q-1)
            se_est = (1.0 - est**2) * se
            lo, hi = max(np.tanh(nat - q * se), info.vp.cor_lower(k)), np.tanh(nat + q * se)
        else:
            se_est = est * se
            lo, hi = np.exp(nat - q * se), np.exp(nat + q * se)
        rows.append((p.name, p.kind, p.group, p.var1, p.var2, est, se_est, lo, hi, se))
    return pd.DataFrame(rows, columns=VARCOMP_COLUMNS)
