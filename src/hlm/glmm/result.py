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
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from hlm.errors import OptionError
from hlm.glmm.family import Family
from hlm.glmm.frame import GlmmFrame
from hlm.glmm.laplace import Modes
from hlm.glmm.theta import diagonal_positions, lambda_matrix, lower_triangles
from hlm.models import InformationCriteria
from hlm.numerics.bobyqa import SINGULAR_TOL, OptSummary
from hlm.spec import ModelSpec

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
    def vcov(self) -> pd.DataFrame:
        k, p = self.ntheta, len(self.frame.xnames)
        try:
            inv = 2.0 * np.linalg.inv(self.hessian)[k : k + p, k : k + p]
        except np.linalg.LinAlgError:
            inv = np.full((p, p), np.nan)
        names = list(self.frame.xnames)
        return pd.DataFrame(inv, index=names, columns=names)

    @property
    def se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.vcov.to_numpy())), index=list(self.frame.xnames), name="std_error")

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

    def summary(self, style: Literal["lme4", "stata"] = "lme4") -> str:
        """glmer's summary layout (Stata's ``melogit`` table is not written yet)."""
        if style != "lme4":
            raise OptionError("GLMM summaries have style='lme4' only for now")
        how = "Laplace Approximation" if self.nagq == 1 else f"Adaptive Gauss-Hermite Quadrature (nAGQ = {self.nagq})"
        lines = [
            f"Generalized linear mixed model fit by maximum likelihood ({how}) ['GlmmResult']",
            f" Family: {self.family} ( {self.link} )",
            f"Formula: {self.spec.text}",
            f"{'AIC':>10} {'BIC':>10} {'logLik':>10} {'deviance':>10}",
            f"{self.aic:10.1f} {self.bic:10.1f} {self.loglik:10.1f} {self.deviance:10.1f}",
            "",
            "Random effects:",
            *(
                f" {g:<12} {v1:<12} {v2 if isinstance(v2, str) else '':<12} {cov:10.4g} {sd:8.4g}"
                for g, v1, v2, cov, sd in self.varcorr.itertuples(index=False, name=None)
            ),
            f"Number of obs: {self.nobs}, groups: " + ", ".join(f"{g}, {n}" for g, n in self.ngroups.items()),
        ]
        if self.dispersion is not None:
            lines.append(f"Dispersion (nbinom2 phi): {self.dispersion:.5g}")
        lines += ["", "Fixed effects:", self.tidy().iloc[:, :5].to_string(index=False)]
        if not self.converged:
            lines.append("warning: the optimizer did not converge")
        return "\n".join(lines + [f"note: {n}" for n in self.notes])

    def __str__(self) -> str:
        return self.summary()

    # ---- features of linear fits not built for GLMMs yet: refused, never approximated ----
    def _not_yet(self, what: str) -> OptionError:
        return OptionError(f"{what} is not available for GLMMs yet (family {self.family})")

    def predict(self, *args: Any, **kwargs: Any) -> pd.Series:
        raise self._not_yet("predict()")

    def fitted(self) -> pd.Series:
        raise self._not_yet("fitted()")

    def residuals(self) -> pd.Series:
        raise self._not_yet("residuals()")

    def icc(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        raise self._not_yet("icc()")

    def r2(self) -> dict[str, float]:
        raise self._not_yet("r2()")

    def confint(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        raise self._not_yet("confint()")

    def varcomp(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        raise self._not_yet("varcomp()")

    def plot(self, *args: Any, **kwargs: Any) -> Any:
        raise self._not_yet("plot()")

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
                {"group": g, "var1": c, "sdcor": float(v)} for (g, c), v in zip(self.frame.term_labels, self.theta)
            ],
            "dispersion": self.dispersion,
            "loglik": self.loglik,
            "deviance": self.deviance,
            "aic": self.aic,
            "bic": self.bic,
            "converged": self.converged,
            "singular": self.singular,
            "optimizer": self.optsummary.to_dict(),
            "notes": list(self.notes),
        }
