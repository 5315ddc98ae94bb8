"""Penalized IRLS for the conditional modes and the exact Laplace deviance.

At (theta, beta) with A = A0 Lambda_theta, the conditional modes u_hat minimise
    D(u) = -2 sum_i log p(y_i | eta_i) + ||u||^2,   eta = offset + X beta + A u,
found by Newton (Fisher-scoring for non-canonical links) steps (A'WA + I) du = A's - u with
step halving, iterated until the step is below 1e-12: tightly, so the value is the exact
Laplace approximation (lme4's default PIRLS tolerance leaves it up to 0.08 short).  Then
    -2 logLik ~ D(u_hat) + log det(A'W A + I),
with the weights W at u_hat (lme4's ``devcomp``: ussq + ldL2 - 2 sum log p).

The fast stage (glmer's ``nAGQ = 0``) takes the Newton steps in (u, beta) jointly, so beta is
the joint mode of D at theta; its value is the same expression at (u_hat, beta_hat).  The
per-row work and the whole Newton loop are compiled (:mod:`hlm.glmm.kernels`) and the sparse
system is factored with a pattern found once per fit (:mod:`hlm.glmm.cholesky`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hlm.glmm import kernels
from hlm.glmm.cholesky import analyse, inverse_entry, selected_inverse, solve
from hlm.glmm.family import Family
from hlm.glmm.rows import EngineRows
from hlm.glmm.theta import lower_triangles

PIRLS_TOL = 1e-12  # the log-determinant is first order in u's error: FD Hessians need it tight
MAXIT = 200
FAMILY_CODE = {"binomial": kernels.BINOMIAL, "poisson": kernels.POISSON, "negative_binomial": kernels.NBINOM2}
LINK_CODE = {"logit": kernels.LOGIT, "probit": kernels.PROBIT, "cloglog": kernels.CLOGLOG, "log": kernels.LOG}


@dataclass(frozen=True)
class Modes:
    """The conditional modes and the Laplace pieces at one (theta, beta); ``eta`` is on the
    engine's rows (see :meth:`Pls.frame_eta` for the frame's)."""

    u: np.ndarray
    beta: np.ndarray
    eta: np.ndarray
    minus2_cond: float  # -2 sum log p(y | eta_hat), the full one
    logdet: float
    solver: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    rx: np.ndarray | None = field(default=None, repr=False)  # joint mode: L's beta block (RX'RX = rx rx')
    factor: tuple[np.ndarray, np.ndarray, np.ndarray, int] | None = field(default=None, repr=False)  # Lp, Li, Lx, p

    @property
    def deviance(self) -> float:
        """The Laplace -2 logLik."""
        return self.minus2_cond + float(self.u @ self.u) + self.logdet

    def conditional_sd(self, theta: np.ndarray, dims: tuple[int, ...], blocks: tuple[int, ...]) -> np.ndarray:
        """sqrt diag(Lambda (A'WA + I)^-1 Lambda') in A0's column order: per level block of k
        effects, diag(L_t Z_g L_t') with Z_g that block of the inverse, taken from the selected
        inverse (never the dense q x q inverse)."""
        assert self.factor is not None
        Lp, Li, Lx, p = self.factor
        Zx = selected_inverse(Lp, Li, Lx, len(self.u), p)
        out, start = np.empty(len(self.u)), 0
        for L, k, G in zip(lower_triangles(theta, dims), dims, blocks):
            if k == 1:
                out[start : start + G] = abs(L[0, 0]) * np.sqrt(Zx[Lp[start : start + G]])
            for g in range(G if k > 1 else 0):
                idx = start + g * k + np.arange(k)
                Z = np.array([[inverse_entry(Lp, Li, Zx, p, int(a), int(b)) for b in idx] for a in idx])
                out[idx] = np.sqrt(np.maximum(np.diag(L @ Z @ L.T), 0.0))
            start += G * k
        return out


def family_code(family: Family) -> tuple[int, int, float]:
    return FAMILY_CODE[family.name], LINK_CODE[family.link], float(family.phi or 1.0)


@dataclass
class Pls:
    """The penalized least-squares engine of one fit: the rows, the fixed sparse pattern and the
    last modes (the next PIRLS starts from them)."""

    rows: EngineRows
    dims: tuple[int, ...]
    q: int
    pattern: tuple[np.ndarray, ...] = field(init=False, repr=False)
    u: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.pattern = analyse(self.rows.cols, self.q, self.rows.X.shape[1])
        self.u = np.zeros(self.q)

    def design_values(self, theta: np.ndarray) -> np.ndarray:
        """a_ir: row i's entries of A = A0 Lambda_theta (per term, z_i' L_t)."""
        if all(k == 1 for k in self.dims):  # scalar terms: a_it = theta_t z_it
            return self.rows.z * np.asarray(theta, dtype=float)
        a = np.empty_like(self.rows.z)
        slot = 0
        for L, k in zip(lower_triangles(theta, self.dims), self.dims):
            a[:, slot : slot + k] = self.rows.z[:, slot : slot + k] @ L
            slot += k
        return a

    def modes(
        self,
        family: Family,
        theta: np.ndarray,
        beta: np.ndarray,
        *,
        joint: bool = False,
        start: np.ndarray | None = None,
        tol: float = PIRLS_TOL,
    ) -> Modes:
        """The conditional modes at (theta, beta) -- with ``joint`` at theta, beta the joint
        mode from the given start (module docstring); PIRLS starts from ``start``, else from the
        last modes; it stops at a Newton step below ``tol``."""
        r = self.rows
        fam = family_code(family)
        u, b, eta, m2, logdet, Lx, _ = kernels.pirls(
            fam,
            r.y,
            r.n,
            r.X,
            r.offset,
            r.cols,
            self.design_values(theta),
            self.pattern,
            self.u if start is None else start,
            np.asarray(beta, dtype=float),
            joint,
            tol,
            MAXIT,
        )
        if np.isfinite(m2):
            self.u = u
        _, _, _, Lp, Li, _, _ = self.pattern
        q, p = self.q, r.X.shape[1]
        rx = None
        if joint:  # L's trailing p x p block, stored by columns: diagonal first, then the rows below
            rx = np.zeros((p, p))
            for f in range(p):
                rx[f:, f] = Lx[Lp[q + f] : Lp[q + f + 1]]
        solver = lambda v: solve(Lp, Li, Lx, v, q, p, q)  # noqa: E731
        return Modes(u, b, eta, m2 - 2.0 * r.constant, logdet, solver, rx, (Lp, Li, Lx, p))

    def chord_step(self, family: Family, theta: np.ndarray, beta: np.ndarray, at: Modes, joint: bool) -> np.ndarray:
        """M^-1 g with g = (A's - u[, X's]) at (theta, beta, at.u) and M the system factored at
        ``at``: the Newton step towards the modes at (theta, beta) with ``at``'s matrix."""
        r = self.rows
        args = (r.y, r.n, r.X, r.offset, r.cols, self.design_values(theta), at.u, np.asarray(beta, dtype=float))
        g = kernels.score(family_code(family), *args, joint)
        assert at.factor is not None
        Lp, Li, Lx, p = at.factor
        return solve(Lp, Li, Lx, g, self.q, p, len(g))

    def mode_jacobian(self, family: Family, theta: np.ndarray, beta: np.ndarray, at: Modes, joint: bool) -> np.ndarray:
        """d(modes)/dx at the converged ``at`` = M^-1 dg/dx (g(x, u(x)) = 0 and dg/du = -M), x =
        (theta, beta), or theta with ``joint``; scalar terms and canonical links only
        (:func:`hlm.glmm.kernels.score_jacobian`)."""
        r = self.rows
        D = kernels.score_jacobian(
            family_code(family), r.y, r.n, r.X, r.offset, r.cols, r.z, self.design_values(theta), at.u,
            np.asarray(beta, dtype=float), joint,
        )  # fmt: skip
        assert at.factor is not None
        Lp, Li, Lx, p = at.factor
        return np.column_stack([solve(Lp, Li, Lx, np.ascontiguousarray(d), self.q, p, len(d)) for d in D.T])

    def frame_eta(self, modes: Modes) -> np.ndarray:
        """eta on the frame's rows."""
        return modes.eta if self.rows.index is None else modes.eta[self.rows.index]
