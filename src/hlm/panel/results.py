"""The result of a panel fit: an immutable record with Stata's table, a tidy frame and a dict.

Coefficient tests use Student t with ``df_resid`` degrees of freedom (``fe``, ``be``,
``pooled``; G - 1 with cluster-robust SEs, as Stata) or the normal (``re``,
``df_resid=None``); intervals are estimate -+ crit * se at 95%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats as sps

_TITLES = {
    "fe": "Fixed-effects (within) regression",
    "re": "Random-effects GLS regression",
    "be": "Between regression (regression on group means)",
    "pooled": "Pooled OLS regression (Stata regress)",
}


@dataclass(frozen=True)
class TestStat:
    """A test statistic: ``F(df1, df2)`` or ``chi2(df1)`` with its p-value."""

    kind: Literal["F", "chi2"]
    stat: float
    df1: float
    df2: float | None
    p: float

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind, "stat": _num(self.stat), "df1": self.df1, "p": _num(self.p)}
        if self.df2 is not None:
            out["df2"] = self.df2
        return out

    @property
    def label(self) -> str:
        if self.kind == "F":
            return f"F({self.df1:g},{self.df2:g})"
        return f"Wald chi2({self.df1:g})"


def stata_percentile(values: np.ndarray, q: float) -> float:
    """Stata's ``summarize, detail`` percentile: P = n q/100; mean of x_(P), x_(P+1) if P is
    whole, else x_(ceil P)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    P = n * q / 100.0
    if abs(P - round(P)) < 1e-9:
        j = int(round(P))
        if j <= 0:
            return float(x[0])
        if j >= n:
            return float(x[-1])
        return float((x[j - 1] + x[j]) / 2)
    return float(x[int(math.ceil(P)) - 1])


