"""The surface every fitted model's result offers, whatever the family or the estimator.

:class:`FittedModel` is what :class:`hlm.api.Fit` (REML/ML linear mixed models) and
:class:`hlm.survey.result.PseudoFit` (pseudo-ML with sampling weights) both provide, so a feature
that needs only estimates, their covariance and the tables can take either.  Left out on purpose:
``deviance``, ``aic``, ``bic``, ``converged`` and ``singular``.  A pseudo-likelihood is not a
likelihood (Skinner 1989): its deviance and information criteria do not compare models, so
:class:`PseudoFit` has none; features that need them (likelihood-ratio tests, model comparison)
take :class:`hlm.lmm.result.LmmResult`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from hlm.spec.terms import ModelSpec


@runtime_checkable
class FittedModel(Protocol):
    """A fitted model: fixed effects beta with SEs and covariance, log (pseudo)likelihood, variance
    components and the tables."""

    @property
    def spec(self) -> ModelSpec: ...

    @property
    def reml(self) -> bool: ...

    @property
    def nobs(self) -> int: ...

    @property
    def ngroups(self) -> dict[str, int]: ...

    @property
    def fixef(self) -> pd.Series: ...

    @property
    def se(self) -> pd.Series: ...

    @property
    def vcov(self) -> pd.DataFrame | np.ndarray: ...

    @property
    def loglik(self) -> float: ...

    @property
    def varcorr(self) -> pd.DataFrame: ...

    def tidy(self, *, level: float = 0.95) -> pd.DataFrame: ...

    def summary(self, style: Literal["lme4", "stata"] | None = ...) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


class InformationCriteria(ABC):
    """AIC = -2 log L + 2 k and BIC = -2 log L + log(n) k of a likelihood fit, from the
    family's own log-likelihood, parameter count k (``df_model``) and observations n."""

    @property
    @abstractmethod
    def loglik(self) -> float: ...

    @property
    @abstractmethod
    def df_model(self) -> int: ...

    @property
    @abstractmethod
    def nobs(self) -> int: ...

    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.df_model

    @property
    def bic(self) -> float:
        return -2.0 * self.loglik + math.log(self.nobs) * self.df_model
