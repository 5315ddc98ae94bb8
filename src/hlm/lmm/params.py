"""Variance parameters on the natural scale, and the deviance as a function of them.

lme4's theta holds, per random term, the lower triangle of the relative covariance factor
Lambda_t (column by column), with Sigma_t = sigma^2 Lambda_t Lambda_t'.  Inference on the
variance components uses, in the same order (lme4's ``.sig01, .sig02, ...``):

* for a diagonal position: the SD of that random effect, sd_i = sigma sqrt((Lambda Lambda')_ii);
* below the diagonal: the correlation r_ij = (Lambda Lambda')_ij / sqrt(... _ii ... _jj);
* last, the residual SD ``.sigma``.

The *natural* parameters eta = (log sd, atanh r, log sigma) are where Stata's ``mixed``
computes its standard errors and confidence limits.  With w = log sd - log sigma (the log
relative SDs) and z = atanh r, theta is a function of (w, z) only, and the deviance with
beta profiled out (-2 log L, ML; or the REML criterion) is

    D(w, z, ls) = c ls + a(theta) + b(theta) exp(-2 ls) + c log(2 pi),

with ls = log sigma, a = log|H| (+ log|Q_XX| for REML), b = pwrss(theta) and c = 2 n
(ML) or 2 (n - p) (REML).  Everything about sigma is analytic; only (w, z) -> (a, b) needs
the core's deviance evaluation (aggregates only, no rows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from hlm.lmm.deviance import LOG2PI, profile
from hlm.lmm.objective import DevianceFunction
from hlm.lmm.structure import Structure
from hlm.numerics.derivatives import derivatives

Kind = Literal["sd", "cor", "sigma"]
ZERO_SD = 1e-4  # relative SDs below this are on the boundary (lme4's singular tolerance)
ONE_COR = 1.0 - 1e-6
THETA_STEP = 0.01  # theta differences: steps THETA_STEP * max(|theta|, 0.1)


@dataclass(frozen=True)
class VarParam:
    """One variance parameter in lme4's order."""

    name: str  # .sig01, ..., .sigma
    kind: Kind
    group: str  # the term's group ("Subject", "cask:batch"), "Residual" for sigma
    var1: str | None  # the random effect (sd) or the first of the pair (cor)
    var2: str | None  # the second of the pair (cor)
    term: int  # index into Structure.terms (-1 for sigma)
    i: int  # row in the term's covariance
    j: int  # column (i == j for an sd)


