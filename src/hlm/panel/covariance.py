"""Coefficient covariance: conventional, heteroskedasticity-robust and cluster-robust.

With bread A = (X~'X~)^-1 for the estimator's transformed regressors x~_it and residuals
e_it, the sandwich is

    V = q * A (sum_g s_g s_g') A,    s_g = sum_{it in g} x~_it e_it      (cluster)
    V = q * A (sum_it e_it^2 x~_it x~_it') A                              (robust, OLS)

with Stata's small-sample factors q = G/(G-1) * (N-1)/(N-K) (``vce(cluster)``) and
q = N/(N-K) (``regress, vce(robust)``), K the number of coefficients including ``_cons``
(``xtreg, fe`` counts ``_cons`` but not the absorbed u_i, which are nested in the clusters).
The per-cluster score sums are one more group-by (a bincount per column).
"""

from __future__ import annotations

import numpy as np

from hlm.errors import OptionError


def stata_scale(kind: str, N: int, K: int, G: int = 0) -> float:
    """Stata's small-sample factor q for ``robust`` or ``cluster``."""
    if kind == "cluster":
        return G / (G - 1) * (N - 1) / (N - K)
    if kind == "robust":
        return N / (N - K)
    raise ValueError(kind)


def cluster_meat(Xt: np.ndarray, e: np.ndarray, groups: np.ndarray, G: int) -> np.ndarray:
    """sum_g s_g s_g' with s_g the per-cluster sums of x~_it e_it."""
    scores = np.empty((G, Xt.shape[1]))
    for j in range(Xt.shape[1]):
        scores[:, j] = np.bincount(groups, weights=Xt[:, j] * e, minlength=G)
    return scores.T @ scores


def robust_meat(Xt: np.ndarray, e: np.ndarray) -> np.ndarray:
    """sum_it e_it^2 x~_it x~_it' (White / HC0 meat)."""
    return Xt.T @ (Xt * (e * e)[:, None])


def sandwich(bread: np.ndarray, meat: np.ndarray, scale: float) -> np.ndarray:
    """q * A M A, symmetrised."""
    V = scale * bread @ meat @ bread
    return (V + V.T) / 2


def check_nested(panel_codes: np.ndarray, cluster_codes: np.ndarray, n_panels: int) -> None:
    """Stata's rule for xtreg fe/re: every panel must lie within one cluster."""
    first = np.empty(n_panels, dtype=cluster_codes.dtype)
    first[panel_codes] = cluster_codes
    if not np.array_equal(first[panel_codes], cluster_codes):
        raise OptionError("panels are not nested within clusters; cluster on the panel variable or a coarser one")
