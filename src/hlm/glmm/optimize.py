"""The GLMM maximum-likelihood fit, in glmer's two stages:

1. the fast stage (glmer's ``nAGQ = 0``, MixedModels.jl's ``fast = true``): BOBYQA over theta
   (and nbinom2's log phi) of the Laplace deviance with beta the joint PIRLS mode at theta;
2. from there, for the Laplace deviance with a logit or log link, quasi-Newton steps on its
   exact gradient (:mod:`hlm.glmm.newton`; stage 1 then only gives a rough start); otherwise, or
   where those steps do not apply (theta near a bound), BOBYQA over (theta, beta[, log phi])
   jointly of -2 logLik (Laplace, or adaptive Gauss-Hermite for ``nagq > 1``), in coordinates
   where every parameter has about unit standard error: beta whitened by the fast stage's
   RX'RX, theta divided by the SE its second difference gives, so one trust-region radius fits
   all of them.

Standard errors come, as glmer's, from the Hessian H of -2 logLik over all parameters: the
forward difference of the exact gradient on the Newton route, else lme4's ``deriv12`` finite
differences of -2 logLik (step 1e-4); vcov(beta) = 2 H^-1, beta block.  With
``nagq = 0`` (stage 1 only) beta is not a free parameter; its vcov is glmer's for that case,
(RX'RX)^-1 = the beta block of the joint system's inverse, which the returned H carries as
its beta block 2 RX'RX.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.linalg as sla

from hlm.glmm.family import Family, link_function
from hlm.glmm.frame import GlmmFrame
from hlm.glmm.gradient import has_gradient
from hlm.glmm.laplace import PIRLS_TOL, Modes, Pls
from hlm.glmm.newton import newton_stage
from hlm.glmm.rows import EngineRows, engine_rows
from hlm.glmm.theta import start_and_lower
from hlm.numerics.bobyqa import OptSummary, bobyqa
from hlm.numerics.derivatives import deriv12

HESSIAN_STEP = 1e-4  # lme4's deriv12 step
MEMO = 1  # modes kept besides the pinned ones: the same point is asked for right after (or kept)
# stage 1's BOBYQA (ftol_abs, xtol_abs), PIRLS tolerance and first radius: its own estimates
# (nagq = 0); the start of stage 2's BOBYQA (its modes need not be exact to round-off); a rough
# start of stage 2's Newton steps, which converge from wherever their B is positive definite
FAST_TOL = {
    "estimate": (1e-8, 1e-7, PIRLS_TOL, 0.2),
    "bobyqa": (1e-5, 1e-4, 1e-6, 0.2),
    "newton": (3e-2, 1e-1, 1e-3, 0.1),
}


def linear_start(family: Family, r: EngineRows) -> np.ndarray:
    """beta by least squares on g(smoothed y) of the rows ``r`` (the fast stage's PIRLS, or the
    GLM's Fisher scoring, takes it from there)."""
    mean = (r.y + 0.5) / (r.n + 1.0) if family.name == "binomial" else (r.y + 0.5) / r.n
    return np.linalg.lstsq(r.X, link_function(family.link, mean) - r.offset, rcond=None)[0]


@dataclass
class Predictor:
    """The modes (u, or the joint (u, beta)) at x ~ those at the evaluated point x_a nearest to x
    plus J (x - x_a): O(|x - x_a|^2) from them, so near evaluated points (a Hessian's
    differences, BOBYQA's late steps) PIRLS needs one Newton step where it needed two or three."""

    J: np.ndarray
    anchors: list[tuple[np.ndarray, np.ndarray]]
    joint: bool  # the state is (u, beta) of the fast stage's joint modes, else u
    keep: int = 32

    def start(self, x: np.ndarray) -> np.ndarray:
        xa, ua = min(self.anchors, key=lambda a: float(np.sum((a[0] - x) ** 2)))
        return ua + self.J @ (x - xa)

    def add(self, x: np.ndarray, u: np.ndarray) -> None:
        self.anchors = [*self.anchors[-(self.keep - 1) :], (np.array(x, dtype=float), u)]


@dataclass
class Objective:
    """-2 logLik at x = (theta, beta[, log phi]); the fast stage's at (theta[, log phi])."""

    family: Family
    frame: GlmmFrame
    nagq: int = 1
    collapse: bool = True
    pls: Pls = field(init=False, repr=False)
    beta: np.ndarray = field(init=False, repr=False)
    predictor: Predictor | None = field(default=None, init=False, repr=False)
    memo: dict[tuple[bool, bytes], Modes] = field(default_factory=dict, init=False, repr=False)
    pinned: tuple[bool, bytes] | None = field(default=None, init=False, repr=False)  # the predictor's base

    def __post_init__(self) -> None:
        rows = engine_rows(self.family, self.frame, collapse=self.collapse)
        self.pls = Pls(rows, self.frame.dims, self.frame.A0.shape[1])
        self.beta = linear_start(self.family if self.family.phi is None else replace(self.family, phi=1.0), rows)

    @property
    def ntheta(self) -> int:
        return sum(k * (k + 1) // 2 for k in self.frame.dims)

    @property
    def nbinom(self) -> bool:
        return self.family.name == "negative_binomial"

    def split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, Family]:
        k, p = self.ntheta, self.frame.X.shape[1]
        fam = replace(self.family, phi=float(np.exp(x[k + p]))) if self.nbinom else self.family
        return x[:k], x[k : k + p], fam

    def full(self, x_fast: np.ndarray) -> np.ndarray:
        """(theta, beta[, log phi]) from the fast stage's (theta[, log phi]) and its last beta."""
        k = self.ntheta
        return np.concatenate([x_fast[:k], self.beta, x_fast[k:]])

    def _recall(self, joint: bool, x: np.ndarray) -> Modes | None:
        """The modes of an evaluation at exactly x to PIRLS_TOL among the last ``MEMO`` and the
        predictor's base (the same point is asked for again by a predictor's set-up, a Hessian's
        base, the result)."""
        key = (joint, np.asarray(x, dtype=float).tobytes())
        m = self.memo.pop(key, None)
        if m is not None:
            self.memo[key] = m  # the most recently used last
            self.pls.u = m.u
            if joint:
                self.beta = m.beta
        return m

    def _remember(self, joint: bool, x: np.ndarray, m: Modes) -> None:
        if np.isfinite(m.minus2_cond):
            self.memo[(joint, np.asarray(x, dtype=float).tobytes())] = m
            while len(self.memo) > MEMO + (self.pinned in self.memo):
                del self.memo[next(k for k in self.memo if k != self.pinned)]

    def keep(self, x: np.ndarray, joint: bool = False) -> None:
        """Keep the modes at x (once evaluated) in the memo until another point is kept."""
        self.pinned = (joint, np.asarray(x, dtype=float).tobytes())

    def modes(self, x: np.ndarray, tol: float = PIRLS_TOL) -> Modes:
        """The Laplace modes at x, PIRLS to ``tol`` (above PIRLS_TOL: the log-determinant, and
        so F and its gradient, only to about that relative accuracy)."""
        known = self._recall(False, x)
        if known is not None:
            return known
        theta, beta, fam = self.split(x)
        pred = self.predictor if self.predictor is not None and not self.predictor.joint else None
        m = self.pls.modes(fam, theta, beta, start=None if pred is None else pred.start(x), tol=tol)
        if pred is not None and not np.isfinite(m.minus2_cond):  # a prediction too far out: the last modes
            m = self.pls.modes(fam, theta, beta, tol=tol)
        if pred is not None and np.isfinite(m.minus2_cond):
            pred.add(x, m.u)
        if tol <= PIRLS_TOL:
            self._remember(False, x, m)
        return m

    def fast_modes(self, x_fast: np.ndarray, tol: float = PIRLS_TOL) -> Modes:
        known = self._recall(True, x_fast)
        if known is not None:
            return known
        theta, _, fam = self.split(self.full(x_fast))
        pred = self.predictor if self.predictor is not None and self.predictor.joint else None
        start = None if pred is None else pred.start(x_fast)
        q = self.pls.q
        u0, beta0 = (None, self.beta) if start is None else (start[:q], start[q:])
        m = self.pls.modes(fam, theta, beta0, joint=True, start=u0, tol=tol)
        if start is not None and not np.isfinite(m.minus2_cond):  # a prediction too far out: the last modes
            m = self.pls.modes(fam, theta, self.beta, joint=True, tol=tol)
        if np.isfinite(m.minus2_cond):
            self.beta = m.beta
            if pred is not None:
                pred.add(x_fast, np.concatenate([m.u, m.beta]))
        if tol <= PIRLS_TOL:
            self._remember(True, x_fast, m)
        return m

    def predict_near(self, x0: np.ndarray, h: float, *, joint: bool = False) -> None:
        """Start PIRLS at every later x (of :meth:`fast` with ``joint``, else of the Laplace
        objective) from a linear prediction of the modes (:class:`Predictor`) until ``predictor``
        is reset to None.  J = d(modes)/dx at x0: for scalar terms with a canonical link exactly
        (:meth:`Pls.mode_jacobian`, one row pass), else column j is the chord step
        M^-1 g(x0 + h e_j) / h with M the PIRLS system at x0's modes and g its right-hand side there."""
        self.predictor = None
        m0 = self.fast_modes(x0) if joint else self.modes(x0)
        self.keep(x0, joint)
        exact = has_gradient(self.family) and all(k == 1 for k in self.frame.dims)
        if exact:
            theta0, beta0, fam0 = self.split(self.full(x0) if joint else x0)
            J = self.pls.mode_jacobian(fam0, theta0, m0.beta if joint else beta0, m0, joint)
        else:
            J = np.empty((len(m0.u) + (len(m0.beta) if joint else 0), len(x0)))
        for j in range(0 if exact else len(x0)):
            xj = x0 + h * np.eye(len(x0))[j]
            theta, beta, fam = self.split(self.full(xj) if joint else xj)
            J[:, j] = self.pls.chord_step(fam, theta, beta, m0, joint) / h
        state = np.concatenate([m0.u, m0.beta]) if joint else m0.u
        self.predictor = Predictor(J, [(np.array(x0, dtype=float), state)], joint)

    def fast(self, x_fast: np.ndarray, tol: float = PIRLS_TOL) -> float:
        dev = self.fast_modes(x_fast, tol).deviance
        return dev if np.isfinite(dev) else np.inf

    def __call__(self, x: np.ndarray) -> float:
        if self.nagq > 1 and len(self.frame.dims) > 1:
            from hlm.glmm.agq_nested import nested_agq_deviance

            return nested_agq_deviance(self, x)
        if self.nagq > 1:
            from hlm.glmm.agq import agq_deviance

            return agq_deviance(self, x)
        dev = self.modes(x).deviance
        return dev if np.isfinite(dev) else np.inf


def _fast_stage(
    obj: Objective, purpose: str, start: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, int, str]:
    """(theta[, log phi]) of stage 1, its lower bounds, evaluations and return code; ``purpose``
    (a key of FAST_TOL) sets how closely it is optimised, from ``start`` (else L_t = I)."""
    theta0, lower = start_and_lower(obj.frame.dims)
    x0 = np.concatenate([theta0, [0.0] if obj.nbinom else []]) if start is None else start
    lower = np.concatenate([lower, [-np.inf] if obj.nbinom else []])
    tol = FAST_TOL[purpose]
    obj.predict_near(x0, HESSIAN_STEP, joint=True)
    pirls_tol = tol[2]
    run = bobyqa(
        lambda v: obj.fast(v, pirls_tol),
        x0,
        lower,
        step=tol[3],
        ftol_abs=tol[0],
        ftol_rel=1e-12,
        xtol_abs=tol[1],
        maxeval=20_000,
    )
    obj.fast(run.x)  # leave beta at the optimum's
    return run.x, lower, run.feval, run.code


def _fast_hessian(obj: Objective, x: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """nagq = 0: -2 logLik, its gradient and H over (theta, beta[, log phi]) (module docstring)."""
    f0, g, Hs = deriv12(obj.fast, x, 1e-4)
    rx = obj.fast_modes(x).rx
    assert rx is not None
    k, p = obj.ntheta, obj.frame.X.shape[1]
    free = np.r_[np.arange(k), np.arange(k + p, k + p + len(x) - k)]  # x's places in the full vector
    H = np.zeros((k + p + len(x) - k,) * 2)
    H[np.ix_(free, free)] = Hs
    H[k : k + p, k : k + p] = 2.0 * (rx @ rx.T)
    grad = np.zeros(len(H))
    grad[free] = g
    return f0, grad, H


def _theta_scales(obj: Objective, x_fast: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Per theta entry, about its standard error: (H_tt / 2)^-1/2 from the fast objective's
    second difference (2 evaluations each), kept within [1e-3, 1]."""
    k, h = obj.ntheta, 1e-3
    f0, scales = obj.fast(x_fast), np.ones(len(x_fast))
    for t in range(k):
        e = np.zeros(len(x_fast))
        e[t] = h
        up = obj.fast(x_fast + e)
        down = obj.fast(x_fast - e) if x_fast[t] - h >= lower[t] else 2 * f0 - up  # on the bound: one-sided
        curv = (up - 2 * f0 + down) / h**2
        scales[t] = np.clip(1.0 / np.sqrt(curv / 2), 1e-3, 1.0) if np.isfinite(curv) and curv > 0 else 1.0
    obj.fast(x_fast)  # beta back at the optimum's
    return scales[:k]


def _laplace_stage(obj: Objective, x0: np.ndarray, lower: np.ndarray) -> tuple[np.ndarray, int, str]:
    """Stage 2: BOBYQA over (w, z[, log phi]) with theta = theta0 + s w (s: about theta's SEs) and
    beta = beta0 + rx'^-1 z, so that z has about unit variance and no correlation (rx rx' = RX'RX
    from the fast stage's joint system): the trust region then has about the right shape for
    every parameter, whatever its scale."""
    k, p = obj.ntheta, obj.frame.X.shape[1]
    x_fast = np.r_[x0[:k], x0[k + p :]]
    s = _theta_scales(obj, x_fast, np.r_[lower[:k], lower[k + p :]])
    rx = obj.fast_modes(x_fast).rx
    assert rx is not None
    T = sla.solve_triangular(rx.T, np.eye(p), lower=False) if p else np.zeros((0, 0))

    def to_x(v: np.ndarray) -> np.ndarray:
        return np.concatenate([x0[:k] + s * v[:k], x0[k : k + p] + T @ v[k : k + p], v[k + p :]])

    v0 = np.concatenate([np.zeros(k + p), x0[k + p :]])
    v_lower = np.concatenate([(lower[:k] - x0[:k]) / s, lower[k:]])
    obj.predict_near(x0, HESSIAN_STEP)
    run = bobyqa(lambda v: obj(to_x(v)), v0, v_lower, step=0.05, ftol_abs=1e-8, ftol_rel=1e-14, xtol_abs=1e-7,
                 maxeval=20_000)  # fmt: skip
    obj.predictor = None
    return to_x(run.x), run.feval + 2 * k, run.code


def _newton_route(obj: Objective) -> tuple[np.ndarray, np.ndarray, int, str, tuple | None]:
    """Stage 1 as a rough start, then Newton steps (:mod:`hlm.glmm.newton`); where they do not
    apply from there (B not positive definite so far out, theta near a bound), stage 1 goes on to
    BOBYQA's tolerance from where it stopped and Newton is tried once more.  Returns stage 1's
    (theta[, log phi]), lower bounds, evaluations and code, and Newton's result or None."""
    x_fast, lower, feval, code = _fast_stage(obj, "newton")
    for again in (False, True):
        if again:
            x_fast, lower, n, code = _fast_stage(obj, "bobyqa", start=x_fast)
            feval += n
        rx = obj.fast_modes(x_fast).rx
        assert rx is not None
        x0 = obj.full(x_fast)
        went = newton_stage(obj, x0, np.concatenate([lower, np.full(len(x0) - len(lower), -np.inf)]), rx)
        if went is not None:
            return x_fast, lower, feval, code, went
    return x_fast, lower, feval, code, None


def estimate(obj: Objective) -> tuple[np.ndarray, OptSummary, np.ndarray]:
    """The estimates, the optimizer's summary and the Hessian of -2 logLik at them."""
    t0 = time.perf_counter()
    went = None
    if obj.nagq == 1 and has_gradient(obj.family):
        x_fast, fast_lower, feval, code, went = _newton_route(obj)
    else:
        x_fast, fast_lower, feval, code = _fast_stage(obj, "estimate" if obj.nagq == 0 else "bobyqa")
    optimizer = "bobyqa"
    x0 = obj.full(x_fast)
    lower = np.concatenate([fast_lower[: obj.ntheta], np.full(len(x0) - obj.ntheta, -np.inf)])
    if obj.nagq == 0:
        fmin, g, H = _fast_hessian(obj, x_fast)
        obj.predictor = None
        x = obj.full(x_fast)
    else:
        if went is not None:
            x, fmin, g, H, n = went
            feval, optimizer, code = feval + n, "bobyqa+newton", "success"
        else:  # no exact gradient, or the Newton steps do not apply: BOBYQA and lme4's deriv12
            x, n, code = _laplace_stage(obj, x0, lower)
            feval += n
            obj.predict_near(x, HESSIAN_STEP)
            fmin, g, H = deriv12(obj, x, HESSIAN_STEP)
        obj.predictor = None
        obj(x)  # leave the modes at the estimates
    return x, _summary(x0, x, lower, fmin, feval, code, g, H, time.perf_counter() - t0, optimizer), H


def _summary(
    x0: np.ndarray,
    x: np.ndarray,
    lower: np.ndarray,
    fmin: float,
    feval: int,
    code: str,
    g: np.ndarray,
    H: np.ndarray,
    seconds: float,
    optimizer: str,
) -> OptSummary:
    finite = bool(np.all(np.isfinite(H)))
    ev = np.linalg.eigvalsh(H) if finite else np.array([-1.0])
    free = x > lower  # a theta on its bound 0 has a one-sided gradient
    scaled = float(np.max(np.abs(np.linalg.solve(H, g))[free], initial=0.0)) if ev.min() > 0 else float(np.inf)
    return OptSummary(
        optimizer=optimizer,
        theta0=tuple(float(v) for v in x0),
        theta=tuple(float(v) for v in x),
        lower=tuple(float(v) for v in lower),
        fmin=fmin,
        feval=feval,
        seconds=seconds,
        return_code=code,
        gradient=tuple(float(v) for v in g),
        scaled_gradient=scaled,
        hessian_pd=bool(ev.min() > 0),
    )
