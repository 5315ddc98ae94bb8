"""The immutable record of a fitted GLMM, with the public surface of the linear record
(:mod:`hlm.lmm.result` and :class:`hlm.api.Fit`): fixef, vcov, se, varcorr, loglik,
deviance, aic, bic, nobs, converged, singular, tidy(), summary(), ranef(); plus ``family``,
``link``, ``nagq`` and ``dispersion`` (nbinom2's phi, None otherwise).

``loglik`` is the full log-likelihood (log choose(n, y) and -log y! included, also with
``nagq > 1``) and ``deviance`` is -2 loglik -- not glmer's ``deviance()``, which sums squared
conditional deviance residuals.  ``vcov`` is glmer's: 2 H^-1, beta block, with H the
finite-difference Hessian of -2 loglik over (theta, beta[, log phi]).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from hlm.errors import OptionError
from hlm.glmm.family import Family
from hlm.glmm.frame import GlmmFrame
from hlm.glmm.laplace import Modes
from hlm.glmm.theta import diagonal_positions, lambda_matrix, lower_triangles
from hlm.lmm.ranef import coef_frames
from hlm.models import InformationCriteria
from hlm.numerics.bobyqa import SINGULAR_TOL, OptSummary
from hlm.spec import ModelSpec

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TIDY_COLUMNS = ["term", "estimate", "std_error", "statistic", "p_value", "conf_low", "conf_high"]


@dataclass(frozen=True)
class GlmmResult(InformationCriteria):
    """A fitted generalized linear mixed model (maximum likelihood)."""

    spec: ModelSpec
    family_info: Family
    nagq: int
    frame: GlmmFrame = field(repr=False)
    estimates: np.ndarray = field(repr=False)
    optsummary: OptSummary = field(repr=False)
    hessian: np.ndarray = field(repr=False)
    modes: Modes = field(repr=False)
    notes: tuple[str, ...] = ()
    reml: bool = False
    separation: tuple[str, ...] = ()  # fixed effects running off to +-infinity (hlm.glmm.separation)
    display: str | None = None  # Stata's or / irr option given in the command: the Stata table's default

    # ---- parameters ----
    @property
    def family(self) -> str:
        return self.family_info.name

    @property
    def link(self) -> str:
        return self.family_info.link

    @property
    def ntheta(self) -> int:
        return sum(k * (k + 1) // 2 for k in self.frame.dims)

    @property
    def theta(self) -> np.ndarray:
        return np.array(self.estimates[: self.ntheta])

    @property
    def fixef(self) -> pd.Series:
        k, p = self.ntheta, len(self.frame.xnames)
        return pd.Series(self.estimates[k : k + p], index=list(self.frame.xnames), name="estimate")

    @property
    def dispersion(self) -> float | None:
        """nbinom2's phi (Var = mu + mu^2/phi; Stata's alpha = 1/phi); None for other families."""
        return self.family_info.phi

    @property
    def vcov_all(self) -> np.ndarray:
        """2 H^-1 over all parameters (theta, beta[, log phi]); NaN where H is singular."""
        try:
            return 2.0 * np.linalg.inv(self.hessian)
        except np.linalg.LinAlgError:
            return np.full(self.hessian.shape, np.nan)

    @property
    def vcov(self) -> pd.DataFrame:
        k, p = self.ntheta, len(self.frame.xnames)
        names = list(self.frame.xnames)
        return pd.DataFrame(self.vcov_all[k : k + p, k : k + p], index=names, columns=names)

    @property
    def se(self) -> pd.Series:
        with np.errstate(invalid="ignore"):  # a negative diagonal (H not positive definite) is NaN
            se = np.sqrt(np.diag(self.vcov.to_numpy()))
        return pd.Series(se, index=list(self.frame.xnames), name="std_error")

    @property
    def varcorr(self) -> pd.DataFrame:
        """lme4's ``as.data.frame(VarCorr(fit))``: variances, then covariances (with
        correlations), term by term; no residual row."""
        rows: list[tuple[Any, ...]] = []
        for (group, names), L in zip(self.frame.term_labels, lower_triangles(self.theta, self.frame.dims)):
            cov = L @ L.T
            sd = np.sqrt(np.diag(cov))
            rows += [(group, name, None, cov[i, i], sd[i]) for i, name in enumerate(names)]
            for i in range(len(names)):
                for j in range(i + 1, len(names)):
                    corr = cov[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else float("nan")
                    rows.append((group, names[i], names[j], cov[i, j], corr))
        return pd.DataFrame(rows, columns=["group", "var1", "var2", "vcov", "sdcor"])

    # ---- fit statistics ----
    @property
    def nobs(self) -> int:
        return self.frame.nobs

    @property
    def ngroups(self) -> dict[str, int]:
        return {g: b for (g, _), b in zip(self.frame.term_labels, self.frame.blocks)}

    @property
    def loglik(self) -> float:
        return -0.5 * self.optsummary.fmin

    @property
    def deviance(self) -> float:
        """-2 loglik (what glmer's summary prints as deviance; not glmer's ``deviance()``)."""
        return self.optsummary.fmin

    @property
    def df_model(self) -> int:
        return len(self.estimates)

    @property
    def converged(self) -> bool:
        return bool(self.optsummary.converged and np.all(np.isfinite(self.estimates)))

    @property
    def singular(self) -> bool:
        """A diagonal of a relative factor L_t within 1e-4 of zero (lme4's isSingular)."""
        return bool(np.any(self.theta[diagonal_positions(self.frame.dims)] < SINGULAR_TOL))

    # ---- tables ----
    def tidy(self, *, level: float = 0.95) -> pd.DataFrame:
        """Fixed effects with Wald z statistics, p-values and confidence limits (link scale)."""
        est, se = self.fixef.to_numpy(), self.se.to_numpy()
        z = est / se
        q = stats.norm.ppf(0.5 + level / 2)
        data = {
            "term": list(self.frame.xnames),
            "estimate": est,
            "std_error": se,
            "statistic": z,
            "p_value": 2 * stats.norm.sf(np.abs(z)),
            "conf_low": est - q * se,
            "conf_high": est + q * se,
        }
        return pd.DataFrame(data, columns=TIDY_COLUMNS)

    def ranef(self) -> pd.DataFrame:
        """Conditional modes b = Lambda u and conditional SDs sqrt diag(Lambda (A'WA + I)^-1 Lambda'),
        at the estimates (lme4's ``ranef(condVar=TRUE)``): group, level, term, estimate, std_error."""
        lam = lambda_matrix(self.theta, self.frame.dims, self.frame.blocks)
        b = lam @ self.modes.u
        sd = self.modes.conditional_sd(self.theta, self.frame.dims, self.frame.blocks)
        rows: list[tuple[Any, ...]] = []
        start = 0
        for (group, names), levels in zip(self.frame.term_labels, self.frame.levels):
            k = len(names)
            for j, lev in enumerate(levels):
                rows += [
                    (group, lev, name, b[start + j * k + c], sd[start + j * k + c]) for c, name in enumerate(names)
                ]
            start += len(levels) * k
        return pd.DataFrame(rows, columns=["group", "level", "term", "estimate", "std_error"])

    def coef(self) -> dict[str, pd.DataFrame]:
        """lme4's ``coef()``: per grouping factor, each level's beta + b on the link scale
        (see :func:`hlm.lmm.ranef.coef_frames`)."""
        return coef_frames(self.fixef, self.ranef(), self.spec.intercept_name)

    def summary(
        self, style: Literal["lme4", "stata"] | None = None, *, odds_ratios: bool = False, irr: bool = False
    ) -> str:
        """glmer's summary layout, or Stata's ``melogit``/``mepoisson``/``menbreg`` table
        (:mod:`hlm.report.stata_glmm`; ``odds_ratios``/``irr``: Stata's ``or``/``irr`` options); by
        default the layout of the model's syntax."""
        style = style or self.spec.syntax
        if style == "stata":
            from hlm.report.stata_glmm import stata_glmm_summary

            return stata_glmm_summary(
                self, odds_ratios=odds_ratios or self.display == "or", irr=irr or self.display == "irr"
            )
        if style != "lme4":
            raise OptionError(f"style must be 'lme4' or 'stata', not {style!r}")
        if odds_ratios or irr:
            raise OptionError("odds_ratios / irr are options of the Stata layout: summary(style='stata', ...)")
        from hlm.report.lme4_glmm import lme4_glmm_summary

        return lme4_glmm_summary(self)

    def __str__(self) -> str:
        return self.summary()

    # ---- predictions (hlm.glmm.predict) ----
    def predict(
        self,
        newdata: Any = None,
        *,
        type: Literal["link", "response"] = "link",
        re: bool = True,
        new_levels: Literal["population", "error"] = "population",
    ) -> pd.Series:
        """Linear predictor or mean, with or without the random effects; see :mod:`hlm.glmm.predict`."""
        from hlm.glmm.predict import predict

        return predict(self, newdata, type=type, re=re, new_levels=new_levels)

    def fitted(self) -> pd.Series:
        """Conditional means of the rows used (probabilities for the binomial, as lme4's)."""
        return self.predict(type="response")

    def confint(self, *, method: Literal["wald", "profile"] = "wald", level: float = 0.95) -> pd.DataFrame:
        """Wald (fixed effects) or likelihood-profile (fixed effects and scalar terms' SDs, by
        refits with the parameter held fixed) limits; see :mod:`hlm.glmm.confint`."""
        from hlm.glmm.confint import confint

        return confint(self, method, level)

    def residuals(self, type: Literal["deviance", "pearson", "response"] = "deviance") -> pd.Series:
        """Deviance (lme4's default), Pearson or response residuals of the rows used."""
        from hlm.glmm.predict import residuals

        return residuals(self, type)

    # ---- variance shares on the latent scale (hlm.glmm.latent) ----
    def icc(self, *, level: float = 0.95) -> pd.DataFrame:
        """Latent-scale intra-class correlations (Stata's ``estat icc``); binomial fits with random
        intercepts only (with random slopes the ICC varies with the covariates: refused)."""
        from hlm.glmm.latent import icc

        return icc(self, level=level)

    def r2(self) -> dict[str, float]:
        """Nakagawa, Johnson & Schielzeth (2017) marginal and conditional R^2, with their pieces."""
        from hlm.glmm.latent import r2

        return r2(self)

    # ---- variance components and plots (hlm.glmm.varcomp, hlm.report.caterpillar) ----
    def varcomp(self, *, level: float = 0.95) -> pd.DataFrame:
        """SDs and correlations of the random effects on the latent scale (and nbinom2's phi) with
        delta-method SEs and Wald limits on the log-SD / atanh scale; see :mod:`hlm.glmm.varcomp`."""
        from hlm.glmm.varcomp import varcomp

        return varcomp(self, level=level)

    def plot(
        self, kind: str = "caterpillar", *, file: Any = None, overwrite: bool = False, level: float = 0.95
    ) -> Figure:
        """The caterpillar plot of the conditional modes with +-z conditional-SD intervals (lme4's
        ``dotplot(ranef(., condVar=TRUE))``), saved to ``file`` when given (see ``Fit.plot``)."""
        if kind != "caterpillar":
            raise OptionError(
                f"plot kind {kind!r} is for linear fits; a GLMM has the 'caterpillar' plot "
                "(variance shares: icc() / r2(); profiles: confint(method='profile'))"
            )
        from hlm.outputs import save_figure
        from hlm.report.caterpillar import caterpillar  # matplotlib loads with the first plot

        fig = caterpillar(self, level=level)
        if file is not None:
            save_figure(fig, file, overwrite=overwrite)
        return fig

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (the CLI's ``--json``)."""
        return {
            "model": self.spec.text,
            "family": self.family,
            "link": self.link,
            "nagq": self.nagq,
            "nobs": self.nobs,
            "ngroups": self.ngroups,
            "fixef": [
                {"term": t, "estimate": float(e), "se": float(s)}
                for t, e, s in zip(self.frame.xnames, self.fixef, self.se)
            ],
            "varcorr": [
                {"group": g, "var1": v1, "var2": v2, "vcov": float(cov), "sdcor": float(sd)}
                for g, v1, v2, cov, sd in self.varcorr.itertuples(index=False, name=None)
            ],
            "dispersion": self.dispersion,
            "loglik": self.loglik,
            "deviance": self.deviance,
            "aic": self.aic,
            "bic": self.bic,
            "converged": self.converged,
            "singular": self.singular,
            "separation": list(self.separation),
            "optimizer": self.optsummary.to_dict(),
            "notes": list(self.notes),
        }
