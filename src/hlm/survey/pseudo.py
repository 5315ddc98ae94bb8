"""The multilevel pseudo-likelihood of a linear model (Rabe-Hesketh & Skrondal 2006; WeMix, Stata).

Each level's contribution is raised to its conditional weight inside the integral over the
level above.  With u = Lambda v the integrals are Gaussian and run bottom-up as in
:mod:`hlm.lmm.nested`: for a group g with weighted pool M = [M_zz, M_zk] (its children's
absorbed M, each times the child's conditional weight; a_i z z' over rows at the leaf),

    G_g = I + Lambda' M_JJ Lambda,  corr_g = M_kJ Lambda G_g^{-1} Lambda' M_Jk,
    M <- M - M_.J Lambda G_g^{-1} Lambda' M_J.,

and the pseudo-likelihood collects log|G_g| and corr_g times the group's UNCONDITIONAL weight:
Q = sum_i w_i k_i k_i' - sum_g W_g corr_g (k = [x, y]), logdet = sum_g W_g log|G_g|.  Profiling
beta = Q_xx^{-1} Q_xy and sigma^2 = (Q_yy - Q_yx beta) / N with N = sum_i w_i (unconditional)
gives -2 l = logdet + N (1 + log(2 pi sigma^2)); all weights 1 is lme4's ML deviance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hlm.lmm.structure import Structure


@dataclass(frozen=True)
class WeightedRows:
    """The weighted sufficient statistics of a nested model along its chain (innermost first):
    per leaf group sum_i a_i z_i z_i' and sum_i a_i z_i k_i' (a: conditional level-1 weights),
    per top-level group sum_i w_i k_i k_i' and sum_i w_i (w: unconditional)."""

    Mzz: np.ndarray  # (G_leaf, z, z)
    Mzk: np.ndarray  # (G_leaf, z, p + 1)
    Qk: np.ndarray  # (G_top, p + 1, p + 1)
    Nk: np.ndarray  # (G_top,)
    parents: tuple[np.ndarray, ...]  # chain level l's groups -> level l + 1's
    cond: tuple[np.ndarray, ...]  # per chain factor: conditional weight of each group
    uncond: tuple[np.ndarray, ...]  # per chain factor: unconditional weight of each group
    top: tuple[np.ndarray, ...]  # per chain factor: the top-level group of each group
    chain: tuple[int, ...]

    @property
    def nweights(self) -> float:
        """N = sum of the unconditional level-1 weights."""
        return float(self.Nk.sum())


def weighted_rows(
    Z: np.ndarray,
    K: np.ndarray,
    a: np.ndarray,
    w: np.ndarray,
    codes: np.ndarray,
    parents: tuple[np.ndarray, ...],
    cond: tuple[np.ndarray, ...],
    uncond: tuple[np.ndarray, ...],
    top: tuple[np.ndarray, ...],
    chain: tuple[int, ...],
) -> WeightedRows:
    """One pass over the rows (Z pool, K = [X y], weights a and w, leaf ``codes``)."""
    G0, ntop = len(cond[0]), len(cond[-1])
    aZ = a[:, None] * Z
    row_top = top[0][codes]
    return WeightedRows(
        _sum_by(codes, aZ[:, :, None] * Z[:, None, :], G0),
        _sum_by(codes, aZ[:, :, None] * K[:, None, :], G0),
        _sum_by(row_top, (w[:, None] * K)[:, :, None] * K[:, None, :], ntop),
        np.bincount(row_top, weights=w, minlength=ntop),
        parents,
        cond,
        uncond,
        top,
        chain,
    )


@dataclass(frozen=True)
class Pseudo:
    """The profiled pseudo-likelihood at one theta and what the sandwich needs."""

    m2loglik: float
    beta: np.ndarray
    sigma2: float
    Q: np.ndarray  # (p+1, p+1) total
    Qk: np.ndarray  # (K, p+1, p+1) per top-level group