def chol_psd(C: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a positive semi-definite matrix; zero columns where the pivot is 0."""
    q = C.shape[0]
    L = np.zeros_like(C)
    for j in range(q):
        d = C[j, j] - L[j, :j] @ L[j, :j]
        if d <= 1e-300:
            continue
        L[j, j] = math.sqrt(d)
        L[j + 1 :, j] = (C[j + 1 :, j] - L[j + 1 :, :j] @ L[j, :j]) / L[j, j]
    return L


@dataclass(frozen=True)
class VarParams:
    """The map between theta and the natural variance parameters of one structure.

    A structured term has fewer parameters than its q (q + 1) / 2 entries: cov(identity)
    one SD shared by its effects, cov(exchangeable) one SD and one correlation r, which
    keeps the covariance positive semi-definite for -1/(q - 1) <= r <= 1.  Their ``var1``
    names all the term's effects (space separated), and so does the correlation's ``var2``."""

    struct: Structure
    params: tuple[VarParam, ...]  # theta order, then sigma
    offsets: tuple[int, ...]  # per term: its first theta index

    @classmethod
    def of(cls, struct: Structure) -> VarParams:
        params: list[VarParam] = []
        offsets: list[int] = []
        for t, term in enumerate(struct.terms):
            offsets.append(len(params))
            q = len(term.columns)
            if term.cov != "unstructured":
                joined = " ".join(term.columns)
                params.append(VarParam(f".sig{len(params) + 1:02d}", "sd", term.group, joined, None, t, 0, 0))
                if term.cov == "exchangeable":
                    params.append(VarParam(f".sig{len(params) + 1:02d}", "cor", term.group, joined, joined, t, 1, 0))
                continue
            for j in range(q):
                for i in range(j, q):
                    name = f".sig{len(params) + 1:02d}"
                    if i == j:
                        params.append(VarParam(name, "sd", term.group, term.columns[i], None, t, i, i))
                    else:
                        params.append(VarParam(name, "cor", term.group, term.columns[i], term.columns[j], t, i, j))
        params.append(VarParam(".sigma", "sigma", "Residual", None, None, -1, 0, 0))
        return cls(struct, tuple(params), tuple(offsets))

    @property
    def ntheta(self) -> int:
        return len(self.params) - 1

    def term_lambda(self, theta: np.ndarray, t: int) -> np.ndarray:
        """Term t's block of Lambda at theta."""
        term = self.struct.terms[t]
        return self.struct.lambdas(np.asarray(theta, dtype=float))[term.factor][np.ix_(term.local, term.local)]

    def cor_lower(self, k: int) -> float:
        """The smallest value correlation parameter k can take: -1, or -1/(q-1) for the common
        correlation of an exchangeable term of q effects."""
        term = self.struct.terms[self.params[k].term]
        return -1.0 / (len(term.columns) - 1) if term.cov == "exchangeable" else -1.0

    def _block(self, t: int) -> range:
        end = self.offsets[t + 1] if t + 1 < len(self.offsets) else self.ntheta
        return range(self.offsets[t], end)

    def relative(self, theta: np.ndarray) -> np.ndarray:
        """theta -> (relative SD, correlation) per theta position."""
        out = np.empty(self.ntheta)
        lambdas = self.struct.lambdas(np.asarray(theta, dtype=float))
        for t, term in enumerate(self.struct.terms):
            lam = lambdas[term.factor][np.ix_(term.local, term.local)]
            C = lam @ lam.T
            sd = np.sqrt(np.diag(C))
            for k in self._block(t):
                p = self.params[k]
                if p.kind == "sd":
                    out[k] = sd[p.i]
                elif term.cov == "exchangeable":
                    out[k] = C[1, 0] / C[0, 0] if C[0, 0] > 0 else 0.0
                else:
                    out[k] = C[p.i, p.j] / (sd[p.i] * sd[p.j]) if sd[p.i] > 0 and sd[p.j] > 0 else 0.0
        return out

    def theta_from_relative(self, rel: np.ndarray) -> np.ndarray:
        """(relative SD, correlation) per theta position -> theta."""
        theta = np.empty(self.ntheta)
        for t, term in enumerate(self.struct.terms):
            q = len(term.columns)
            k0 = self.offsets[t]
            if q == 1 or term.cov == "identity":
                theta[k0] = rel[k0]
                continue
            if term.cov == "exchangeable":  # a I + b J = alpha^2 I + (2 alpha beta + q beta^2) J
                s2, r = rel[k0] ** 2, rel[k0 + 1]
                alpha = math.sqrt(max(s2 * (1.0 - r), 0.0))
                theta[k0] = alpha
                theta[k0 + 1] = (-alpha + math.sqrt(max(alpha**2 + q * s2 * r, 0.0))) / q
                continue
            sd = np.empty(q)
            R = np.eye(q)
            k = k0
            for j in range(q):
                for i in range(j, q):
                    if i == j:
                        sd[i] = rel[k]
                    else:
                        R[i, j] = R[j, i] = rel[k]
                    k += 1
            lam = chol_psd(sd[:, None] * R * sd[None, :])
            k = k0
            for j in range(q):
                for i in range(j, q):
                    theta[k] = lam[i, j]
                    k += 1
        return theta

    def estimates(self, theta: np.ndarray, sigma: float) -> np.ndarray:
        """SDs, correlations and sigma (the ``.sigNN`` values)."""
        rel = self.relative(theta)
        kinds = [p.kind for p in self.params[:-1]]
        return np.array([r * sigma if k == "sd" else r for r, k in zip(rel, kinds)] + [sigma])

    def is_sd(self) -> np.ndarray:
        return np.array([p.kind == "sd" for p in self.params[:-1]], dtype=bool)

    def free(self, theta: np.ndarray) -> np.ndarray:
        """Theta positions whose natural parameter is interior: SDs above ``ZERO_SD`` (relative)
        and correlations strictly inside their range (-1, 1), or (-1/(q-1), 1) for an
        exchangeable term, between SDs that are free."""
        rel = self.relative(theta)
        ok = np.ones(self.ntheta, dtype=bool)
        sd_at: dict[tuple[int, int], int] = {}
        for k, p in enumerate(self.params[:-1]):
            if p.kind == "sd":
                ok[k] = rel[k] > ZERO_SD
                sd_at[(p.term, p.i)] = k
        for k, p in enumerate(self.params[:-1]):
            if p.kind != "cor":
                continue
            term = self.struct.terms[p.term]
            if term.cov == "exchangeable":
                low = -1.0 / (len(term.columns) - 1)
                ok[k] = ok[sd_at[(p.term, 0)]] and low + (1.0 - ONE_COR) < rel[k] < ONE_COR
            else:
                ok[k] = ok[sd_at[(p.term, p.i)]] and ok[sd_at[(p.term, p.j)]] and abs(rel[k]) < ONE_COR
        return ok

    def to_unconstrained(self, rel: np.ndarray) -> np.ndarray:
        """(relative SD, correlation) -> (log relative SD, atanh correlation)."""
        sd = self.is_sd()
        with np.errstate(divide="ignore"):
            return np.where(sd, np.log(np.maximum(rel, 0.0)), np.arctanh(np.clip(rel, -1.0, 1.0)))

    def from_unconstrained(self, u: np.ndarray) -> np.ndarray:
        return np.where(self.is_sd(), np.exp(u), np.tanh(u))


@dataclass(frozen=True)
class Criterion:
    """The fit's criterion (ML deviance or REML criterion) with beta profiled out and sigma
    kept as a parameter: D(theta, sigma) = dof log(2 pi sigma^2) + a(theta) + b(theta)/sigma^2."""

    devfun: DevianceFunction

    @property
    def dof(self) -> int:
        agg = self.devfun.agg
        return agg.nobs - agg.p if self.devfun.reml else agg.nobs

    def ab(self, theta: np.ndarray) -> tuple[float, float, np.ndarray]:
        """a(theta) = log|H| (+ log|Q_XX|), b(theta) = pwrss, and Q_XX^{-1}."""
        logdet, Q = self.devfun.terms(theta)
        prof = profile(logdet, Q, self.devfun.agg.nobs, self.devfun.reml)
        a = prof.logdet_h + (prof.logdet_x if self.devfun.reml else 0.0)
        return a, prof.pwrss, prof.qxx_inv

    def value(self, theta: np.ndarray, sigma: float) -> float:
        a, b, _ = self.ab(theta)
        return self.dof * (LOG2PI + 2.0 * math.log(sigma)) + a + b / sigma**2


@dataclass(frozen=True)
class ThetaDerivatives:
    """f(theta) = [a, b, vec(Q_XX^{-1})] (see :class:`Criterion`) with its gradient (m, 2 + p^2)
    and Hessian (m, m, 2 + p^2) over all m entries of theta: one set of Richardson central
    differences (steps ``THETA_STEP`` * max(|theta|, 0.1)), shared by the Satterthwaite df
    and the information of the variance components."""

    value: np.ndarray
    grad: np.ndarray
    hess: np.ndarray

    @classmethod
    def at(cls, devfun: DevianceFunction, theta: np.ndarray) -> ThetaDerivatives:
        crit = Criterion(devfun)

        def f(th: np.ndarray) -> np.ndarray:
            a, b, qinv = crit.ab(th)
            return np.concatenate([[a, b], qinv.ravel()])

        theta = np.asarray(theta, dtype=float)
        return cls(*derivatives(f, theta, THETA_STEP * np.maximum(np.abs(theta), 0.1)))


def full_deviance(devfun: DevianceFunction, beta: np.ndarray, sigma: float, theta: np.ndarray) -> float:
    """-2 log L(beta, sigma, theta) without profiling (ML), from K'H^{-1}K:

    -2 log L = log|H| + n log(2 pi sigma^2) + r'H^{-1}r / sigma^2,
    r'H^{-1}r = [-beta; 1]' Q [-beta; 1],   Q = K'H^{-1}K, K = [X y].
    """
    logdet, Q = devfun.terms(theta)
    v = np.append(-np.asarray(beta, dtype=float), 1.0)
    n = devfun.agg.nobs
    return float(logdet + n * (LOG2PI + 2.0 * math.log(sigma)) + v @ Q @ v / sigma**2)
