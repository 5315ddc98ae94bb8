"""Stata's ``mixed ..., stddeviations`` (and ``xtmixed``) output layout.

Header (estimator, number of observations, groups -- one level as "Group variable",
several as the "No. of Groups / Observations per Group" table, outermost first), Wald
chi2 of all coefficients but the constant, the (restricted) log likelihood, the
coefficient table with z tests, the random-effects parameters on the SD scale with
delta-method standard errors and CIs on the log-SD (atanh for correlations) scale, and
the LR test against the linear model.  Numbers use Stata's ``%9.0g``-like display: up to
eight characters of magnitude, no leading zero (``.0668413``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from hlm.variance_share import stata_factor_order, varcomp_table

if TYPE_CHECKING:
    import pandas as pd

    from hlm.api import Fit

RULE = "-" * 78


def sg(x: float | None, budget: int = 8) -> str:
    """Stata's general display: at most ``budget`` characters for the magnitude."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "."
    if math.isinf(x):
        return "." if x != x else ("+inf" if x > 0 else "-inf")
    sign = "-" if x < 0 else ""
    a = abs(float(x))
    if a == 0:
        return "0"
    if a >= 10**budget or a < 1e-5:
        return sign + _exp(a)
    if a >= 1:
        intdigits = len(str(int(a)))
        dec = max(budget - intdigits - 1, 0)
        s = f"{a:.{dec}f}"
        if "." in s:
            s = s.rstrip("0").rstrip(".")
        if len(s) > budget:  # rounding carried into a new digit
            s = s[:budget].rstrip(".")
        return sign + s
    s = f"{a:.{budget - 1}f}"[1:]  # ".xxxxxxx"
    s = s.rstrip("0")
    return sign + (s if s != "." else "0")


def _exp(a: float) -> str:
    mant, ex = f"{a:.2e}".split("e")
    return f"{mant}e{ex[0]}{ex[1:].zfill(2)}"


def abbrev(name: str, width: int) -> str:
    """Shorten a name to ``width`` characters as Stata does, with a tilde."""
    return name if len(name) <= width else name[: width - 4] + "~" + name[-3:]


def stata_term(name: str) -> str:
    return "_cons" if name in ("(Intercept)", "_cons") else name


def level_name(fit: Fit, f: int) -> str:
    """Stata's name of a level: its own variable for lme4 nested factors (``cask`` for
    ``cask:batch``), else the factor's name."""
    agg = fit.aggregates
    fac = agg.factors[f]
    if fit.spec.syntax == "lme4" and agg.chain is not None and f in agg.chain:
        pos = agg.chain.index(f)
        if pos + 1 < len(agg.chain):
            extra = set(fac.columns) - set(agg.factors[agg.chain[pos + 1]].columns)
            if len(extra) == 1:
                return extra.pop()
    return fac.name


def random_effects_table(fit: Fit) -> pd.DataFrame:
    """The random-effects parameters in Stata's order with the SEs and CIs of
    ``fit.varcomp()`` (:func:`hlm.variance_share.varcomp_table`)."""
    return varcomp_table(fit, fit.varcomp_info)


def _kv(label: str, value: str) -> str:
    return f"{label:<18}= {value:>10}"


def _line(left: str, right: str = "") -> str:
    return f"{left:<48}{right}".rstrip()


def _header(fit: Fit) -> list[str]:
    est = "REML" if fit.reml else "ML"
    lines = [_line(f"Mixed-effects {est} regression", _kv("Number of obs", f"{fit.nobs:,}"))]
    order = stata_factor_order(fit)
    agg = fit.aggregates
    if len(order) == 1:
        fac = agg.factors[order[0]]
        lo, avg, hi = fac.size_range()
        lines.append(
            _line(
                f"Group variable: {abbrev(level_name(fit, order[0]), 24)}", _kv("Number of groups", f"{fac.nlevels:,}")
            )
        )
        lines += [
            "",
            _line("", "Obs per group:"),
            _line("", f"{'min':>17} = {lo:>10,}"),
            _line("", f"{'avg':>17} = {avg:>10,.1f}"),
            _line("", f"{'max':>17} = {hi:>10,}"),
        ]
    else:
        rule = "-" * 61
        lines += [
            "",
            rule,
            f"{'':15} |     No. of       Observations per Group",
            f"{'Group Variable':>15} |     Groups    Minimum    Average    Maximum",
            "-" * 16 + "+" + "-" * 44,
        ]
        for f in order:
            fac = agg.factors[f]
            lo, avg, hi = fac.size_range()
            lines.append(f"{abbrev(level_name(fit, f), 15):>15} | {fac.nlevels:>10,} {lo:>10,} {avg:>10,.1f} {hi:>10,}")
        lines.append(rule)
    chi2, k, p = fit.wald_test()
    ll = "Log restricted-likelihood" if fit.reml else "Log likelihood"
    lines += [
        "",
        _line("", _kv(f"Wald chi2({k})", "." if k == 0 else f"{chi2:.2f}")),
        _line(f"{ll} = {sg(fit.loglik, 9)}", _kv("Prob > chi2", "." if k == 0 else f"{p:.4f}")),
        "",
    ]
    return lines


