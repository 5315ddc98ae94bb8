"""The immutable result of fitting a linear mixed model.

Model (lme4's notation): y = X beta + Z b + e,  b = Lambda_theta u,  u ~ N(0, sigma^2 I),
e ~ N(0, sigma^2 W^{-1}) with precision weights W (I unless ``weights=``, see
:mod:`hlm.weights`).  A :class:`Fit` holds the estimates at the optimum of the profiled
REML criterion or ML deviance, the optimizer's summary, and the aggregates it was fitted
from (so inference never needs the rows again).  Everything is computed once; arrays are
read-only.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from hlm.aggregate.stats import Aggregates, pooled_message
from hlm.core.deviance import Profiled, ml_deviance_at
from hlm.core.objective import DevianceFunction
from hlm.core.optimize import SINGULAR_TOL, OptSummary
from hlm.core.structure import Structure
from hlm.errors import HLMWarning
from hlm.spec.terms import ModelSpec

TIDY_COLUMNS = ["term", "estimate", "std_error", "statistic", "p_value", "conf_low", "conf_high"]
VARCORR_COLUMNS = ["group", "var1", "var2", "vcov", "sdcor"]


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=float, copy=True)
    a.setflags(write=False)
    return a


def term_covariances(struct: Structure, theta: np.ndarray, sigma: float) -> list[np.ndarray]:
    """sigma^2 Lambda_t Lambda_t' for every random term."""
    lambdas = struct.lambdas(theta)
    out = []
    for term in struct.terms:
        lam = lambdas[term.factor][np.ix_(term.local, term.local)]
        out.append(sigma**2 * lam @ lam.T)
    return out


