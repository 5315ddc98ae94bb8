"""Hausman specification test of fixed against random effects (Stata ``hausman fe re``).

With b the consistent (within) and B the efficient (GLS) slopes and their covariances,

    chi2 = (b - B)' (V_b - V_B)^- (b - B),   df = rank(V_b - V_B),

using a generalized inverse as Stata does.  ``sigmamore=True`` bases both covariances on
the efficient estimator's disturbance variance: V_b is rescaled by s_re^2 / sigma_e^2, with
s_re^2 = SSR*/(N - K) of the quasi-demeaned regression.  When V_b - V_B is not positive
definite Stata's note is attached (and warned); a negative chi2 gets no p-value.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from hlm.errors import ComparisonError, HLMWarning
from hlm.panel.results import PanelFit, stata_g

NOT_PD = "V_b-V_B is not positive definite"
CHI2_NEG = (
    "chi2<0 ==> model fitted on these data fails to meet the asymptotic assumptions "
    "of the Hausman test; see suest for a generalized test"
)


@dataclass(frozen=True)
class HausmanTest:
    """Hausman's chi2 with the compared coefficients."""

    terms: tuple[str, ...]
    b_consistent: np.ndarray
    b_efficient: np.ndarray
    se_diff: np.ndarray
    chi2: float
    df: int
    p: float
    note: str | None
    sigmamore: bool

    def to_dict(self) -> dict[str, Any]:
        fin = lambda x: float(x) if np.isfinite(x) else None  # noqa: E731
        return {
            "chi2": fin(self.chi2),
            "df": self.df,
            "p": fin(self.p),
            "note": self.note,
            "sigmamore": self.sigmamore,
            "terms": list(self.terms),
            "b_fe": [float(v) for v in self.b_consistent],
            "b_re": [float(v) for v in self.b_efficient],
            "se_diff": [fin(v) for v in self.se_diff],
        }

    def summary(self) -> str:
        lines = [
            "",
            f"{'':13}{'---- Coefficients ----':>26}",
            f"{'':13}|{'(b)':>11}{'(B)':>12}{'(b-B)':>14}{'sqrt(diag(V_b-V_B))':>22}",
            f"{'':13}|{'fe':>11}{'re':>12}{'Difference':>14}{'Std. err.':>16}",
            "-" * 13 + "+" + "-" * 64,
        ]
        for t, b, B, s in zip(self.terms, self.b_consistent, self.b_efficient, self.se_diff):
            lines.append(f"{t[:12]:>12} |{stata_g(b, 11)}{stata_g(B, 12)}{stata_g(b - B, 14)}{stata_g(s, 16)}")
        lines += [
            "-" * 78,
            "                          b = Consistent under H0 and Ha; obtained from xtreg, fe.",
            "           B = Inconsistent under Ha, efficient under H0; obtained from xtreg, re.",
            "",
            "Test of H0: Difference in coefficients not systematic",
            "",
            f"    chi2({self.df}) = (b-B)'[(V_b-V_B)^(-1)](b-B)",
            f"            = {self.chi2:10.2f}",
        ]
        if np.isfinite(self.p):
            lines.append(f"Prob > chi2 = {self.p:10.4f}")
        if self.note:
            lines.append(f"({self.note})")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def hausman_statistic(d: np.ndarray, Vdiff: np.ndarray) -> tuple[float, int, float, str | None]:
    """(chi2, df, p, note) for a difference d with covariance Vdiff (generalized inverse)."""
    Vdiff = (Vdiff + Vdiff.T) / 2
    ev, vecs = np.linalg.eigh(Vdiff)
    tol = max(len(ev), 1) * np.finfo(float).eps * max(np.abs(ev).max(initial=0.0), np.finfo(float).tiny)
    keep = np.abs(ev) > tol
    z = vecs[:, keep].T @ d
    chi2 = float(np.sum(z * z / ev[keep]))
    df = int(keep.sum())
    notes = []
    if (ev <= tol).any():
        notes.append(NOT_PD)
    p = float(sps.chi2.sf(chi2, df)) if chi2 >= 0 and df > 0 else float("nan")
    if chi2 < 0:
        notes.append(CHI2_NEG)
    return chi2, df, p, "; ".join(notes) or None


def hausman(fe: PanelFit, re: PanelFit, *, sigmamore: bool = False) -> HausmanTest:
    """Hausman test of ``xtreg, fe`` (consistent) against ``xtreg, re`` (efficient)."""
    if not isinstance(fe, PanelFit) or not isinstance(re, PanelFit):
        raise ComparisonError("hausman(fe, re) takes two xtreg fits")
    if fe.estimator != "fe" or re.estimator != "re":
        raise ComparisonError(
            f"hausman(fe, re): pass the fixed-effects fit first and the random-effects "
            f"fit second (got {fe.estimator!r}, {re.estimator!r})"
        )
    if fe.vce != "conventional" or re.vce != "conventional":
        raise ComparisonError("the Hausman test needs conventional SEs: refit both models without vce robust/cluster")
    if (fe.response, fe.nobs, fe.ngroups, fe.panel_var) != (re.response, re.nobs, re.ngroups, re.panel_var):
        raise ComparisonError("the two fits use different data (response, rows or panels differ)")
    common = [t for t in fe.terms if t != "_cons" and t in re.terms]
    if not common:
        raise ComparisonError("the two fits share no slope coefficients")
    i = [fe.terms.index(t) for t in common]
    j = [re.terms.index(t) for t in common]
    b, B = fe.params[i], re.params[j]
    Vb, VB = fe.vcov[np.ix_(i, i)], re.vcov[np.ix_(j, j)]
    if sigmamore:
        assert re.sigma is not None and fe.sigma_e is not None  # set by every re and fe fit
        Vb = Vb * (re.sigma / fe.sigma_e) ** 2
    Vd = Vb - VB
    chi2, df, p, note = hausman_statistic(b - B, Vd)
    if note:
        warnings.warn(f"hausman: {note}", HLMWarning, stacklevel=2)
    with np.errstate(invalid="ignore"):
        se = np.sqrt(np.diag(Vd))
    return HausmanTest(tuple(common), b, B, se, chi2, df, p, note, sigmamore)