@dataclass(frozen=True)
class PanelFit:
    """A fitted xtreg model.  Coefficients are in Stata's order: slopes, then ``_cons``."""

    estimator: Literal["fe", "re", "be", "pooled"]
    model: str
    response: str
    panel_var: str
    terms: tuple[str, ...]
    params: np.ndarray
    vcov: np.ndarray
    vce: Literal["conventional", "robust", "cluster"]
    cluster_var: str | None
    n_clusters: int | None
    df_resid: int | None
    nobs: int
    ngroups: int
    T_min: int
    T_avg: float
    T_max: int
    n_dropped: int
    omitted: tuple[str, ...]
    r2_within: float
    r2_between: float
    r2_overall: float
    ssr: float
    model_test: TestStat
    sigma_u: float | None = None
    sigma_e: float | None = None
    rho: float | None = None
    sigma: float | None = None
    r2: float | None = None
    adj_r2: float | None = None
    f_u: TestStat | None = None
    corr_u_xb: float | None = None
    u: pd.Series | None = None
    theta: float | None = None
    theta_by_panel: pd.Series | None = None
    re_method: Literal["swamy-arora", "baltagi-chang"] | None = None
    Tbar: float | None = None
    stats: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        for arr in (self.params, self.vcov):
            arr.setflags(write=False)

    # ------------------------------------------------------------------ coefficients
    @property
    def coef(self) -> pd.Series:
        return pd.Series(self.params, index=list(self.terms), name="estimate")

    @property
    def se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.vcov)), index=list(self.terms), name="std_error")

    @property
    def title(self) -> str:
        """The estimator's title, as Stata's header prints it."""
        return _TITLES[self.estimator]

    @property
    def balanced(self) -> bool:
        return self.T_min == self.T_max

    def _crit(self) -> float:
        return float(sps.norm.ppf(0.975) if self.df_resid is None else sps.t.ppf(0.975, self.df_resid))

    def _pvalues(self, stat: np.ndarray) -> np.ndarray:
        if self.df_resid is None:
            return 2 * sps.norm.sf(np.abs(stat))
        return 2 * sps.t.sf(np.abs(stat), self.df_resid)

    def tidy(self) -> pd.DataFrame:
        """One row per coefficient: term, estimate, std_error, statistic, p_value, conf_low,
        conf_high."""
        se = np.sqrt(np.diag(self.vcov))
        with np.errstate(divide="ignore", invalid="ignore"):
            stat = self.params / se
        crit = self._crit()
        return pd.DataFrame(
            {
                "term": list(self.terms),
                "estimate": self.params,
                "std_error": se,
                "statistic": stat,
                "p_value": self._pvalues(stat),
                "conf_low": self.params - crit * se,
                "conf_high": self.params + crit * se,
            }
        )

    def theta_summary(self) -> dict[str, float] | None:
        """min / 5% / median / 95% / max of theta_i over panels (Stata's percentiles)."""
        if self.theta_by_panel is None:
            return None
        v = self.theta_by_panel.to_numpy()
        return {
            "min": float(v.min()),
            "p5": stata_percentile(v, 5),
            "p50": stata_percentile(v, 50),
            "p95": stata_percentile(v, 95),
            "max": float(v.max()),
        }

    # ------------------------------------------------------------------ output
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes None)."""
        tidy = self.tidy()
        theta: Any = None
        if self.estimator == "re":
            theta = self.theta if self.balanced else self.theta_summary()
        out: dict[str, Any] = {
            "estimator": self.estimator,
            "model": self.model,
            "panel": self.panel_var,
            "nobs": self.nobs,
            "ngroups": self.ngroups,
            "n_dropped": self.n_dropped,
            "T": {"min": self.T_min, "avg": self.T_avg, "max": self.T_max},
            "vce": self.vce,
            "cluster": self.cluster_var,
            "n_clusters": self.n_clusters,
            "coef": [
                {
                    "term": r.term,
                    "estimate": _num(r.estimate),
                    "se": _num(r.std_error),
                    "statistic": _num(r.statistic),
                    "p": _num(r.p_value),
                    "conf_low": _num(r.conf_low),
                    "conf_high": _num(r.conf_high),
                }
                for r in tidy.itertuples()
            ],
            "df_resid": self.df_resid,
            "omitted": list(self.omitted),
            "sigma_u": _num(self.sigma_u),
            "sigma_e": _num(self.sigma_e),
            "rho": _num(self.rho),
            "theta": theta,
            "sigma": _num(self.sigma),
            "r2_within": _num(self.r2_within),
            "r2_between": _num(self.r2_between),
            "r2_overall": _num(self.r2_overall),
            "r2": _num(self.r2),
            "adj_r2": _num(self.adj_r2),
            "ssr": _num(self.ssr),
            "model_test": self.model_test.to_dict(),
            "f_test_u": None if self.f_u is None else self.f_u.to_dict(),
            "corr_u_xb": _num(self.corr_u_xb),
            "re_method": self.re_method,
            "Tbar": _num(self.Tbar),
        }
        return out

    def summary(self) -> str:
        """The coefficient table in Stata's ``xtreg`` layout."""
        return "\n".join(_stata_lines(self))

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        from hlm.report.html import panel_html

        return panel_html(self)


def _num(x: Any) -> Any:
    if x is None:
        return None
    x = float(x)
    return None if not math.isfinite(x) else x


def stata_g(x: float | None, width: int = 10, digits: int = 7) -> str:
    """Stata-like %9.0g: up to ``digits`` significant digits, no leading zero."""
    if x is None or not math.isfinite(x):
        return ".".rjust(width)
    for d in range(digits, 0, -1):
        s = f"{x:.{d}g}"
        if "e" not in s and s.startswith(("0.", "-0.")):
            s = s.replace("0.", ".", 1)
        if len(s) <= 9:
            break
    return s.rjust(width)


def _head(left: str, label: str, value: str) -> str:
    return f"{left:<48}{label:<18}= {value:>10}"