def _absorb(Mzz: np.ndarray, Mzk: np.ndarray, J: list[int], lam: np.ndarray) -> tuple[np.ndarray, ...]:
    """One level's step for every group: (log|G_g|, corr_g, Mzz, Mzk after absorption)."""
    A = Mzz[:, J][:, :, J]
    Gm = np.eye(len(J)) + np.einsum("ji,gjk,kl->gil", lam, A, lam)
    sign, logdet = np.linalg.slogdet(Gm)
    P = np.einsum("ji,gjz->giz", lam, Mzz[:, J, :])
    R = np.einsum("ji,gjk->gik", lam, Mzk[:, J, :])
    GiP = np.linalg.solve(Gm, P)
    GiR = np.linalg.solve(Gm, R)
    corr = np.einsum("gqc,gqd->gcd", R, GiR)
    return logdet, corr, Mzz - np.einsum("gqa,gqb->gab", P, GiP), Mzk - np.einsum("gqa,gqc->gac", P, GiR)


def _sum_by(parent: np.ndarray, arr: np.ndarray, G: int) -> np.ndarray:
    out = np.zeros((G,) + arr.shape[1:])
    np.add.at(out, parent, arr)
    return out


def cluster_terms(rows: WeightedRows, struct: Structure, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per top-level group k: the weighted logdet_k and Q_k (see the module docstring)."""
    lambdas = struct.lambdas(theta)
    Mzz, Mzk, Qk = rows.Mzz, rows.Mzk, rows.Qk.copy()
    ntop = len(Qk)
    logdet = np.zeros(ntop)
    for level, f in enumerate(rows.chain):
        ld, corr, Mzz, Mzk = _absorb(Mzz, Mzk, list(struct.factor_cols[f]), lambdas[f])
        W = rows.uncond[level]
        logdet += np.bincount(rows.top[level], weights=W * ld, minlength=ntop)
        Qk -= _sum_by(rows.top[level], W[:, None, None] * corr, ntop)
        if level + 1 < len(rows.chain):
            c = rows.cond[level][:, None, None]
            G = len(rows.cond[level + 1])
            Mzz = _sum_by(rows.parents[level], c * Mzz, G)
            Mzk = _sum_by(rows.parents[level], c * Mzk, G)
    return logdet, Qk


def evaluate(rows: WeightedRows, struct: Structure, theta: np.ndarray) -> Pseudo:
    """The profiled pseudo-likelihood at ``theta`` (see the module docstring)."""
    logdet, Qk = cluster_terms(rows, struct, theta)
    Q = Qk.sum(axis=0)
    p = Q.shape[0] - 1
    beta = np.linalg.solve(Q[:p, :p], Q[:p, p])
    N = rows.nweights
    prss = max(float(Q[p, p] - Q[:p, p] @ beta), np.finfo(float).tiny)
    sigma2 = prss / N
    return Pseudo(float(logdet.sum()) + N * (1.0 + np.log(2.0 * np.pi * sigma2)), beta, sigma2, Q, Qk)


def cluster_loglik(rows: WeightedRows, struct: Structure, phi: np.ndarray) -> np.ndarray:
    """Each top-level group's pseudo-log-likelihood at phi = (beta, theta, sigma^2), unprofiled:
    l_k = -1/2 [N_k log(2 pi sigma^2) + logdet_k + (b'Q_k b) / sigma^2] with b = (-beta, 1)."""
    p = rows.Qk.shape[1] - 1
    beta, theta, sigma2 = phi[:p], phi[p:-1], phi[-1]
    logdet, Qk = cluster_terms(rows, struct, theta)
    b = np.append(-beta, 1.0)
    return -0.5 * (rows.Nk * np.log(2.0 * np.pi * sigma2) + logdet + np.einsum("i,kij,j->k", b, Qk, b) / sigma2)


def robust_vcov(pt: Pseudo) -> tuple[np.ndarray, np.ndarray]:
    """(WeMix's/Stata's cluster-robust vcov of beta, the model-based one).  With B = Q_xx / sigma^2
    (the beta block of the information at fixed variance parameters) and s_k = (Q_k,xy -
    Q_k,xx beta) / sigma^2 the score of top-level group k: V = B^-1 [K/(K-1) sum s_k s_k'] B^-1."""
    p = len(pt.beta)
    B = pt.Q[:p, :p] / pt.sigma2
    S = (pt.Qk[:, :p, p] - pt.Qk[:, :p, :p] @ pt.beta) / pt.sigma2
    K = S.shape[0]
    Binv = np.linalg.inv(B)
    meat = K / (K - 1) * S.T @ S
    return Binv @ meat @ Binv, Binv
