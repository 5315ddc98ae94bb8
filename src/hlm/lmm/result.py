"""The immutable record of a fitted linear mixed model: what every feature builds on.

Model (lme4's notation): y = X beta + Z b + e,  b = Lambda_theta u,  u ~ N(0, sigma^2 I),
e ~ N(0, sigma^2 W^{-1}) with precision weights W (I unless ``weights=``, see
:mod:`hlm.weights`).  A :class:`Fit` holds the estimates at the optimum of the profiled
REML criterion or ML deviance, the optimizer's summary, and the aggregates it was fitted
from (so inference never needs the rows again).  Everything is computed once; arrays are
read-only.  Derived values that several features share (conditional modes, theta-derivatives,
the variance-component information) are public cached members.  This module imports no feature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from hlm.aggregate.stats import Aggregates
from hlm.lmm.deviance import Profiled, ml_deviance_at
from hlm.lmm.information import VarCompInfo, information
from hlm.lmm.objective import DevianceFunction
from hlm.lmm.params import ThetaDerivatives
from hlm.lmm.ranef import ConditionalModes, conditional_modes
from hlm.lmm.scaling import standardized_theta
from hlm.lmm.structure import Structure
from hlm.models import InformationCriteria
from hlm.numerics.bobyqa import SINGULAR_TOL, OptSummary
from hlm.spec.terms import ModelSpec

VARCORR_COLUMNS = ["group", "var1", "var2", "vcov", "sdcor"]


def _frozen(a: ArrayLike) -> np.ndarray:
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
    rows: list[tuple[str, str | None, str | None, float, float]] = []
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
class LmmResult(InformationCriteria):
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
    def converged(self) -> bool:
        """The optimizer's checks passed and every estimate is a finite number."""
        finite = all(np.all(np.isfinite(a)) for a in (self.theta, self.profiled.beta, [self.profiled.sigma2]))
        return bool(self.optsummary.converged and finite)

    @cached_property
    def _theta_std(self) -> np.ndarray:
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

    # ---- derived values shared by several features, computed once ----
    @cached_property
    def conditional_modes(self) -> ConditionalModes:
        """The conditional modes b and their conditional covariances (see :mod:`hlm.lmm.ranef`)."""
        return conditional_modes(self)

    @cached_property
    def theta_derivatives(self) -> ThetaDerivatives:
        """a(theta), b(theta) and Q_XX^{-1}(theta) with their theta-derivatives at the
        estimates: the one set of deviance evaluations behind ``tidy(ddf="satterthwaite")``
        and the variance-component information (see :mod:`hlm.lmm.params`)."""
        return ThetaDerivatives.at(self.devfun, self.theta)

    @cached_property
    def varcomp_info(self) -> VarCompInfo:
        """The observed information of the variance parameters (shared by ``varcomp``,
        ``varcomp_vcov``, ``icc`` and the summaries; see :mod:`hlm.lmm.information`)."""
        return information(self.structure, self.theta, self.sigma, self.devfun, self.theta_derivatives)
