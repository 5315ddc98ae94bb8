"""The :class:`Fit` users see: the fitted record (:class:`hlm.lmm.result.LmmResult`) with every
feature as a method, and :func:`fit`, the stages of :mod:`hlm.lmm.pipeline` composed.  This is
the only module that imports every feature; features import the record, never this module.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import pandas as pd
from scipy import stats

from hlm.aggregate import Backend
from hlm.aggregate.stats import pooled_message
from hlm.data.source import check_file, choose_backend
from hlm.design import with_offset
from hlm.errors import HLMWarning, OptionError
from hlm.glmm import fit_glmm
from hlm.glmm.result import GlmmResult
from hlm.glmm.stata import command_of
from hlm.inference.confint import confint
from hlm.inference.ddf import fixed_effects_table, wald_slopes
from hlm.inference.likelihood_ratio import LRTest, lr_vs_linear
from hlm.inference.varcomp import varcomp, varcomp_vcov
from hlm.lmm.checks import implicit_nesting_warning, level_order
from hlm.lmm.checks_data import within_order_warning
from hlm.lmm.pipeline import aggregate, criterion, fit_aggregates
from hlm.lmm.ranef import coef_frames, ranef_frame
from hlm.lmm.result import LmmResult
from hlm.predict.memory import fitted, predict, residuals
from hlm.report.html import fit_html
from hlm.report.stata import stata_summary
from hlm.report.text import lme4_summary, output_sections
from hlm.spec import ModelSpec, parse_model
from hlm.survey.fit import fit_pseudo
from hlm.survey.logit_fit import fit_weighted_glmm
from hlm.survey.logit_result import PseudoLogitFit
from hlm.survey.result import PseudoFit
from hlm.survey.sql import fit_pseudo_sql
from hlm.survey.stata import stata_weights
from hlm.survey.weights import PwScale
from hlm.variance_share import icc_table, r2_table
from hlm.weights import Weights

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TIDY_COLUMNS = ["term", "estimate", "std_error", "statistic", "p_value", "conf_low", "conf_high"]


@dataclass(frozen=True)
class Fit(LmmResult):
    """A fitted linear mixed model: the record of :mod:`hlm.lmm.result` and its features."""

    # ---- tables ------------------------------------------------------------------------
    def tidy(
        self, *, level: float = 0.95, ddf: Literal["none", "satterthwaite", "kenward-roger"] = "none"
    ) -> pd.DataFrame:
        """Fixed effects with Wald z statistics, p-values and confidence limits; with
        ``ddf="satterthwaite"`` or ``"kenward-roger"`` t tests on those df (an extra ``df``
        column; Kenward-Roger also adjusts the SEs), see :mod:`hlm.inference.ddf`."""
        if ddf != "none":
            return fixed_effects_table(self, ddf=ddf, level=level)
        est, se = self.fixef.to_numpy(), self.se.to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            z = est / se
        q = stats.norm.ppf(0.5 + level / 2)
        return pd.DataFrame(
            {
                "term": list(self.aggregates.xnames),
                "estimate": est,
                "std_error": se,
                "statistic": z,
                "p_value": 2 * stats.norm.sf(np.abs(z)),
                "conf_low": est - q * se,
                "conf_high": est + q * se,
            },
            columns=TIDY_COLUMNS,
        )

    def summary(self, style: Literal["lme4", "stata"] | None = None) -> str:
        """A readable text summary in lme4's layout or Stata's ``mixed`` layout; by default the
        layout of the model's syntax (a Stata-syntax model prints Stata's table, as the CLI does)."""
        style = style or self.spec.syntax
        if style == "stata":
            return stata_summary(self)
        if style != "lme4":
            raise OptionError(f"style must be 'lme4' or 'stata', not {style!r}")
        return lme4_summary(self)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self, *, ranef: bool = False) -> dict[str, Any]:
        """A JSON-ready dictionary (see the CLI's ``--json``); ``ranef=True`` adds the
        conditional modes of every level."""
        vc = self.varcorr.astype(object).where(self.varcorr.notna(), None)
        out = {
            "model": self.spec.text,
            "reml": self.reml,
            "nobs": self.nobs,
            "ndropped": self.ndropped,
            "weights": self.aggregates.weights,
            "ngroups": self.ngroups,
            "fixef": [
                {"term": t, "estimate": float(e), "se": float(s)}
                for t, e, s in zip(self.aggregates.xnames, self.fixef, self.se)
            ],
            "dropped_columns": list(self.dropped_columns),
            "varcorr": [
                {k: (None if v is None else (float(v) if k in ("vcov", "sdcor") else v)) for k, v in row.items()}
                for row in vc.to_dict(orient="records")
            ],
            "sigma": self.sigma,
            "theta": [float(t) for t in self.theta],
            "loglik": self.loglik,
            "deviance": self.deviance,
            "reml_criterion": self.reml_criterion,
            "aic": self.aic,
            "bic": self.bic,
            "converged": self.converged,
            "singular": self.singular,
            "optimizer": self.optsummary.to_dict(),
            "notes": list(self.notes),
        }
        out.update(self._output_sections(ranef=ranef))
        return out

    def ranef(self) -> pd.DataFrame:
        """Conditional modes and conditional SDs (lme4's ``ranef(condVar=TRUE)``): columns
        group, level, term, estimate, std_error (see :mod:`hlm.lmm.ranef`)."""
        if (msg := pooled_message(self.aggregates)) is not None:
            warnings.warn(
                f"{msg}: their conditional modes are left out; hlm.write_ranef(fit, data, 'ranef.parquet') "
                "writes them all",
                HLMWarning,
                stacklevel=2,
            )
        return ranef_frame(self, self.conditional_modes)

    def coef(self) -> dict[str, pd.DataFrame]:
        """lme4's ``coef()``: per grouping factor, each level's coefficients beta + b (fixed
        effects plus conditional modes), one column per fixed effect; ``fixef`` holds beta alone
        (see :func:`hlm.lmm.ranef.coef_frames`).  A factor whose groups were pooled out of memory
        is left out, with :meth:`ranef`'s warning."""
        return coef_frames(self.fixef, self.ranef(), self.spec.intercept_name)

    def predict(
        self, newdata: Any = None, *, re: bool = True, new_levels: Literal["population", "error"] = "population"
    ) -> pd.Series:
        """X beta (+ Z b with ``re=True``) for ``newdata`` (default: the fitted data);
        unseen levels get the population value or raise (see :mod:`hlm.predict`)."""
        return predict(self, newdata, re=re, new_levels=new_levels)

    def fitted(self) -> pd.Series:
        """Conditional fitted values for the rows used in the fit."""
        return fitted(self)

    def residuals(self) -> pd.Series:
        """Response minus conditional fitted values for the rows used in the fit."""
        return residuals(self)

    def icc(self, at: dict[str, float] | None = None, *, level: float = 0.95) -> pd.DataFrame:
        """Variance, share and intra-class correlation per level with CIs (see
        :mod:`hlm.variance_share`); ``at`` gives random-slope covariate values (default 0)."""
        return icc_table(self, at, level=level, vc=self.varcomp_info)

    def r2(self) -> dict[str, float]:
        """Nakagawa & Schielzeth marginal and conditional R^2 (Johnson's extension)."""
        return r2_table(self)

    def plot(
        self,
        kind: Literal["caterpillar", "variance", "profile"] = "caterpillar",
        file: Any = None,
        *,
        overwrite: bool = False,
        **kwargs: Any,
    ) -> Figure:
        """A matplotlib Figure (saved to ``file`` when given, its format by the extension; an
        existing file only with ``overwrite=True``); see :mod:`hlm.report.plots`."""
        from hlm.report.plots import plot  # matplotlib loads with the first plot

        return plot(self, kind, file=file, overwrite=overwrite, **kwargs)

    def _repr_html_(self) -> str:
        return fit_html(self)

    def _output_sections(self, *, ranef: bool = False) -> dict[str, Any]:
        return output_sections(self, ranef=ranef)

    # ---- inference (hlm.inference) ----
    def varcomp(self, *, level: float = 0.95) -> pd.DataFrame:
        """SDs, correlations and sigma with SEs from the observed information and CIs on the
        log-SD / atanh scale (Stata's ``mixed``), see :mod:`hlm.inference.varcomp`."""
        return varcomp(self, level=level, info=self.varcomp_info)

    @property
    def varcomp_vcov(self) -> pd.DataFrame:
        """Covariance of (log SDs, atanh correlations, log sigma) from the observed information."""
        return varcomp_vcov(self, info=self.varcomp_info)

    def confint(
        self,
        *,
        method: Literal["wald", "profile", "boot"] = "wald",
        level: float = 0.95,
        nsim: int = 1000,
        seed: Any = None,
        progress: bool = True,
    ) -> pd.DataFrame:
        """Confidence intervals for SDs, correlations, sigma and fixed effects: Wald (Stata's
        log-SD scale), profile likelihood (lme4) or parametric bootstrap (percentile, ``nsim``
        replicates), see :mod:`hlm.inference.confint`.

        The default is ``method="wald"`` (Stata's ``mixed``, instant), not lme4's profile: ask for
        ``method="profile"`` to get lme4's ``confint()``.  A REML fit is profiled on its ML refit,
        as lme4 does; that table's method reads ``profile (ML refit)`` and its ``attrs["note"]``
        says so."""
        return confint(self, method=method, level=level, nsim=nsim, seed=seed, progress=progress)

    def lr_test_linear(self) -> LRTest:
        """Stata's "LR test vs. linear model" (chibar2(01) for one variance parameter, a
        conservative chi2(k) otherwise), see :mod:`hlm.inference.likelihood_ratio`."""
        return lr_vs_linear(self)

    def wald_test(self) -> tuple[float, int, float]:
        """Stata's header Wald chi2 that all slopes are zero: (chi2, df, p)."""
        return wald_slopes(self)


@overload
def fit(
    model: str | ModelSpec,
    data: Any = None,
    *,
    reml: bool | None = None,
    backend: Backend = "auto",
    sql: str | None = None,
    con: Any = None,
    reorder: bool = False,
    weights: Weights = None,
    offset: Any = None,
    pweights: None = None,
    cond_weights: bool = False,
    pwscale: PwScale = None,
    family: Literal["gaussian"] = "gaussian",
    link: str | None = None,
    nagq: int | None = None,
) -> Fit: ...


@overload
def fit(
    model: str | ModelSpec,
    data: Any = None,
    *,
    reml: bool | None = None,
    backend: Backend = "auto",
    sql: str | None = None,
    con: Any = None,
    reorder: bool = False,
    weights: Weights = None,
    offset: Any = None,
    pweights: list[str],
    cond_weights: bool = False,
    pwscale: PwScale = None,
    family: Literal["gaussian"] = "gaussian",
    link: str | None = None,
    nagq: int | None = None,
) -> PseudoFit: ...


@overload
def fit(
    model: str | ModelSpec,
    data: Any = None,
    *,
    reml: bool | None = None,
    backend: Backend = "auto",
    sql: str | None = None,
    con: Any = None,
    reorder: bool = False,
    weights: Weights = None,
    offset: Any = None,
    pweights: None = None,
    cond_weights: bool = False,
    pwscale: PwScale = None,
    family: str,
    link: str | None = None,
    nagq: int | None = None,
) -> Fit | GlmmResult: ...


@overload
def fit(
    model: str | ModelSpec,
    data: Any = None,
    *,
    reml: bool | None = None,
    backend: Backend = "auto",
    sql: str | None = None,
    con: Any = None,
    reorder: bool = False,
    weights: Weights = None,
    offset: Any = None,
    pweights: list[str],
    cond_weights: bool = False,
    pwscale: PwScale = None,
    family: str,
    link: str | None = None,
    nagq: int | None = None,
) -> PseudoFit | PseudoLogitFit: ...


def fit(
    model: str | ModelSpec,
    data: Any = None,
    *,
    reml: bool | None = None,
    backend: Backend = "auto",
    sql: str | None = None,
    con: Any = None,
    reorder: bool = False,
    weights: Weights = None,
    offset: Any = None,
    pweights: list[str] | None = None,
    cond_weights: bool = False,
    pwscale: PwScale = None,
    family: str = "gaussian",
    link: str | None = None,
    nagq: int | None = None,
) -> Fit | PseudoFit | PseudoLogitFit | GlmmResult:
    """Fit a linear mixed model, or with ``family`` other than "gaussian" a generalized one.

    Parameters
    ----------
    model : an lme4 formula (``"y ~ x + (1 | school/class)"``), read with R's semantics
        (``I(x^2)``, ``poly``, ``scale``, ``offset``, R's column names; see :mod:`hlm.spec.rformula`),
        or Stata ``mixed`` syntax (``"y x || school: || class:"``; no ``~``), or a Stata GLMM command
        (``melogit``, ``meprobit``, ``mecloglog``, ``mepoisson``, ``menbreg``, ``meglm``; see :mod:`hlm.glmm.stata`).
    data : pandas or polars DataFrame, pyarrow Table, or a path to .csv, .parquet or .dta.
    reml : REML (True) or maximum likelihood (False); None (default): what the model string
        says (Stata's ``, mle`` / ``, reml``; ``mixed`` means ML, ``xtmixed`` REML), else REML.
        An argument that contradicts the string raises :class:`~hlm.errors.OptionError`.
    backend : "auto" (files, ``sql=`` and duckdb relations -> DuckDB; Spark DataFrames ->
        Spark; frames -> numpy), "memory", "duckdb" or "spark".
    sql, con : aggregate the result of a DuckDB query (on ``con``, default a fresh connection).
    reorder : nested levels listed inner to outer (``|| student: || school:``) raise a
        :class:`~hlm.errors.NestingError` naming the right order; ``reorder=True`` fits that
        order instead, with a :class:`~hlm.errors.StructureWarning` and a note.  See
        :mod:`hlm.lmm.checks` for this and the other structure checks.
    weights : PRECISION weights, as lme4's ``lmer(..., weights = w)``: a column name (read
        in the same pass, on every backend) or one value per row; row i has residual
        variance sigma^2 / w_i.  Not sampling (survey) weights.  Numeric, finite, >= 0;
        a zero weight drops the row (counted in the notes).  See :mod:`hlm.weights`.
    offset : as lme4's ``offset=``: a column name or an array with one value per row (the
        same as adding ``offset(...)`` to the formula): y - offset is modelled, and fitted
        values and predictions add it back.
    pweights, cond_weights, pwscale : SAMPLING (survey) weights, one column per level, the
        observations' first: pseudo-maximum likelihood with cluster-robust SEs, see :mod:`hlm.survey`.
    family, link, nagq : "binomial" (0/1, a two-level factor, or lme4's ``cbind(successes,
        failures) ~ ...``; links logit, probit, cloglog), "poisson" or "negative_binomial"
        (nbinom2; log link) fit a GLMM by maximum likelihood, Laplace (``nagq=1``) or adaptive
        Gauss-Hermite with ``nagq`` points for one scalar random term or nested random intercepts,
        or glmer's fast ``nAGQ = 0`` (``nagq=0``); files, ``sql=`` and Spark DataFrames are collapsed by
        a GROUP BY in DuckDB or Spark; see :mod:`hlm.glmm`.
        With ``pweights``: a logit with nested random intercepts (two or three levels) by pseudo-ML
        (``nagq`` default 13, as WeMix; Stata: ``melogit y x [pw=w1] || school:, pweight(w2)``), see
        :mod:`hlm.survey.logit`.
    """
    model, pweights, cond_weights, pwscale = _sampling_weights(model, pweights, cond_weights, pwscale)
    generalized = family != "gaussian" or command_of(model) is not None
    if pweights is not None and generalized:
        if backend not in ("auto", "memory") or any(v is not None for v in (sql, con, weights, offset)) or reml:
            raise OptionError("a weighted logit is fitted in memory by ML, without weights=, offset=, sql= or con=")
        return fit_weighted_glmm(model, data, family, link, nagq, pweights, cond_weights, pwscale)
    if pweights is not None:
        return _fit_pweights(model, data, reml, backend, sql, con, weights, offset, pweights, cond_weights, pwscale)
    if generalized:
        if reorder:
            raise OptionError("reorder= is not available for GLMMs yet")
        return fit_glmm(
            model, data, family=family, link=link, nagq=nagq, reml=reml, offset=offset, weights=weights,
            backend=backend, sql=sql, con=con,
        )  # fmt: skip
    if link not in (None, "identity") or nagq not in (None, 1):
        raise OptionError("link= and nagq= apply to GLMMs: give family='binomial', 'poisson' or 'negative_binomial'")
    return _fit_linear(model, data, reml, backend, sql, con, reorder, weights, offset)


def _sampling_weights(
    model: Any, pweights: Any, cond_weights: bool, pwscale: PwScale
) -> tuple[Any, Any, bool, PwScale]:
    """The model and its sampling weights, from the arguments or a Stata string's ``[pw=]``
    (Stata's weights are conditional); cond_weights=/pwscale= without weights are refused."""
    if isinstance(model, str) and (declared := stata_weights(model)) is not None:
        if pweights is not None or pwscale is not None:
            raise OptionError(
                "the model string declares sampling weights ([pw=...], pweight()); drop pweights=/pwscale="
            )
        model, pweights, cond_weights = declared.model, declared.pweights, True
        pwscale = declared.pwscale  # type: ignore[assignment]  # checked by hlm.survey.weights
    if pweights is None and (cond_weights or pwscale is not None):
        raise OptionError("cond_weights= and pwscale= describe sampling weights: give the columns as pweights=")
    return model, pweights, cond_weights, pwscale


def _fit_linear(
    model: str | ModelSpec,
    data: Any,
    reml: bool | None,
    backend: Backend,
    sql: str | None,
    con: Any,
    reorder: bool,
    weights: Weights,
    offset: Any,
) -> Fit:
    """The linear mixed model's stages: parse, aggregate (one pass), structure checks, fit."""
    spec, data = with_offset(parse_model(model), data, offset)
    use_reml, notes = criterion(spec, reml)
    if offset is not None:  # the model string does not show it
        notes += (f"offset: {offset if isinstance(offset, str) else 'the array given as offset='}",)
    agg, x_spec = aggregate(spec, data, backend=backend, sql=sql, con=con, weights=weights)
    if (reordered := level_order(spec, agg, reorder=reorder)) is not None:
        spec, note = reordered
        agg, x_spec = aggregate(spec, data, backend=backend, sql=sql, con=con, weights=weights)
        notes += (note,)
    implicit_nesting_warning(spec, agg)
    within_order_warning(spec, agg)
    if agg.ndropped:
        notes += (f"{agg.ndropped} rows dropped for missing values",)
    if agg.weights is not None:
        notes += (f"precision weights {agg.weights}: row i has residual variance sigma^2 / w_i",)
    if agg.zero_weights:
        notes += (f"{agg.zero_weights} rows dropped for a zero weight",)
    return fit_aggregates(
        spec, agg, reml=use_reml, data=data, x_model_spec=x_spec, notes=notes, weights=weights, record=Fit
    )


def _fit_pweights(
    model: str | ModelSpec,
    data: Any,
    reml: bool | None,
    backend: Backend,
    sql: str | None,
    con: Any,
    weights: Weights,
    offset: Any,
    pweights: list[str],
    cond_weights: bool,
    pwscale: PwScale,
) -> PseudoFit:
    """Sampling weights: refuse what pseudo-ML does not define here, then fit (:mod:`hlm.survey`)."""
    spec = parse_model(model)
    if weights is not None:
        raise OptionError("weights= (precision weights) and pweights= (sampling weights) cannot be combined")
    if reml or spec.reml:
        raise OptionError("REML is not defined for a pseudo-likelihood (sampling weights): fit by ML (reml=False)")
    if isinstance(data, (str, os.PathLike)):
        check_file(data)
    if offset is not None:
        raise OptionError("offset= is not supported with pweights yet")
    which = choose_backend(data, backend, sql=sql)
    if which != "memory":
        kw: dict[str, Any] = {"cond_weights": cond_weights, "pwscale": pwscale, "sql": sql, "con": con}
        return fit_pseudo_sql(spec, data, pweights, engine=which, **kw)
    return fit_pseudo(spec, data, pweights, cond_weights=cond_weights, pwscale=pwscale)
