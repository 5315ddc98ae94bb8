"""Likelihood-ratio tests: versus the linear model (Stata's ``mixed`` footer) and between fits.

LR test vs the linear model.  The linear model is theta = 0, so its criterion comes from the
same aggregates: Q = K'K, log|H| = 0,

    ML:   -2 log L_0   = n (1 + log(2 pi RSS / n)),
    REML: -2 log L_R0  = (n - p)(1 + log(2 pi RSS / (n - p))) + log|X'X|   (R's logLik(lm, REML=TRUE)),

and the statistic is 2 (log L - log L_0) on the criterion the model was fitted with (REML
fits compare REML criteria, the mean structure being the same).  With one variance
parameter it is ``chibar2(01)``: the null puts it on the boundary, the statistic is
0.5 chi2_0 + 0.5 chi2_1 and p = 0.5 P(chi2_1 > x) for x > 0 (1 at x = 0, as Stata).  With
k > 1 parameters Stata reports chi2(k), p = P(chi2_k > x), noting that this is conservative.

Between fits (:func:`lrtest`, :func:`compare`, lme4's ``anova``): models sorted by their
number of parameters; a model must be nested in the next (:func:`nested_in`: its fixed
effects and its random effects -- each grouping factor's columns and correlations -- a
subset of the larger model's), else :func:`lrtest` raises :class:`~hlm.errors.ComparisonError`
and :func:`compare` reports AIC and BIC only, with a note.  Each row's chi2 = 2 (log L_i - log L_{i-1}) on the
difference in
parameters, ``p_value`` = P(chi2_df > chi2) (lme4's naive p).  When the larger model adds
exactly one variance (with or without its covariances, and the same fixed effects) the
null is on the boundary and ``p_value_chibar2`` gives the mixture
0.5 P(chi2_{df-1} > x) + 0.5 P(chi2_df > x) (Self & Liang 1987; Stram & Lee 1994).  REML
log-likelihoods are only comparable for the same fixed effects: otherwise
:class:`~hlm.errors.ComparisonError`, or ``refit_ml=True`` refits every REML fit by ML from
its aggregates (as lme4's ``anova`` does).  GLMMs (ML fits) compare with GLMMs of the same
family, link, nagq and rows (:mod:`hlm.glmm.compare`), never with linear fits.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from hlm.aggregate.stats import Aggregates
from hlm.errors import ComparisonError, HLMWarning
from hlm.glmm import compare as glmm_compare
from hlm.glmm.result import GlmmResult
from hlm.inference.boundary import LRTest, boundary_test
from hlm.lmm.deviance import profile
from hlm.lmm.pipeline import fit_aggregates
from hlm.lmm.result import LmmResult

COMPARE_COLUMNS = ["model", "npar", "aic", "bic", "loglik", "deviance", "chisq", "df", "p_value", "p_value_chibar2"]


def linear_model_criterion(agg: Aggregates, reml: bool) -> float:
    """The linear model's -2 log L (ML) or REML criterion from the aggregates (H = W^{-1}
    with precision weights: log|H| = -sum log w)."""
    return profile(-agg.log_weights, np.asarray(agg.ktk, dtype=float), agg.nobs, reml).objective


def lr_vs_linear(fit: LmmResult) -> LRTest:
    """Stata's "LR test vs. linear model" for a fitted mixed model."""
    return boundary_test(linear_model_criterion(fit.aggregates, fit.reml), fit.profiled.objective, fit.structure.ntheta)


def _same_fixed(a: LmmResult | GlmmResult, b: LmmResult | GlmmResult) -> bool:
    if isinstance(a, GlmmResult) or isinstance(b, GlmmResult):
        return isinstance(a, GlmmResult) and isinstance(b, GlmmResult) and glmm_compare.same_fixed(a, b)
    xa, xb = a.aggregates, b.aggregates
    if tuple(xa.xnames) != tuple(xb.xnames):
        return False
    p = xa.p
    return bool(np.allclose(xa.ktk[:p, :p], xb.ktk[:p, :p], rtol=1e-10, atol=0.0))


