"""Stata's ``melogit`` / ``meprobit`` / ``mecloglog`` / ``mepoisson`` / ``menbreg`` output layout.

Header (the model's title, number of observations, the groups -- one level as "Group
variable" with observations per group, several as the table, outermost first --, the
integration method: ``laplace`` for nagq = 1, ``mcaghermite`` with its points otherwise, the
nodes at the mode and curvature), Wald chi2 of all coefficients but the constant, the log
likelihood; one table with the coefficients (z tests), nbinom2's ``/lnalpha`` (ln alpha = -ln phi) and, per level, the
variances and covariances of the random effects with delta-method SEs (from 2 H^-1 over theta)
and CIs on the log scale for variances; then the LR test against the model without random
effects.  ``or=True`` (logit) and ``irr=True`` (log link) show exp(b), its SE exp(b) se and the
exponentiated limits, as Stata's ``or``/``irr`` options; z and p are those of b.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from hlm.errors import OptionError
from hlm.glmm.glm import lr_vs_glm
from hlm.glmm.latent import level_label, term_codes
from hlm.glmm.separation import separation_message
from hlm.glmm.theta import lower_triangles
from hlm.report.stata import RULE, abbrev, sg, stata_term

if TYPE_CHECKING:
    from hlm.glmm.result import GlmmResult

MID = "-" * 13 + "+" + "-" * 64
_NAMES = {"logit": "logistic", "probit": "probit", "cloglog": "complementary log-log"}


def _title(fit: GlmmResult) -> tuple[str, str]:
    """The header's title and the name of the model without random effects."""
    if fit.family == "poisson":
        return "Mixed-effects Poisson regression", "Poisson"
    if fit.family == "negative_binomial":
        return "Mixed-effects nbinomial regression", "nbinomial"
    if fit.frame.response.startswith("cbind("):
        return "Mixed-effects binomial regression", "binomial"
    name = _NAMES[fit.link]
    return f"Mixed-effects {name} regression", "logistic" if fit.link == "logit" else name


def _kv(label: str, value: str) -> str:
    return f"{label:<18}= {value:>10}"


def _line(left: str, right: str = "") -> str:
    return f"{left:<48}{right}".rstrip()


def _groups(fit: GlmmResult) -> list[str]:
    codes = term_codes(fit)
    order = list(reversed(range(len(codes))))  # outermost (fewest groups) first
    sizes = [np.bincount(codes[t], minlength=fit.frame.blocks[t]) for t in order]
    if len(order) == 1:
        n = sizes[0]
        return [
            _line(f"Group variable: {abbrev(level_label(fit, order[0]), 24)}", _kv("Number of groups", f"{len(n):,}")),
            "",
            _line("", "Obs per group:"),
            _line("", f"{'min':>17} = {n.min():>10,}"),
            _line("", f"{'avg':>17} = {n.mean():>10,.1f}"),
            _line("", f"{'max':>17} = {n.max():>10,}"),
        ]
    rule = "-" * 61
    lines = [
        "",
        rule,
        f"{'':15} |     No. of       Observations per Group",
        f"{'Group Variable':>15} |     Groups    Minimum    Average    Maximum",
        "-" * 16 + "+" + "-" * 44,
    ]
    for t, n in zip(order, sizes):
        name = abbrev(level_label(fit, t), 15)
        lines.append(f"{name:>15} | {len(n):>10,} {n.min():>10,} {n.mean():>10,.1f} {n.max():>10,}")
    return lines + [rule]


def wald_chi2(fit: GlmmResult) -> tuple[float, int, float]:
    """Wald chi2 of every fixed effect but the intercept: b' V^-1 b, its df and p."""
    keep = [i for i, n in enumerate(fit.frame.xnames) if stata_term(n) != "_cons"]
    if not keep:
        return float("nan"), 0, float("nan")
    b = fit.fixef.to_numpy()[keep]
    V = fit.vcov.to_numpy()[np.ix_(keep, keep)]
    chi2 = float(b @ np.linalg.solve(V, b))
    return chi2, len(keep), float(stats.chi2.sf(chi2, len(keep)))


def _row(
    label: str, est: float, se: float, lo: float, hi: float, z: float | None = None, p: float | None = None
) -> str:
    mid = f"{z:>8.2f} {p:>7.3f}" if z is not None and p is not None else " " * 16
    return f"{abbrev(label, 12):>12} | {sg(est):>10} {sg(se):>10} {mid}    {sg(lo):>9}   {sg(hi):>9}"


