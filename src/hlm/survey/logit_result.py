"""The record of a random-intercept logit fitted by pseudo-ML with sampling weights.

SEs are WeMix's for its binomial models: the full sandwich over (beta, the variances),
V = H^-1 [K/(K-1) sum_k g_k g_k'] H^-1 with H the Hessian of the log pseudolikelihood and g_k
the score of top-level group k; ``vcov_model`` (-H^-1) ignores the sampling design.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from hlm.errors import OptionError
from hlm.spec import ModelSpec
from hlm.survey.result import pseudo_summary, wald_slopes, wald_table


@dataclass(frozen=True)
class PseudoLogitFit:
    """A logit with nested random intercepts (two or three levels) fitted by multilevel pseudo-ML."""

    spec: ModelSpec
    xnames: tuple[str, ...]
    beta: np.ndarray
    variances: dict[str, float]  # per grouping factor, innermost first: its intercept's variance
    vcov: np.ndarray  # cluster-robust sandwich of (beta, the free variances)
    vcov_model: np.ndarray  # model-based: not valid under sampling weights
    free: tuple[str, ...]  # the factors whose variances the sandwich covers (not on the boundary 0)
    loglik: float  # log pseudolikelihood
    nagq: int
    nobs: int
    ngroups: dict[str, int]
    pweights: tuple[str, ...]
    cond_weights: bool
    scaling: str
    cluster: str
    optimizer: str
    nevals: int
    notes: tuple[str, ...] = field(default=())
    reml: bool = False

    @property
    def fixef(self) -> pd.Series:
        return pd.Series(self.beta, index=list(self.xnames))

    @property
    def se(self) -> pd.Series:
        """Cluster-robust SEs of the fixed effects."""
        p = len(self.beta)
        return pd.Series(np.sqrt(np.diag(self.vcov)[:p]), index=list(self.xnames))

    @property
    def nclusters(self) -> int:
        return self.ngroups[self.cluster]

    @property
    def varcorr(self) -> pd.DataFrame:
        """The random intercepts' variances (outermost first) with cluster-robust SEs (NaN for a
        variance on its boundary); the logit has no residual."""
        p, rows = len(self.beta), []
        for name in reversed(list(self.variances)):
            at = p + self.free.index(name) if name in self.free else None
            se = float(np.sqrt(self.vcov[at, at])) if at is not None else float("nan")
            rows.append(
                {"group": name, "var1": "(Intercept)", "var2": None, "vcov": self.variances[name], "std_error": se}
            )
        return pd.DataFrame(rows)

    def tidy(self, *, level: float = 0.95, se: Literal["robust", "model"] = "robust") -> pd.DataFrame:
        """Fixed effects with Wald z tests on the cluster-robust SEs (``se="model"``: model-based)."""
        if se not in ("robust", "model"):
            raise OptionError(f"se must be 'robust' or 'model', not {se!r}")
        p = len(self.beta)
        V = self.vcov if se == "robust" else self.vcov_model
        return wald_table(self.xnames, self.beta, V[:p, :p], level)

    def wald_test(self) -> tuple[float, int, float]:
        """Wald chi2 that all slopes are zero, on the cluster-robust vcov: (chi2, df, p)."""
        p = len(self.beta)
        return wald_slopes(self.xnames, self.beta, self.vcov[:p, :p])

    def lr_test_linear(self) -> None:
        raise OptionError("no likelihood-ratio test with sampling weights (a pseudo-likelihood); use Wald tests")

    def summary(self, style: Literal["lme4", "stata"] | None = None) -> str:
        """Stata's ``melogit`` header with pweights (one layout for both styles: lme4 has no
        sampling weights)."""
        integration = f"Integration: adaptive Gauss-Hermite, {self.nagq} points"
        return pseudo_summary(self, "Mixed-effects logistic regression", style, (integration,))

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary with the weights and their scaling."""
        vc = self.varcorr.astype(object).where(self.varcorr.notna(), None)
        return {
            "model": self.spec.text,
            "estimator": "pseudo-ML (sampling weights), logit, adaptive Gauss-Hermite",
            "nagq": self.nagq,
            "pweights": list(self.pweights),
            "cond_weights": self.cond_weights,
            "pwscale": self.scaling,
            "nobs": self.nobs,
            "ngroups": self.ngroups,
            "fixef": [
                {"term": t, "estimate": float(e), "se": float(s), "se_type": f"cluster-robust ({self.cluster})"}
                for t, e, s in zip(self.xnames, self.beta, self.se)
            ],
            "varcorr": vc.to_dict(orient="records"),
            "log_pseudolikelihood": self.loglik,
            "nclusters": self.nclusters,
            "optimizer": {"code": self.optimizer, "evaluations": self.nevals},
            "notes": list(self.notes),
        }