def _coef_table(fit: Fit) -> list[str]:
    tidy = fit.tidy()
    rows = tidy.to_dict(orient="records")
    rows = [r for r in rows if stata_term(r["term"]) != "_cons"] + [r for r in rows if stata_term(r["term"]) == "_cons"]
    lines = [
        RULE,
        f"{abbrev(fit.aggregates.response, 12):>12} |      Coef.   Std. Err.      z    P>|z|     [95% Conf. Interval]",
        "-" * 13 + "+" + "-" * 64,
    ]
    for r in rows:
        lines.append(
            f"{abbrev(stata_term(r['term']), 12):>12} | {sg(r['estimate']):>10} {sg(r['std_error']):>10} "
            f"{r['statistic']:>8.2f} {r['p_value']:>7.3f}    {sg(r['conf_low']):>9}   {sg(r['conf_high']):>9}"
        )
    lines.append(RULE)
    return lines


def _cov_type(terms: list) -> str:
    if len(terms) == 1 and terms[0].cov != "unstructured":
        return terms[0].cov.capitalize()
    if len(terms) == 1:
        return "Unstructured" if len(terms[0].columns) > 1 else "Identity"
    if all(len(t.columns) == 1 for t in terms):
        return "Independent"
    return ""


def _effects(names: str) -> str:
    """Stata's list of a term's effects: ``(Intercept) Days`` (the term's columns, intercept
    first) -> ``Days _cons``, slopes first as Stata lists them."""
    head = "(Intercept) "
    return f"{names[len(head) :]} _cons" if names.startswith(head) else stata_term(names)


def _re_row(label: str, est: float, se: float, lo: float, hi: float) -> str:
    return f"{abbrev(label, 28):>28} | {sg(est):>10} {sg(se):>10}     {sg(lo):>9}   {sg(hi):>9}"


def _re_table(fit: Fit, table: pd.DataFrame) -> list[str]:
    lines = [
        RULE,
        "  Random-effects Parameters  |   Estimate   Std. Err.     [95% Conf. Interval]",
        "-" * 29 + "+" + "-" * 48,
    ]
    struct = fit.structure
    for f in stata_factor_order(fit):
        terms = [t for t in struct.terms if t.factor == f]
        fname = fit.aggregates.factors[f].name
        kind = _cov_type(terms)
        blocks = (
            [(kind, table[table["level"] == fname])]
            if kind
            else [(_cov_type([t]), table[(table["level"] == fname) & (table["group"] == t.group)]) for t in terms]
        )
        for kind_b, rows in blocks:
            lines.append(f"{abbrev(level_name(fit, f) + ': ' + kind_b, 28):<28} |")
            for r in rows.itertuples():
                if r.var2 is None or r.var2 != r.var2:
                    label = f"sd({_effects(r.var1)})"
                elif r.var1 == r.var2:  # the common correlation of an exchangeable term
                    label = f"corr({_effects(r.var1)})"
                else:
                    a, b = stata_term(r.var1), stata_term(r.var2)
                    if a == "_cons":
                        a, b = b, a
                    label = f"corr({a},{b})"
                lines.append(_re_row(label, r.estimate, r.std_error, r.conf_low, r.conf_high))
            lines.append("-" * 29 + "+" + "-" * 48)
    res = table[table["level"] == "Residual"].iloc[0]
    lines.append(_re_row("sd(Residual)", res.estimate, res.std_error, res.conf_low, res.conf_high))
    lines.append(RULE)
    return lines


def lr_line(fit: Fit) -> list[str]:
    lr = fit.lr_test_linear()
    if lr.distribution == "chibar2(01)":
        return [
            f"LR test vs. linear model: chibar2(01) = {lr.statistic:.2f}".ljust(54)
            + f"Prob >= chibar2 = {lr.p_value:.4f}"
        ]
    return [
        f"LR test vs. linear model: chi2({lr.df}) = {lr.statistic:.2f}".ljust(58) + f"Prob > chi2 = {lr.p_value:.4f}",
        "",
        "Note: LR test is conservative and provided only for reference.",
    ]


def stata_summary(fit: Fit) -> str:
    """The whole Stata-style output as one string."""
    table = random_effects_table(fit)
    lines = _header(fit) + _coef_table(fit) + [""] + _re_table(fit, table) + lr_line(fit)
    for note in fit.notes:
        lines.append(f"Note: {note}.")
    if fit.singular:
        from hlm.lmm.checks import boundary_messages

        lines += [f"Note: boundary (singular) fit: {m}." for m in boundary_messages(fit)]
        lines.append("Note: standard errors of components on the boundary are not reported.")
    elif not fit.converged:
        lines.append(f"Warning: convergence not achieved ({fit.optsummary.return_code}).")
    return "\n".join(lines)