def _variance_rows(fit: GlmmResult, q: float) -> list[str]:
    """var()/cov() per level, outermost first, with delta-method SEs over theta."""
    k = fit.ntheta
    cov_theta = fit.vcov_all[:k, :k]

    def params(theta: np.ndarray) -> np.ndarray:
        return np.concatenate([(L @ L.T)[np.tril_indices(len(L))] for L in lower_triangles(theta, fit.frame.dims)])

    est = params(fit.theta)
    h = 1e-6
    J = np.column_stack([(params(fit.theta + h * e) - params(fit.theta - h * e)) / (2 * h) for e in np.eye(k)])
    se = np.sqrt(np.maximum(np.diag(J @ cov_theta @ J.T), 0.0))
    lines: list[str] = []
    at = 0
    blocks = []
    for t, (_, names) in enumerate(fit.frame.term_labels):
        rows, cols = np.tril_indices(len(names))
        block = []
        for r, c in zip(rows, cols):
            a, b = stata_term(names[r]), stata_term(names[c])
            label = f"var({a})" if r == c else f"cov({b},{a})"
            v, s = est[at], se[at]
            if r == c:
                half = q * s / v if v > 0 else 0.0  # a separated fit's SE can be huge: exp capped below overflow
                lo, hi = (math.exp(math.log(v) - half), math.exp(min(math.log(v) + half, 709.0))) if v > 0 else (0, 0)
            else:
                lo, hi = v - q * s, v + q * s
            block.append(_row(label, v, s, lo, hi))
            at += 1
        blocks.append([f"{abbrev(level_label(fit, t), 12):<12} |", *block, MID])
    for block in reversed(blocks):
        lines += block
    return lines


def _coef_rows(fit: GlmmResult, exp: bool) -> list[str]:
    rows = fit.tidy(level=0.95).to_dict(orient="records")
    rows = [r for r in rows if stata_term(r["term"]) != "_cons"] + [r for r in rows if stata_term(r["term"]) == "_cons"]
    out = []
    for r in rows:
        b, s, lo, hi = r["estimate"], r["std_error"], r["conf_low"], r["conf_high"]
        if exp:
            b, s, lo, hi = math.exp(b), math.exp(b) * s, math.exp(lo), math.exp(hi)
        out.append(_row(stata_term(r["term"]), b, s, lo, hi, r["statistic"], r["p_value"]))
    return out


def _lnalpha(fit: GlmmResult, q: float) -> list[str]:
    """nbinom2: ln alpha = -ln phi, its SE that of ln phi (the last parameter)."""
    se = math.sqrt(fit.vcov_all[-1, -1]) if fit.vcov_all[-1, -1] >= 0 else math.nan
    est = -math.log(float(fit.dispersion))  # type: ignore[arg-type]
    return [_row("/lnalpha", est, se, est - q * se, est + q * se), MID]


def stata_glmm_summary(fit: GlmmResult, *, odds_ratios: bool = False, irr: bool = False) -> str:
    """The whole output as one string (see the module docstring)."""
    if odds_ratios and not (fit.family == "binomial" and fit.link == "logit"):
        raise OptionError("or=True (odds ratios) is for logit models; use irr=True for Poisson / negative binomial")
    if irr and fit.family not in ("poisson", "negative_binomial"):
        raise OptionError("irr=True (incidence-rate ratios) is for Poisson and negative binomial models")
    title, null_name = _title(fit)
    q = float(stats.norm.ppf(0.975))
    chi2, df, p = wald_chi2(fit)
    method = "laplace" if fit.nagq == 1 else "mcaghermite"
    lines = [_line(title, _kv("Number of obs", f"{fit.nobs:,}"))]
    if fit.family == "negative_binomial":
        lines.append(_line("Overdispersion:    mean"))
    lines += _groups(fit)
    lines += [
        "",
        _line(f"Integration method: {method}", _kv("Integration pts.", str(fit.nagq))),
        "",
        _line("", _kv(f"Wald chi2({df})", "." if df == 0 else f"{chi2:.2f}")),
        _line(f"Log likelihood = {sg(fit.loglik, 9)}", _kv("Prob > chi2", "." if df == 0 else f"{p:.4f}")),
    ]
    head = "Odds Ratio" if odds_ratios else "IRR" if irr else "Coef."
    response = fit.frame.response
    if response.startswith("cbind("):
        response = response[len("cbind(") :].split(",")[0].strip()
    lines += [
        RULE,
        f"{abbrev(response, 12):>12} | {head:>10}   Std. Err.      z    P>|z|     [95% Conf. Interval]",
        MID,
        *_coef_rows(fit, odds_ratios or irr),
        MID,
    ]
    if fit.family == "negative_binomial":
        lines += _lnalpha(fit, q)
    lines += _variance_rows(fit, q)
    lines[-1] = RULE
    lr = lr_vs_glm(fit)
    if lr.distribution == "chibar2(01)":
        lines.append(
            f"LR test vs. {null_name} model: chibar2(01) = {lr.statistic:.2f}".ljust(54)
            + f"Prob >= chibar2 = {lr.p_value:.4f}"
        )
    else:
        lines += [
            f"LR test vs. {null_name} model: chi2({lr.df}) = {lr.statistic:.2f}".ljust(58)
            + f"Prob > chi2 = {lr.p_value:.4f}",
            "",
            "Note: LR test is conservative and provided only for reference.",
        ]
    if odds_ratios or irr:
        what = "odds" if odds_ratios else "incidence rate"
        lines.append(f"Note: _cons estimates baseline {what} (conditional on zero random effects).")
    if not fit.converged:
        lines.append("Warning: convergence not achieved.")
    if fit.separation:
        lines.append(f"Warning: {separation_message(fit.separation)}.")
    return "\n".join(lines + [f"Note: {n}." for n in fit.notes])