def _random_parts(fit: LmmResult | GlmmResult) -> tuple[set, set]:
    """The random effects of a fit as (factor, column) pairs and correlated
    (factor, column, column) triples, factors named by their set of grouping columns."""
    if isinstance(fit, GlmmResult):
        return glmm_compare.random_parts(fit)
    cols, pairs = set(), set()
    for term in fit.structure.terms:
        key = frozenset(fit.aggregates.factors[term.factor].columns)
        cols |= {(key, c) for c in term.columns}
        pairs |= {(key, *sorted((a, b))) for i, a in enumerate(term.columns) for b in term.columns[i + 1 :]}
    return cols, pairs


def _xnames(fit: LmmResult | GlmmResult) -> tuple[str, ...]:
    return tuple(fit.frame.xnames if isinstance(fit, GlmmResult) else fit.aggregates.xnames)


def nested_in(small: LmmResult | GlmmResult, large: LmmResult | GlmmResult) -> str | None:
    """None when ``small`` is a special case of ``large`` (its fixed effects, random effects
    and their correlations all in ``large``), else what ``small`` has that ``large`` lacks."""
    extra = [x for x in _xnames(small) if x not in _xnames(large)]
    if extra:
        return f"the fixed effect{'s' if len(extra) > 1 else ''} {', '.join(extra)}"
    (cs, ps), (cl, pl) = _random_parts(small), _random_parts(large)
    if cs - cl:
        key, col = sorted(cs - cl, key=str)[0]
        return f"the random effect {col} of {':'.join(sorted(key))}"
    if ps - pl:
        key, a, b = sorted(ps - pl, key=str)[0]
        return f"the correlation of {a} and {b} across {':'.join(sorted(key))}"
    return None


def _n_sd(fit: LmmResult | GlmmResult) -> int:
    if isinstance(fit, GlmmResult):
        return glmm_compare.n_sd(fit)
    return sum(1 for (_, r, c) in fit.structure.theta_pos if r == c)


def refit_ml(fit: LmmResult) -> LmmResult:
    """The same model refitted by maximum likelihood from its aggregates (no rows needed)."""
    if not fit.reml:
        return fit
    return fit_aggregates(
        fit.spec,
        fit.aggregates,
        reml=False,
        data=fit.data,
        x_model_spec=fit.x_model_spec,
        notes=fit.notes,
        weights=fit.weights,
        record=type(fit),
    )


def _prepare(models: tuple, refit: bool) -> list:
    if len(models) < 2:
        raise ComparisonError("compare needs at least two fitted models")
    glmms = [isinstance(m, GlmmResult) for m in models]
    if any(glmms):
        if not all(glmms):
            raise ComparisonError("cannot compare a GLMM with a linear mixed model; compare fits of one family")
        glmm_compare.check_comparable(models)
        return list(models)
    for m in models:
        if not isinstance(m, LmmResult):
            raise ComparisonError(f"compare and lrtest take fits from hlm.fit, not {type(m).__name__} ({m!r:.40})")
    n = {m.nobs for m in models}
    if len(n) > 1:
        raise ComparisonError(
            f"the models were fitted to different numbers of observations ({sorted(n)}); "
            "compare models fitted to the same rows"
        )
    if len({(m.aggregates.weights is None, round(m.aggregates.log_weights, 9)) for m in models}) > 1:
        raise ComparisonError(
            "the models have different precision weights; compare models fitted with the same weights"
        )
    y = {round(float(m.aggregates.ktk[-1, -1]), 6) for m in models}
    if len(y) > 1:
        raise ComparisonError("the models have different responses or rows; compare models of the same data")
    any_reml = any(m.reml for m in models)
    fixed_differ = any(not _same_fixed(models[0], m) for m in models[1:])
    mixed_criteria = len({m.reml for m in models}) > 1
    if any_reml and (fixed_differ or mixed_criteria):
        if not refit:
            raise ComparisonError(
                "compare mean structures using ML, not REML: refit with reml=False or pass refit_ml=True"
                if fixed_differ
                else "cannot compare a REML fit with an ML fit: pass refit_ml=True"
            )
        return [refit_ml(m) for m in models]
    if refit:
        return [refit_ml(m) for m in models]
    return list(models)