def _stata_lines(fit: PanelFit) -> list[str]:
    lines = [""]
    mt = fit.model_test
    if fit.estimator == "pooled":
        lines.append(_head(fit.title, "Number of obs", f"{fit.nobs:,}"))
        lines.append(_head(f"Panel variable: {fit.panel_var}", "Number of groups", f"{fit.ngroups:,}"))
        lines.append(_head("", mt.label, f"{mt.stat:.2f}"))
        lines.append(_head("", "Prob > F", f"{mt.p:.4f}"))
        lines.append(_head("", "R-squared", f"{fit.r2:.4f}"))
        lines.append(_head("", "Adj R-squared", f"{fit.adj_r2:.4f}"))
        lines.append(_head("", "Root MSE", f"{fit.sigma:.5g}"))
    else:
        lines.append(_head(fit.title, "Number of obs", f"{fit.nobs:,}"))
        lines.append(_head(f"Group variable: {fit.panel_var}", "Number of groups", f"{fit.ngroups:,}"))
        lines.append("")
        lines.append(f"{'R-squared:':<48}Obs per group:")
        lines.append(_head(f"     Within  = {fit.r2_within:.4f}", "             min", f"{fit.T_min:,}"))
        lines.append(_head(f"     Between = {fit.r2_between:.4f}", "             avg", f"{fit.T_avg:.1f}"))
        lines.append(_head(f"     Overall = {fit.r2_overall:.4f}", "             max", f"{fit.T_max:,}"))
        lines.append("")
        corr = {
            "fe": f"corr(u_i, Xb) = {fit.corr_u_xb or float('nan'):.4f}",
            "re": "corr(u_i, X) = 0 (assumed)",
            "be": "",
        }
        prob = "Prob > F" if mt.kind == "F" else "Prob > chi2"
        lines.append(_head("", mt.label, f"{mt.stat:.2f}"))
        lines.append(_head(corr[fit.estimator], prob, f"{mt.p:.4f}"))
    if fit.estimator == "re" and not fit.balanced:
        t = fit.theta_summary() or {}
        lines += [
            "",
            "------------------- theta --------------------",
            "  min      5%       median        95%      max",
            f"{t['min']:.4f}   {t['p5']:.4f}     {t['p50']:.4f}     {t['p95']:.4f}   {t['max']:.4f}",
        ]
    lines.append("")
    if fit.vce == "cluster":
        lines.append(f"{f'(Std. err. adjusted for {fit.n_clusters:,} clusters in {fit.cluster_var})':>78}")
    elif fit.vce == "robust":
        lines.append(f"{'(Robust std. err.)':>78}")
    rule = "-" * 13 + "+" + "-" * 64
    stat_name = "z" if fit.df_resid is None else "t"
    se_label = "Robust" if fit.vce != "conventional" else ""
    lines.append("-" * 78)
    if se_label:
        lines.append(f"{'':>13}|{'':>22}{se_label:>6}")
    lines.append(
        f"{fit.response[:12]:>12} | Coefficient  Std. err.{stat_name:>8}    P>|{stat_name}|     [95% conf. interval]"
    )
    lines.append(rule)
    for term, estimate, std_error, statistic, p_value, conf_low, conf_high in fit.tidy().itertuples(
        index=False, name=None
    ):
        lines.append(
            f"{term[:12]:>12} |{stata_g(estimate, 11)}{stata_g(std_error, 11)}{statistic:9.2f}"
            f"{p_value:8.3f}{stata_g(conf_low, 13)}{stata_g(conf_high, 12)}"
        )
    for name in fit.omitted:
        lines.append(f"{name[:12]:>12} |{'0':>11}  (omitted)")
    if fit.estimator in ("fe", "re"):
        lines.append(rule)
        lines.append(f"{'sigma_u':>12} |{stata_g(fit.sigma_u, 11, 8)}")
        lines.append(f"{'sigma_e':>12} |{stata_g(fit.sigma_e, 11, 8)}")
        lines.append(f"{'rho':>12} |{stata_g(fit.rho, 11, 8)}   (fraction of variance due to u_i)")
    lines.append("-" * 78)
    if fit.estimator == "fe" and fit.f_u is not None:
        f = fit.f_u
        lines.append(f"F test that all u_i=0: F({f.df1:g}, {f.df2:g}) = {f.stat:.2f}{'Prob > F = ':>28}{f.p:.4f}")
    if fit.estimator == "be":
        lines.append(f"sd(u_i + avg(e_i.)) = {stata_g(fit.sigma, 9).strip()}")
    if fit.estimator == "re" and fit.re_method == "baltagi-chang":
        lines.append("Variance components: Baltagi-Chang (Stata's re sa)")
    if fit.n_dropped:
        lines.append(f"({fit.n_dropped:,} observations with missing values dropped)")
    return lines
