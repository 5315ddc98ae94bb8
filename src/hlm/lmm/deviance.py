"""The profiled objective (lme4 / MixedModels.jl formulation).

Given log|H| (= log|L_theta|^2) and Q = K'H^{-1}K with K = [X y], the fixed effects and
the penalised residual sum of squares are profiled out:

    beta = Q_XX^{-1} Q_Xy,   r2 = Q_yy - Q_yX beta   (= pwrss)
    ML:    d(theta)   = log|H| + n (1 + log(2 pi r2 / n)),                 sigma^2 = r2/n
    REML:  d_R(theta) = log|H| + log|Q_XX| + (n-p) (1 + log(2 pi r2/(n-p))), sigma^2 = r2/(n-p)

The fixed-effects covariance is sigma^2 Q_XX^{-1}.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from hlm.lmm.kernels import fixed_solve

LOG2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True)
class Profiled:
    """The objective and the profiled estimates at one theta."""

    objective: float
    beta: np.ndarray
    pwrss: float
    sigma2: float
    logdet_h: float
    logdet_x: float  # log|Q_XX| = log|R_X|^2
    Q: np.ndarray

    @cached_property
    def qxx_inv(self) -> np.ndarray:
        """(X'H^{-1}X)^{-1}; the fixed-effects covariance is sigma^2 times this."""
        p = self.Q.shape[0] - 1
        return np.linalg.inv(self.Q[:p, :p]) if p else np.empty((0, 0))


def profile(logdet_h: float, Q: np.ndarray, n: int, reml: bool) -> Profiled:
    """Profile beta and sigma out of the objective."""
    p = Q.shape[0] - 1
    if p:
        beta, logdet_x = fixed_solve(Q)
    else:
        beta, logdet_x = np.empty(0), 0.0
    pwrss = float(Q[p, p] - Q[p, :p] @ beta)
    pwrss = max(pwrss, np.finfo(float).tiny)
    dof = n - p if reml else n
    objective = logdet_h + dof * (1.0 + LOG2PI + np.log(pwrss / dof))
    if reml:
        objective += logdet_x
    return Profiled(float(objective), beta, pwrss, pwrss / dof, float(logdet_h), logdet_x, Q)


def ml_deviance_at(prof: Profiled, n: int) -> float:
    """The ML deviance at this theta with sigma profiled (lme4's ``deviance(fit, REML=FALSE)``
    of a REML fit): log|H| + n (1 + log(2 pi pwrss / n))."""
    return prof.logdet_h + n * (1.0 + LOG2PI + np.log(prof.pwrss / n))