def varcorr_frame(struct: Structure, theta: np.ndarray, sigma: float) -> pd.DataFrame:
    """lme4's ``as.data.frame(VarCorr(fit))``: variances, then covariances, then Residual."""
    rows = []
    for term, cov in zip(struct.terms, term_covariances(struct, theta, sigma)):
        sd = np.sqrt(np.diag(cov))
        for i, name in enumerate(term.columns):
            rows.append((term.group, name, None, cov[i, i], sd[i]))
        for i in range(len(term.columns)):
            for j in range(i + 1, len(term.columns)):
                corr = cov[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else float("nan")
                rows.append((term.group, term.columns[i], term.columns[j], cov[i, j], corr))
    rows.append(("Residual", None, None, sigma**2, sigma))
    return pd.DataFrame(rows, columns=VARCORR_COLUMNS)


@dataclass(frozen=True)
class Fit:
    """A fitted linear mixed model (see the module docstring for the model)."""

    spec: ModelSpec
    reml: bool
    aggregates: Aggregates = field(repr=False)
    structure: Structure = field(repr=False)
    devfun: DevianceFunction = field(repr=False)
    optsummary: OptSummary = field(repr=False)
    profiled: Profiled = field(repr=False)
    dropped_columns: tuple[str, ...] = ()
    data: Any = field(default=None, repr=False, compare=False)
    x_model_spec: Any = field(default=None, repr=False, compare=False)
    notes: tuple[str, ...] = ()
    weights: Any = field(default=None, repr=False, compare=False)  # the precision-weights argument

    # ---- basic quantities -------------------------------------------------------------
    @property
    def nobs(self) -> int:
        return self.aggregates.nobs

    @property
    def ndropped(self) -> int:
        """Rows dropped for missing values in model columns."""
        return self.aggregates.ndropped

    @property
    def theta(self) -> np.ndarray:
        return _frozen(self.optsummary.theta)

    @property
    def sigma(self) -> float:
        return math.sqrt(self.profiled.sigma2)

    @property
    def fixef(self) -> pd.Series:
        return pd.Series(self.profiled.beta, index=list(self.aggregates.xnames), name="estimate")

    @property
    def vcov(self) -> pd.DataFrame:
        names = list(self.aggregates.xnames)
        return pd.DataFrame(self.profiled.sigma2 * self.profiled.qxx_inv, index=names, columns=names)

    @property
    def se(self) -> pd.Series:
        return pd.Series(
            np.sqrt(np.diag(self.profiled.sigma2 * self.profiled.qxx_inv)),
            index=list(self.aggregates.xnames),
            name="std_error",
        )

    @property
    def varcorr(self) -> pd.DataFrame:
        return varcorr_frame(self.structure, self.theta, self.sigma)

    @property
    def ngroups(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for term in self.structure.terms:
            fac = self.aggregates.factors[term.factor]
            out.setdefault(fac.name, fac.nlevels)
        return out

    @property
    def reml_criterion(self) -> float | None:
        return self.profiled.objective if self.reml else None

    @property
    def deviance(self) -> float:
        """-2 x the ML log-likelihood (at the REML estimates for REML fits)."""
        return self.profiled.objective if not self.reml else float(ml_deviance_at(self.profiled, self.nobs))

    @property
    def loglik(self) -> float:
        """Log-likelihood: the REML one for REML fits (as lme4's logLik)."""
        return -0.5 * self.profiled.objective

    @property
    def df_model(self) -> int:
        """Number of parameters: fixed effects, theta and sigma."""
        return len(self.aggregates.xnames) + self.structure.ntheta + 1

    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.df_model

    @property
    def bic(self) -> float:
        return -2.0 * self.loglik + math.log(self.nobs) * self.df_model

    @property
    def converged(self) -> bool:
        """The optimizer's checks passed and every estimate is a finite number."""
        finite = all(np.all(np.isfinite(a)) for a in (self.theta, self.profiled.beta, [self.profiled.sigma2]))
        return bool(self.optsummary.converged and finite)

    @cached_property
    def _theta_std(self) -> np.ndarray:
        from hlm.core.scaling import standardized_theta

        return standardized_theta(self.aggregates, self.structure, self.theta)

    @property
    def singular(self) -> bool:
        """lme4's isSingular -- a diagonal element of Lambda within 1e-4 of its bound 0, judged
        on unit-rms random-effect columns so a slope in small units is not 'zero' -- or an
        exchangeable term whose common correlation is at its lower limit -1/(q-1)."""
        lower = np.asarray(self.structure.lower)
        at_bound = bool(np.any(np.isfinite(lower) & (self._theta_std < lower + SINGULAR_TOL)))
        return at_bound or bool(np.any(np.abs(self.structure.exchangeable_sums(self.theta)) < SINGULAR_TOL))

    def boundary_components(self) -> list[str]:
        """Names of the variance components estimated at zero (on unit-rms columns)."""
        out = []
        for (_f, r, c), value, name in zip(self.structure.theta_pos, self._theta_std, self.structure.theta_names):
            if r == c and value < SINGULAR_TOL:
                out.append(name)
        return out

    # ---- tables ------------------------------------------------------------------------
    def tidy(
        self, *, level: float = 0.95, ddf: Literal["none", "satterthwaite", "kenward-roger"] = "none"
    ) -> pd.DataFrame:
        """Fixed effects with Wald z statistics, p-values and confidence limits; with
        ``ddf="satterthwaite"`` or ``"kenward-roger"`` t tests on those df (an extra ``df``
        column; Kenward-Roger also adjusts the SEs), see :mod:`hlm.inference.ddf`."""
        if ddf != "none":
            from hlm.inference.ddf import fixed_effects_table

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

    def summary(self, style: Literal["lme4", "stata"] = "lme4") -> str:
        """A readable text summary in lme4's layout or Stata's ``mixed`` layout."""
        from hlm.report.text import lme4_summary

        if style == "stata":
            from hlm.report.stata import stata_summary

            return stata_summary(self)
        if style != "lme4":
            from hlm.errors import OptionError

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

    # ---- random effects, predictions, variance shares, output ----
    @cached_property
    def _conditional_modes(self):
        from hlm.ranef import conditional_modes

        return conditional_modes(self)

    @cached_property
    def _theta_derivatives(self):
        """a(theta), b(theta) and Q_XX^{-1}(theta) with their theta-derivatives at the
        estimates: the one set of deviance evaluations behind ``tidy(ddf="satterthwaite")``
        and the variance-component information (see :mod:`hlm.inference.params`)."""
        from hlm.inference.params import ThetaDerivatives

        return ThetaDerivatives.at(self.devfun, self.theta)

    @cached_property
    def _varcomp_info(self):
        """The observed information of the variance parameters (computed once, shared by
        ``varcomp``, ``varcomp_vcov``, ``icc`` and the summaries)."""
        from hlm.inference.varcomp import information

        return information(self)

    def ranef(self) -> pd.DataFrame:
        """Conditional modes and conditional SDs (lme4's ``ranef(condVar=TRUE)``): columns
        group, level, term, estimate, std_error (see :mod:`hlm.ranef`)."""
        from hlm.ranef import ranef_frame

        if (msg := pooled_message(self.aggregates)) is not None:
            warnings.warn(
                f"{msg}: their conditional modes are left out; hlm.write_ranef(fit, data, 'ranef.parquet') "
                "writes them all",
                HLMWarning,
                stacklevel=2,
            )
        return ranef_frame(self, self._conditional_modes)

    def predict(
        self, newdata: Any = None, *, re: bool = True, new_levels: Literal["population", "error"] = "population"
    ) -> pd.Series:
        """X beta (+ Z b with ``re=True``) for ``newdata`` (default: the fitted data);
        unseen levels get the population value or raise (see :mod:`hlm.predict`)."""
        from hlm.predict import predict

        return predict(self, newdata, re=re, new_levels=new_levels)

    def fitted(self) -> pd.Series:
        """Conditional fitted values for the rows used in the fit."""
        from hlm.predict import fitted

        return fitted(self)

    def residuals(self) -> pd.Series:
        """Response minus conditional fitted values for the rows used in the fit."""
        from hlm.predict import residuals

        return residuals(self)

    def icc(self, at: dict[str, float] | None = None, *, level: float = 0.95) -> pd.DataFrame:
        """Variance, share and intra-class correlation per level with CIs (see
        :mod:`hlm.variance_share`); ``at`` gives random-slope covariate values (default 0)."""
        from hlm.variance_share import icc_table

        return icc_table(self, at, level=level, vc=self._varcomp_info)

    def r2(self) -> dict[str, float]:
        """Nakagawa & Schielzeth marginal and conditional R^2 (Johnson's extension)."""
        from hlm.variance_share import r2_table

        return r2_table(self)

    def plot(
        self,
        kind: Literal["caterpillar", "variance", "profile"] = "caterpillar",
        file: Any = None,
        *,
        overwrite: bool = False,
        **kwargs: Any,
    ):
        """A matplotlib Figure (saved to ``file`` when given, its format by the extension; an
        existing file only with ``overwrite=True``); see :mod:`hlm.report.plots`."""
        from hlm.report.plots import plot

        return plot(self, kind, file=file, overwrite=overwrite, **kwargs)

    def _repr_html_(self) -> str:
        from hlm.report.html import fit_html

        return fit_html(self)

    def _output_sections(self, *, ranef: bool = False) -> dict[str, Any]:
        from hlm.report.text import output_sections

        return output_sections(self, ranef=ranef)

    # ---- inference (hlm.inference) ----
    def varcomp(self, *, level: float = 0.95) -> pd.DataFrame:
        """SDs, correlations and sigma with SEs from the observed information and CIs on the
        log-SD / atanh scale (Stata's ``mixed``), see :mod:`hlm.inference.varcomp`."""
        from hlm.inference.varcomp import varcomp

        return varcomp(self, level=level, info=self._varcomp_info)

    @property
    def varcomp_vcov(self) -> pd.DataFrame:
        """Covariance of (log SDs, atanh correlations, log sigma) from the observed information."""
        from hlm.inference.varcomp import varcomp_vcov

        return varcomp_vcov(self, info=self._varcomp_info)

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
        replicates), see :mod:`hlm.inference.confint`."""
        from hlm.inference.confint import confint

        return confint(self, method=method, level=level, nsim=nsim, seed=seed, progress=progress)

    def lr_test_linear(self):
        """Stata's "LR test vs. linear model" (chibar2(01) for one variance parameter, a
        conservative chi2(k) otherwise), see :mod:`hlm.inference.likelihood_ratio`."""
        from hlm.inference.likelihood_ratio import lr_vs_linear

        return lr_vs_linear(self)

    def wald_test(self) -> tuple[float, int, float]:
        """Stata's header Wald chi2 that all slopes are zero: (chi2, df, p)."""
        from hlm.inference.ddf import wald_slopes

        return wald_slopes(self)
