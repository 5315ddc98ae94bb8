"""Breusch-Pagan Lagrange-multiplier test for random effects (Stata ``xttest0``).

With e the pooled OLS residuals (Baltagi-Li form for unbalanced panels),

    A  = sum_i (sum_t e_it)^2 / sum_it e_it^2 - 1,
    LM = N^2 / (2 sum_i T_i (T_i - 1)) * A^2 ~ chi2(1) under Var(u) = 0.

Stata reports the one-sided version: chibar2(01) = LM when A > 0 (else 0), with
p = P(chi2_1 > chibar2) / 2.  The panel sums of e come from the fit's aggregates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from hlm.errors import OptionError
from hlm.lmm.collinear import independent_columns
from hlm.panel.model import ols
from hlm.panel.results import PanelFit


@dataclass(frozen=True)
class BreuschPaganTest:
    """xttest0's estimated variances and the LM statistic (two- and one-sided)."""

    response: str
    var_y: float
    var_e: float
    var_u: float
    lm: float
    p_chi2: float
    chibar2: float
    p: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "var_y": self.var_y,
            "var_e": self.var_e,
            "var_u": self.var_u,
            "lm": self.lm,
            "p_chi2": self.p_chi2,
            "chibar2": self.chibar2,
            "p": self.p,
        }

    def summary(self) -> str:
        rows = [(self.response, self.var_y), ("e", self.var_e), ("u", self.var_u)]
        lines = [
            "",
            "Breusch and Pagan Lagrangian multiplier test for random effects",
            "",
            "        Estimated results:",
            f"{'':>21}|       Var     SD = sqrt(Var)",
            f"{'':>12}" + "-" * 9 + "+" + "-" * 29,
        ]
        for name, v in rows:
            lines.append(f"{name[:19]:>20} |  {v:10.6g}    {np.sqrt(v):10.6g}")
        lines += [
            "",
            "        Test: Var(u) = 0",
            f"{'chibar2(01) = ':>36}{self.chibar2:8.2f}",
            f"{'Prob > chibar2 = ':>36}{self.p:8.4f}",
        ]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def xttest0(re: PanelFit) -> BreuschPaganTest:
    """Breusch-Pagan LM test after ``xtreg, re``."""
    if not isinstance(re, PanelFit) or re.estimator != "re" or re.stats is None:
        raise OptionError("xttest0 needs an xtreg fit with estimator='re'")
    st = re.stats
    assert re.sigma_e is not None and re.sigma_u is not None  # set by every re fit
    p = st.ZZ.shape[0] - 1
    kx = independent_columns(st.ZZ, list(range(p)), np.diag(st.ZZ))
    _, b, ssr = ols(st.ZZ, kx)
    e_sums = st.S[:, p] - st.S[:, kx] @ b
    A = float(e_sums @ e_sums) / ssr - 1.0
    denom = 2.0 * float(st.T @ (st.T - 1.0))
    lm = st.N**2 / denom * A * A if denom > 0 else float("nan")
    chibar2 = lm if A > 0 else 0.0
    p_one = 0.5 * float(sps.chi2.sf(chibar2, 1)) if chibar2 > 0 else 1.0
    ybar = st.ZZ[0, p] / st.N
    var_y = (st.ZZ[p, p] - st.N * ybar * ybar) / (st.N - 1)
    return BreuschPaganTest(
        re.response,
        float(var_y),
        float(re.sigma_e) ** 2,
        float(re.sigma_u) ** 2,
        float(lm),
        float(sps.chi2.sf(lm, 1)),
        float(chibar2),
        p_one,
    )