def compare(*models: LmmResult | GlmmResult, refit_ml: bool = False, names: list[str] | None = None) -> pd.DataFrame:
    """Likelihood-ratio comparison of nested fits (lme4's ``anova``), one row per model.

    Columns: model, npar, aic, bic, loglik, deviance (-2 loglik), chisq, df, p_value (naive
    chi2), p_value_chibar2 (boundary mixture where the larger model adds one variance with
    the same fixed effects; NaN otherwise).  Models are sorted by npar.  REML fits with
    different fixed effects raise :class:`ComparisonError` unless ``refit_ml=True``.  Where a
    model is not nested in the next, that row has AIC and BIC only (no chi2) and a note is
    issued (an :class:`~hlm.errors.HLMWarning`, also in ``attrs["note"]``).
    """
    labels = list(names) if names is not None else [f"m{i}" for i in range(len(models))]
    if len(labels) != len(models):
        raise ComparisonError(f"{len(labels)} names for {len(models)} models")
    fits = _prepare(tuple(models), refit_ml)
    order = sorted(range(len(fits)), key=lambda i: fits[i].df_model)
    rows = []
    notes = []
    prev = None
    prev_label = ""
    for i in order:
        m = fits[i]
        ll = m.loglik
        chisq = df = p = pmix = np.nan
        missing: str | None = None if prev is None else nested_in(prev, m)
        if missing is not None:
            notes.append(
                f"{labels[i]} is not nested in {prev_label} ({prev_label} has {missing}, {labels[i]} does "
                "not): no LR test; compare AIC and BIC only"
            )
        elif prev is not None:
            df = m.df_model - prev.df_model
            chisq = max(2.0 * (ll - prev.loglik), 0.0)
            if df > 0:
                p = float(stats.chi2.sf(chisq, df))
                if _n_sd(m) - _n_sd(prev) == 1 and _same_fixed(m, prev):
                    pmix = 0.5 * float(stats.chi2.sf(chisq, df - 1) if df > 1 else (chisq <= 0)) + 0.5 * float(
                        stats.chi2.sf(chisq, df)
                    )
        rows.append((labels[i], m.df_model, m.aic, m.bic, ll, -2.0 * ll, chisq, df, p, pmix))
        prev, prev_label = m, labels[i]
    out = pd.DataFrame(rows, columns=COMPARE_COLUMNS)
    out["df"] = out["df"].astype("Int64")
    if notes:
        out.attrs["note"] = "; ".join(notes)
        warnings.warn(out.attrs["note"], HLMWarning, stacklevel=2)
    return out


def lrtest(m0: LmmResult | GlmmResult, m1: LmmResult | GlmmResult, *, refit_ml: bool = False) -> LRTest:
    """The likelihood-ratio test of the smaller fit against the larger one.

    ``p_value`` is the boundary mixture (chibar2) when the larger model adds exactly one
    variance with the same fixed effects, else the chi2(df) p (lme4's); ``p_value_naive`` is
    always the chi2(df) p.
    """
    fits = sorted(_prepare((m0, m1), refit_ml), key=lambda m: m.df_model)
    missing = nested_in(fits[0], fits[1])
    if missing is not None:
        raise ComparisonError(
            f"the models are not nested: the smaller one has {missing} and the larger one does "
            "not, so an LR test does not apply; compare their AIC and BIC (hlm.compare)"
        )
    table = compare(*fits)
    row = table.iloc[1]
    if int(row["df"]) <= 0:
        raise ComparisonError(
            "the two models have the same number of parameters; an LR test needs nested "
            "models that differ in parameters"
        )
    mixture = not math.isnan(row["p_value_chibar2"])
    return LRTest(
        float(row["chisq"]),
        int(row["df"]),
        float(row["p_value_chibar2"] if mixture else row["p_value"]),
        f"chibar2 mixture of chi2({int(row['df']) - 1}) and chi2({int(row['df'])})"
        if mixture
        else f"chi2({int(row['df'])})",
        float(table.iloc[0]["loglik"]),
        float(row["loglik"]),
        note="one variance on the boundary under the null: 50:50 mixture" if mixture else "",
        p_value_naive=float(row["p_value"]),
    )


anova = compare
"""lme4's name for :func:`compare` (the same function).  Unlike lme4's ``anova``, REML fits with
different fixed effects are refused rather than refitted silently: pass ``refit_ml=True``."""
