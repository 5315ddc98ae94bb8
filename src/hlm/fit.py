"""The immutable result of fitting a linear mixed model.

Model (lme4's notation): y = X beta + Z b + e,  b = Lambda_theta u,  u ~ N(0, sigma^2 I),
e ~ N(0, sigma^2 I).  A :class:`Fit` holds the estimates at the optimum of the profiled
REML criterion or ML deviance, the optimizer's summary, and the aggregates it was fitted
from (so inference never needs the rows again).  Everything is computed once; arrays are
read-only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from hlm.aggregate.stats import Aggregates
from hlm.core.deviance import Profiled, ml_deviance_at
from hlm.core.objective import DevianceFunction
from hlm.core.optimize import SINGULAR_TOL, OptSummary
from hlm.core.structure import Structure
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
        return pd.Series(np.sqrt(np.diag(self.profiled.sigma2 * self.profiled.qxx_inv)),
                         index=list(self.aggregates.xnames), name="std_error")

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
        return self.optsummary.converged

    @property
    def singular(self) -> bool:
        """lme4's isSingular: a diagonal element of Lambda within 1e-4 of its bound 0."""
        lower = np.asarray(self.structure.lower)
        theta = self.theta
        return bool(np.any(np.isfinite(lower) & (theta < lower + SINGULAR_TOL)))

    def boundary_components(self) -> list[str]:
        """Names of the variance components estimated at zero."""
        out = []
        for (f, r, c), value, name in zip(self.structure.theta_pos, self.theta, self.structure.theta_names):
            if r == c and value < SINGULAR_TOL:
                out.append(name)
        return out

    # ---- tables ------------------------------------------------------------------------
    def tidy(self, *, level: float = 0.95) -> pd.DataFrame:
        """Fixed effects with Wald z statistics, p-values and confidence limits."""
        est, se = self.fixef.to_numpy(), self.se.to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            z = est / se
        q = stats.norm.ppf(0.5 + level / 2)
        return pd.DataFrame({
            "term": list(self.aggregates.xnames), "estimate": est, "std_error": se, "statistic": z,
            "p_value": 2 * stats.norm.sf(np.abs(z)), "conf_low": est - q * se, "conf_high": est + q * se,
        }, columns=TIDY_COLUMNS)

    def summary(self) -> str:
        """A readable text summary in lme4's layout."""
        from hlm.report.text import lme4_summary

        return lme4_summary(self)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (see the CLI's ``--json``)."""
        vc = self.varcorr.astype(object).where(self.varcorr.notna(), None)
        return {
            "model": self.spec.text,
            "reml": self.reml,
            "nobs": self.nobs,
            "ndropped": self.ndropped,
            "ngroups": self.ngroups,
            "fixef": [{"term": t, "estimate": float(e), "se": float(s)}
                      for t, e, s in zip(self.aggregates.xnames, self.fixef, self.se)],
            "dropped_columns": list(self.dropped_columns),
            "varcorr": [{k: (None if v is None else (float(v) if k in ("vcov", "sdcor") else v))
                         for k, v in row.items()} for row in vc.to_dict(orient="records")],
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
