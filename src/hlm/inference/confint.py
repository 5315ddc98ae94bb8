"""``fit.confint``: Wald, profile-likelihood or parametric-bootstrap intervals in one frame.

Wald: fixed effects beta -+ z se (lme4's ``confint(method="Wald")``); variance parameters
on the log-SD / atanh scale from the observed information (Stata's ``mixed``; see
:mod:`hlm.inference.varcomp`).  Profile: :mod:`hlm.inference.profile`.  Bootstrap
(percentile): :mod:`hlm.inference.bootstrap`.
"""

from __future__ import annotations

from typing import Literal

import pandas as pd
from scipy import stats

from hlm.errors import OptionError
from hlm.inference.bootstrap import Seed
from hlm.inference.profile import CI_COLUMNS
from hlm.lmm.result import LmmResult

Method = Literal["wald", "profile", "boot"]


def wald_confint(fit: LmmResult, *, level: float = 0.95) -> pd.DataFrame:
    from hlm.inference.varcomp import varcomp

    vc = varcomp(fit, level=level)
    rows = [
        (r.parameter, r.kind, r.group, r.var1, r.var2, r.estimate, r.conf_low, r.conf_high, "wald")
        for r in vc.itertuples()
    ]
    q = stats.norm.ppf(0.5 + level / 2)
    for name, est, se in zip(fit.aggregates.xnames, fit.fixef, fit.se):
        rows.append((name, "fixed", None, name, None, est, est - q * se, est + q * se, "wald"))
    return pd.DataFrame(rows, columns=CI_COLUMNS)


def confint(
    fit: LmmResult,
    *,
    method: Method = "wald",
    level: float = 0.95,
    nsim: int = 1000,
    seed: Seed = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Confidence intervals for every SD, correlation, sigma and fixed effect; Wald unless
    ``method`` says otherwise (lme4's ``confint`` profiles by default, Stata's ``mixed`` is Wald).

    Columns: parameter (lme4's ``.sig01``..., ``.sigma``, fixed-effect names), kind (sd, cor,
    sigma, fixed), group, var1, var2, estimate, conf_low, conf_high, method.
    """
    if not 0 < level < 1:
        raise OptionError(f"level must be between 0 and 1, not {level}")
    if method == "wald":
        return wald_confint(fit, level=level)
    if method == "profile":
        from hlm.inference.profile import profile_confint

        return profile_confint(fit, level=level)
    if method == "boot":
        from hlm.inference.bootstrap import boot_confint

        return boot_confint(fit, level=level, nsim=nsim, seed=seed, progress=progress)
    raise OptionError(f"unknown method {method!r}; use 'wald', 'profile' or 'boot'")
