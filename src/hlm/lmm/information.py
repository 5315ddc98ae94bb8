"""The observed information of the variance components (behind Stata's ``mixed`` SEs).

The observed information of the natural variance parameters eta = (log sd, atanh r,
log sigma) (see :mod:`hlm.lmm.params`) is half the Hessian of the fit's criterion:
the ML deviance -2 log L (beta profiled out; at the optimum this equals the variance block
of the inverse Hessian of the full likelihood in (beta, eta), which is what Stata and
glmmTMB's ``sdreport`` report), or the REML criterion for REML fits.  With
D(u, ls) = c ls + a(u) + b(u) exp(-2 ls) in u = (log relative sd, atanh r):

    D_uu = a'' + b'' e^{-2 ls},   D_u,ls = -2 b' e^{-2 ls},   D_ls,ls = 4 b e^{-2 ls},

where only the derivatives of a and b in u are numerical.  They come by the chain rule from
the fit's theta-derivatives of a and b (Richardson central differences, shared with the
Satterthwaite df; see :class:`hlm.lmm.params.ThetaDerivatives`) through the cheap map
theta(u), whose Jacobian J and second derivatives T_k = d2 theta_k / du2 are differences of
the map alone (no deviance evaluations):

    a_u = J' a_theta,   a_uu = J' a_thetatheta J + sum_k (a_theta)_k T_k   (b likewise).

eta is a linear map of (u, ls) (log sd = w + ls), so H_eta = A' H_(u,ls) A exactly and
Cov(eta) = 2 H_eta^{-1}.  Then

    se(sd) = sd se(log sd),  CI = exp(log sd -+ z se(log sd));
    se(r)  = (1 - r^2) se(atanh r),  CI = tanh(atanh r -+ z se(atanh r)).

Parameters on the boundary (zero SD, |r| = 1, correlations of a zero SD) are held fixed and
get no standard error.  (A zero SD can leave theta a different square root of the same
covariance than theta(u); the theta-derivatives are then taken at theta(u), not shared.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hlm.lmm.objective import DevianceFunction
from hlm.lmm.params import ThetaDerivatives, VarParams
from hlm.lmm.structure import Structure
from hlm.numerics.derivatives import derivatives

STEP = 0.01


@dataclass(frozen=True)
class VarCompInfo:
    """The information matrix of the free natural parameters at the estimates."""

    vp: VarParams
    estimates: np.ndarray  # sd / cor / sigma, all parameters
    natural: np.ndarray  # log sd / atanh r / log sigma, all parameters
    free: np.ndarray  # bool, all parameters (sigma always free)
    hessian: np.ndarray  # of the criterion D = -2 log L over the free natural parameters

    @property
    def vcov(self) -> np.ndarray:
        """Cov(eta_free) = 2 H^{-1} (pseudo-inverse when H is singular)."""
        try:
            return 2.0 * np.linalg.inv(self.hessian)
        except np.linalg.LinAlgError:
            return 2.0 * np.linalg.pinv(self.hessian)


def information(
    structure: Structure, theta: np.ndarray, sigma: float, devfun: DevianceFunction, derivs: ThetaDerivatives
) -> VarCompInfo:
    """The Hessian of the criterion in the natural parameters at the estimates (theta, sigma);
    ``derivs`` are the theta-derivatives at theta (see the module docstring)."""
    vp = VarParams.of(structure)
    theta = np.asarray(theta, dtype=float)
    rel = vp.relative(theta)
    u_all = vp.to_unconstrained(rel)
    free_theta = vp.free(theta)
    idx = np.flatnonzero(free_theta)

    def theta_of(u_free: np.ndarray) -> np.ndarray:
        u = u_all.copy()
        u[idx] = u_free
        return vp.theta_from_relative(vp.from_unconstrained(u))

    at = theta_of(u_all[idx])  # theta, unless a zero SD left theta another root (module docstring)
    shared = np.allclose(at, theta, rtol=1e-10, atol=1e-12)
    d = derivs if shared else ThetaDerivatives.at(devfun, at)
    b0 = d.value[1]
    ga, Ha = d.grad[:, :2], d.hess[:, :, :2]  # theta-derivatives of (a, b)
    if len(idx):
        _, J, T = derivatives(theta_of, u_all[idx], np.full(len(idx), STEP))  # (n, m), (n, n, m)
        grad = J @ ga
        hess = np.einsum("ik,klc,jl->ijc", J, Ha, J) + T @ ga
    else:
        grad, hess = np.zeros((0, 2)), np.zeros((0, 0, 2))
    scale = np.exp(-2.0 * np.log(sigma))
    m = len(idx)
    H = np.zeros((m + 1, m + 1))
    H[:m, :m] = hess[:, :, 0] + hess[:, :, 1] * scale
    H[:m, m] = H[m, :m] = -2.0 * grad[:, 1] * scale
    H[m, m] = 4.0 * b0 * scale
    A = np.eye(m + 1)
    A[:m, m] = -vp.is_sd()[idx].astype(float)  # u_k = log sd_k - log sigma for SDs
    H_eta = A.T @ H @ A
    est = vp.estimates(theta, sigma)
    natural = np.append(
        np.where(
            vp.is_sd(), np.log(np.maximum(est[:-1], 1e-300)), np.arctanh(np.clip(est[:-1], -1 + 1e-15, 1 - 1e-15))
        ),
        np.log(sigma),
    )
    return VarCompInfo(vp, est, natural, np.append(free_theta, True), H_eta)
