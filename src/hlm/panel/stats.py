"""One pass over the rows: the sufficient statistics of every panel estimator.

With Z = [X y] (X's column 0 the constant), panel i's row count T_i and column sums
S_i = sum_t z_it, and the global cross-product C = Z'Z, every estimator is a weighted
moment matrix

    M(w) = Z'Z - sum_i w_i S_i S_i'

pooled OLS w_i = 0; within w_i = 1/T_i (X'X minus the per-group sums' outer products over
n_i); random effects (GLS on quasi-demeaned data z_it - theta_i zbar_i) w_i =
theta_i (2 - theta_i) / T_i.  The between regressions use the panel means m_i = S_i / T_i:
unweighted sum_i m_i m_i' (Stata's ``be``) or T_i-weighted sum_i S_i S_i' / T_i.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from hlm.panel.design import PanelDesign


@dataclass(frozen=True)
class PanelStats:
    """Per-panel counts and sums of [X y] and the global cross-product Z'Z."""

    N: int
    T: np.ndarray  # (n,) rows per panel
    S: np.ndarray  # (n, p + 1) per-panel sums of [X y]
    ZZ: np.ndarray  # (p + 1, p + 1)

    @property
    def n(self) -> int:
        return len(self.T)

    @cached_property
    def means(self) -> np.ndarray:
        """Panel means m_i = S_i / T_i, (n, p + 1)."""
        return np.asfortranarray(self.S / self.T[:, None])

    @cached_property
    def within(self) -> np.ndarray:
        """W = M(1/T): the within (demeaned) cross-products."""
        return self.moment(1.0 / self.T)

    def moment(self, w: np.ndarray | float) -> np.ndarray:
        """M(w) = Z'Z - sum_i w_i S_i S_i'."""
        if isinstance(w, np.ndarray):
            return self.ZZ - self.S.T @ (self.S * w[:, None])
        return self.ZZ - float(w) * (self.S.T @ self.S)

    def between(self, *, weighted: bool) -> np.ndarray:
        """sum_i m_i m_i' (unweighted) or sum_i T_i m_i m_i' (weighted)."""
        return self._between_w if weighted else self._between_u

    @cached_property
    def _between_w(self) -> np.ndarray:
        return self.S.T @ (self.S / self.T[:, None])

    @cached_property
    def _between_u(self) -> np.ndarray:
        return self.means.T @ self.means


def panel_stats(design: PanelDesign) -> PanelStats:
    """Aggregate a design: bincount per column over the panel codes and one Z'Z product."""
    X, y, codes = design.X, design.y, design.codes
    assert X is not None and y is not None and codes is not None, "the rows stay in an engine"
    n = len(design.panels)
    p = X.shape[1]
    T = np.bincount(codes, minlength=n).astype(float)
    S = np.empty((n, p + 1), order="F")
    S[:, 0] = T
    for j in range(1, p):
        S[:, j] = np.bincount(codes, weights=X[:, j], minlength=n)
    S[:, p] = np.bincount(codes, weights=y, minlength=n)
    ZZ = np.empty((p + 1, p + 1))
    with np.errstate(over="ignore", invalid="ignore"):  # extreme scales: refused by the caller's check
        ZZ[:p, :p] = X.T @ X
        ZZ[:p, p] = ZZ[p, :p] = X.T @ y
        ZZ[p, p] = y @ y
    return PanelStats(N=len(y), T=T, S=S, ZZ=ZZ)
