"""Nested factors: K'H^{-1}K and log|H| by a bottom-up Woodbury recursion.

With H = I + sum_l Z_l T_l Z_l' (T_l = Lambda_l Lambda_l'), the factors form a chain
(innermost first) and H is block diagonal by the groups of every level.  For a group g of
level l whose children have already been absorbed (H_c), with M = U'H_c^{-1}U over the
group's rows for U = [Z_pool, K]:

    G_g = I + Lambda' M_JJ Lambda,            log|H_g| = log|H_c| + log|G_g|
    U'H_g^{-1}U = M - M_.J Lambda G_g^{-1} Lambda' M_J.

The K'K block is only ever needed in total, so per group we carry M_zz (z x z) and M_zk
(z x k) and subtract each level's K-block correction from the global K'K.  The parent's M
is the sum of its children's.  For random intercepts this is DESIGN.md's recursion
``Q -= t/(1+tW) S S'``, ``W <- W/(1+tW)``, ``S <- S/(1+tW)``.  Cost: O(groups), no rows.
"""

from __future__ import annotations

import numpy as np

from hlm.aggregate.stats import Aggregates
from hlm.core.structure import Structure


def sum_by(parent: np.ndarray, arr: np.ndarray, G: int) -> np.ndarray:
    """Sum the rows of ``arr`` (n, ...) into G parent groups."""
    flat = arr.reshape(len(arr), -1)
    out = np.empty((G, flat.shape[1]))
    for c in range(flat.shape[1]):
        out[:, c] = np.bincount(parent, weights=flat[:, c], minlength=G)
    return out.reshape((G,) + arr.shape[1:])


def nested_terms(agg: Aggregates, struct: Structure, lambdas: list[np.ndarray]) -> tuple[float, np.ndarray]:
    """log|H| and Q = K'H^{-1}K for nested factors."""
    assert agg.chain is not None
    Q = agg.ktk.copy()
    logdet = 0.0
    leaf = agg.factors[agg.chain[0]]
    Mzz, Mzk = leaf.ztz, leaf.ztk
    for level, f in enumerate(agg.chain):
        J = list(struct.factor_cols[f])
        lam = lambdas[f]
        if len(J) == 1:
            lam0 = lam[0, 0]
            P = lam0 * Mzz[:, J[0], :]  # (G, z)
            R = lam0 * Mzk[:, J[0], :]  # (G, k)
            d = 1.0 + lam0 * P[:, J[0]]
            logdet += np.log(d).sum()
            Pd, Rd = P / d[:, None], R / d[:, None]
            Q -= Rd.T @ R
            Mzz = Mzz - Pd[:, :, None] * P[:, None, :]
            Mzk = Mzk - Pd[:, :, None] * R[:, None, :]
        else:
            A = Mzz[:, J][:, :, J]
            Gm = np.eye(len(J)) + np.einsum("ji,gjk,kl->gil", lam, A, lam)
            L = np.linalg.cholesky(Gm)
            logdet += 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum()
            P = np.einsum("ji,gjz->giz", lam, Mzz[:, J, :])
            R = np.einsum("ji,gjk->gik", lam, Mzk[:, J, :])
            GiP = np.linalg.solve(Gm, P)
            GiR = np.linalg.solve(Gm, R)
            Q -= np.einsum("gqc,gqd->cd", R, GiR)
            Mzz = Mzz - np.einsum("gqa,gqb->gab", P, GiP)
            Mzk = Mzk - np.einsum("gqa,gqc->gac", P, GiR)
        if level + 1 < len(agg.chain):
            G_parent = agg.factors[agg.chain[level + 1]].nlevels
            parent = agg.parents[level]
            Mzz = sum_by(parent, Mzz, G_parent)
            Mzk = sum_by(parent, Mzk, G_parent)
    return logdet, Q
