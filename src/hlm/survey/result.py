"""The record of a pseudo-maximum-likelihood fit with sampling weights, and its tables.

Fixed-effect SEs are WeMix's/Stata's cluster-robust sandwich clustered at the top level
(:func:`hlm.survey.pseudo.robust_vcov`); model-based SEs (``vcov_model``) are not valid under
informative sampling weights and are reported only on request.  There is no REML and no
likelihood-ratio test: the criterion is a pseudo-likelihood.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
from scipy import stats

from hlm.aggregate.stats import Aggregates, FactorStats
from hlm.errors import OptionError
from hlm.lmm.structure import Structure
from hlm.spec import ModelSpec
from hlm.survey.pseudo import WeightedRows
from hlm.survey.sandwich import full_sandwich

TIDY_COLUMNS = ["term", "estimate", "std_error", "statistic", "p_value", "conf_low", "conf_high"]


def varcorr_table(
    struct: Structure, pool: tuple[str, ...], factors: tuple[FactorStats, ...], theta: np.ndarray, sigma2: float
) -> pd.DataFrame:
    """Variances, covariances (sigma^2 Lambda Lambda' per factor) and the residual, lme4's layout."""
    rows: list[dict[str, Any]] = []
    for f, lam in enumerate(struct.lambdas(theta)):
        names = [pool[j] for j in struct.factor_cols[f]]
        S = sigma2 * lam @ lam.T
        for i, a in enumerate(names):
            rows.append({"group": factors[f].name, "var1": a, "var2": None, "vcov": S[i, i]})
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                if S[i, j] != 0.0:
                    rows.append({"group": factors[f].name, "var1": names[i], "var2": names[j], "vcov": S[i, j]})
    rows.append({"group": "Residual", "var1": None, "var2": None, "vcov": sigma2})
    return pd.DataFrame(rows, columns=["group", "var1", "var2", "vcov"])


def wald_table(xnames: tuple[str, ...], beta: np.ndarray, V: np.ndarray, level: float) -> pd.DataFrame:
    """Fixed effects with Wald z tests and normal intervals from the vcov V."""
    s = np.sqrt(np.diag(V))
    z = beta / s
    q = stats.norm.ppf(0.5 + level / 2)
    return pd.DataFrame(
        {
            "term": list(xnames),
            "estimate": beta,
            "std_error": s,
            "statistic": z,
            "p_value": 2 * stats.norm.sf(np.abs(z)),
            "conf_low": beta - q * s,
            "conf_high": beta + q * s,
        },
        columns=TIDY_COLUMNS,
    )


def wald_slopes(xnames: tuple[str, ...], beta: np.ndarray, V: np.ndarray) -> tuple[float, int, float]:
    """Wald chi2 that every coefficient but the intercept is zero: (chi2, df, p)."""
    keep = [i for i, t in enumerate(xnames) if t not in ("(Intercept)", "_cons")]
    b, Vk = beta[keep], V[np.ix_(keep, keep)]
    chi2 = float(b @ np.linalg.solve(Vk, b))
    return chi2, len(keep), float(stats.chi2.sf(chi2, len(keep)))


class WeightedRecord(Protocol):
    """What a pseudo-ML record shows in its summary (linear and logit)."""

    @property
    def nobs(self) -> int: ...
    @property
    def pweights(self) -> Sequence[str]: ...
    @property
    def cond_weights(self) -> bool: ...
    @property
    def scaling(self) -> str: ...
    @property
    def notes(self) -> Sequence[str]: ...
    @property
    def ngroups(self) -> dict[str, int]: ...
    @property
    def loglik(self) -> float: ...
    @property
    def nclusters(self) -> int: ...
    @property
    def cluster(self) -> str: ...
    @property
    def varcorr(self) -> pd.DataFrame: ...
    def tidy(self) -> pd.DataFrame: ...


def pseudo_summary(fit: WeightedRecord, title: str, style: str | None, extra: tuple[str, ...] = ()) -> str:
    """Stata's header with pweights (log pseudolikelihood, robust SEs adjusted for the top-level
    clusters) for every style: lme4 has no sampling weights; ``extra`` lines follow the weights."""
    if style not in (None, "lme4", "stata"):
        raise OptionError(f"style must be 'lme4' or 'stata', not {style!r}")
    lines = [
        f"{title}, sampling weights (pseudo-maximum likelihood)",
        f"Number of obs = {fit.nobs}; groups: " + ", ".join(f"{k} {v}" for k, v in fit.ngroups.items()),
        f"Sampling weights ({'conditional' if fit.cond_weights else 'unconditional'}): "
        + ", ".join(fit.pweights)
        + f"; scaling: {fit.scaling}",
        *extra,
        f"Log pseudolikelihood = {fit.loglik:.4f}",
        f"(Std. err. adjusted for {fit.nclusters} clusters in {fit.cluster})",
        "",
        fit.tidy().to_string(index=False),
        "",
        fit.varcorr.to_string(index=False),
    ]
    return "\n".join(lines + list(fit.notes))


@dataclass(frozen=True)
class PseudoFit:
    """A linear mixed model fitted by multilevel pseudo-ML with sampling weights at every level."""

    spec: ModelSpec
    xnames: tuple[str, ...]
    beta: np.ndarray
    vcov: np.ndarray  # cluster-robust (WeMix/Stata)
    vcov_model: np.ndarray  # model-based: not valid under sampling weights
    loglik: float  # log pseudolikelihood
    sigma: float
    theta: np.ndarray
    varcorr: pd.DataFrame
    nobs: int
    ngroups: dict[str, int]
    pweights: tuple[str, ...]
    cond_weights: bool
    scaling: str
    weight_sums: tuple[float, ...]  # sum of the unconditional weights per level
    cluster: str
    nclusters: int
    optimizer: str
    nevals: int
    rows: WeightedRows
    structure: Structure
    aggregates: Aggregates
    notes: tuple[str, ...] = field(default=())
    reml: bool = False

    @property
    def phi(self) -> np.ndarray:
        """(beta, theta, sigma^2), the parameters of the full sandwich."""
        return np.concatenate([self.beta, self.theta, [self.sigma**2]])

    def vcov_full_sandwich(self) -> np.ndarray:
        """The full-Hessian sandwich of phi (:mod:`hlm.survey.sandwich`; not WeMix's beta SEs)."""
        return full_sandwich(self.rows, self.structure, self.phi)

    def varcorr_full_sandwich(self) -> pd.DataFrame:
        """:attr:`varcorr` with SEs from the full sandwich by the delta method."""
        return self._with_se(self.vcov_full_sandwich(), list(range(len(self.phi))))

    def varcorr_se(self) -> pd.DataFrame:
        """:attr:`varcorr` with WeMix's variance-component SEs: per level l a sandwich over
        (theta_l, sigma^2) with beta and the other levels fixed, then the delta method; the
        residual's SE from the innermost level's block."""
        p, nt = len(self.beta), len(self.theta)
        out = None
        for f in reversed(self.rows.chain):
            block = [p + t for t in range(nt) if self.structure.theta_pos[t][0] == f] + [p + nt]
            table = self._with_se(self.full_sandwich_block(block), block)
            mine = (table["group"] == self.aggregates.factors[f].name) | (
                (table["group"] == "Residual") & (f == self.rows.chain[0])
            )
            out = table if out is None else out.where(~mine, table)
        assert out is not None
        return out

    def full_sandwich_block(self, block: list[int]) -> np.ndarray:
        return full_sandwich(self.rows, self.structure, self.phi, block)

    def _with_se(self, V: np.ndarray, block: list[int]) -> pd.DataFrame:
        """varcorr with delta-method SEs from the vcov V of phi[block]."""
        p, phi = len(self.beta), self.phi

        def table(x: np.ndarray) -> np.ndarray:
            vc = varcorr_table(self.structure, self.aggregates.pool, self.aggregates.factors, x[p:-1], x[-1])
            return vc.vcov.to_numpy(dtype=float)

        h = 1e-6 * np.maximum(np.abs(phi), 1e-2)
        E = np.eye(len(phi)) * h
        J = np.stack([(table(phi + E[i]) - table(phi - E[i])) / (2 * h[i]) for i in block], axis=1)
        out = self.varcorr.copy()
        out["std_error"] = np.sqrt(np.diag(J @ V @ J.T))
        return out

    @property
    def fixef(self) -> pd.Series:
        return pd.Series(self.beta, index=list(self.xnames))

    @property
    def se(self) -> pd.Series:
        """Cluster-robust SEs of the fixed effects."""
        return pd.Series(np.sqrt(np.diag(self.vcov)), index=list(self.xnames))

    def tidy(self, *, level: float = 0.95, se: Literal["robust", "full", "model"] = "robust") -> pd.DataFrame:
        """Fixed effects with Wald z tests on WeMix's/Stata's cluster-robust SEs; ``se="full"``: the
        full-Hessian sandwich; ``se="model"``: model-based, which ignore the sampling design."""
        if se not in ("robust", "full", "model"):
            raise OptionError(f"se must be 'robust', 'full' or 'model', not {se!r}")
        p = len(self.beta)
        V = {"robust": self.vcov, "model": self.vcov_model}.get(se)
        V = self.vcov_full_sandwich()[:p, :p] if V is None else V
        return wald_table(self.xnames, self.beta, V, level)

    def icc(self) -> float:
        """WeMix's ICC: the sum of all random-effect variances (slopes included) over that sum
        plus the residual variance."""
        vc = self.varcorr
        re = float(vc.vcov[(vc["group"] != "Residual") & vc.var2.isna()].sum())
        return re / (re + self.sigma**2)

    def wald_test(self) -> tuple[float, int, float]:
        """Wald chi2 that all slopes are zero, on the cluster-robust vcov: (chi2, df, p)."""
        return wald_slopes(self.xnames, self.beta, self.vcov)

    def lr_test_linear(self) -> None:
        raise OptionError("no likelihood-ratio test with sampling weights (a pseudo-likelihood); use Wald tests")

    def summary(self, style: Literal["lme4", "stata"] | None = None) -> str:
        """Stata's ``mixed`` header with pweights: log pseudolikelihood, robust SEs (both styles
        print this one layout: lme4 has no sampling weights)."""
        return pseudo_summary(self, "Mixed-effects regression", style)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary with the weights and their scaling."""
        vc = self.varcorr.astype(object).where(self.varcorr.notna(), None)
        return {
            "model": self.spec.text,
            "estimator": "pseudo-ML (sampling weights)",
            "pweights": list(self.pweights),
            "cond_weights": self.cond_weights,
            "pwscale": self.scaling,
            "weight_sums": list(self.weight_sums),
            "nobs": self.nobs,
            "ngroups": self.ngroups,
            "fixef": [
                {"term": t, "estimate": float(e), "se": float(s), "se_type": f"cluster-robust ({self.cluster})"}
                for t, e, s in zip(self.xnames, self.beta, self.se)
            ],
            "varcorr": vc.to_dict(orient="records"),
            "sigma": self.sigma,
            "theta": [float(t) for t in self.theta],
            "log_pseudolikelihood": self.loglik,
            "nclusters": self.nclusters,
            "optimizer": {"code": self.optimizer, "evaluations": self.nevals},
            "notes": list(self.notes),
        }
