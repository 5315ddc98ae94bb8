"""Stage 2 of the Laplace fit and its Hessian from the exact gradient (:mod:`hlm.glmm.gradient`),
where the family has one and theta is inside its bounds.

The Hessian H of F = -2 logLik over x = (theta, beta) is the forward difference of the exact
gradient, column j = (g(x + h_j e_j) - g(x)) / h_j, symmetrised: n evaluations (lme4's
``deriv12`` on F needs n^2 + n), each step h_j ``RELATIVE_STEP`` of the parameter's standard
error (from the current B), so the O(h_j) error is about that fraction of H on every scale.

Stage 2 takes quasi-Newton steps from the fast stage's (rough) optimum x0: B starts from
theta's columns by forward differences of the gradient and beta's block 2 RX'RX, is
BFGS-updated, and each step is halved until F does not rise (for B's differences and the steps
taken while the decrement is above ``FAR``, PIRLS stops at ``ROUGH_TOL``: F and g are needed
only roughly there, and the predicted modes are often that close already); once the Newton decrement
g'B^-1 g is below ``DECREMENT`` (F within about half of it of the optimum's value) H is computed
there, and the steps go on with it until it asks for none, so the H returned is the one at the
returned optimum.  When theta comes within ``MARGIN`` of a bound (a variance near zero, where
the optimum may be on the bound), B is not positive definite, or the steps stall, the caller
falls back to BOBYQA.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hlm.glmm.gradient import LaplaceGradient
from hlm.glmm.laplace import PIRLS_TOL

if TYPE_CHECKING:
    from hlm.glmm.optimize import Objective

DECREMENT = 1e-10
MARGIN = 1e-2
MAXIT = 30  # steps
MAXEVAL = 60  # evaluations of one descent, halvings included
HESSIAN_STEP = 1e-4  # theta's forward differences in the first B, and the modes' predictor
RELATIVE_STEP = 1e-5  # H's forward differences: this fraction of each parameter's standard error
ROUNDOFF = 1e-13  # relative round-off of F (a sum over the rows): a step that far up is not a failure
ROUGH_TOL = 1e-6  # PIRLS's tolerance where only an approximate F and gradient are needed:
FAR = 1.0  # the first B's differences, and the steps from where the decrement is above FAR
FLOOR = 1e-6  # a decrement this small where F's round-off stops the steps: converged


def _value_gradient(
    obj: Objective, grad: LaplaceGradient, x: np.ndarray, tol: float = PIRLS_TOL
) -> tuple[float, np.ndarray]:
    m = obj.modes(x, tol)
    if not np.isfinite(m.deviance):
        return np.inf, np.full(len(x), np.nan)
    theta, _, fam = obj.split(x)
    return m.deviance, grad(fam, theta, m)


def gradient_hessian(
    obj: Objective,
    grad: LaplaceGradient,
    x: np.ndarray,
    steps: np.ndarray,
    at: tuple[float, np.ndarray] | None = None,
) -> tuple[float, np.ndarray, np.ndarray]:
    """F(x), its gradient (``at``: already known) and H by forward differences of the gradient
    with the given steps (module docstring).  PIRLS starts from the last modes, h_j away: one
    Newton step from there is as good as from a linear prediction, which would cost a chord
    step per column to set up."""
    obj.predictor = None
    obj.keep(x)
    f, g = _value_gradient(obj, grad, x) if at is None else at
    H = np.array([(_value_gradient(obj, grad, x + h * e)[1] - g) / h for h, e in zip(steps, np.eye(len(x)))])
    return f, g, (H + H.T) / 2.0


def _inside(x: np.ndarray, lower: np.ndarray) -> bool:
    return bool(np.all(x - lower > MARGIN))


def _start_hessian(
    obj: Objective, grad: LaplaceGradient, x0: np.ndarray, g0: np.ndarray, rx: np.ndarray, h: float
) -> np.ndarray:
    """An approximate H at x0 for the first steps: theta's columns by forward differences of the
    gradient (one evaluation per theta entry), beta's block 2 RX'RX of the fast stage's joint system
    (the curvature of D in beta; the log-determinant's is small beside it)."""
    k, p = obj.ntheta, len(rx)
    B = np.zeros((len(x0), len(x0)))
    for t in range(k):
        B[:, t] = (_value_gradient(obj, grad, x0 + h * np.eye(len(x0))[t], ROUGH_TOL)[1] - g0) / h
    B[:k, k:] = B[k:, :k].T
    B[:k, :k] = (B[:k, :k] + B[:k, :k].T) / 2.0
    B[k : k + p, k : k + p] = 2.0 * (rx @ rx.T)
    return B


def _descend(
    obj: Objective, grad: LaplaceGradient, x: np.ndarray, f: float, g: np.ndarray, B: np.ndarray, lower: np.ndarray
) -> tuple[np.ndarray, float, np.ndarray, int] | None:
    """Quasi-Newton steps from x with B (BFGS-updated after each step), halved until F does not
    rise and theta stays ``MARGIN`` inside its bounds, until the decrement g'B^-1 g is below
    DECREMENT: (x, F, gradient, evaluations)."""
    feval, exact = 0, True
    for _ in range(MAXIT):
        try:
            step = np.linalg.solve(B, g)
        except np.linalg.LinAlgError:
            return None
        if not np.all(np.isfinite(step)) or float(g @ step) < 0:
            return None
        if float(g @ step) < DECREMENT and not exact:  # (f, g) there to full accuracy first
            (f, g), feval, exact = _value_gradient(obj, grad, x), feval + 1, True
            continue
        if float(g @ step) < DECREMENT:
            return x, f, g, feval
        tol = ROUGH_TOL if float(g @ step) > FAR else PIRLS_TOL
        t = 1.0
        while True:
            xn = x - t * step
            fn, gn = _value_gradient(obj, grad, xn, tol) if _inside(xn, lower) else (np.inf, g)
            feval += 1
            if fn <= f + ROUNDOFF * max(1.0, abs(f)):
                break
            if feval > MAXEVAL:
                return None
            t /= 2.0
            if t < 1e-3:  # F cannot be lowered: at its round-off floor, or lost
                return (x, f, g, feval) if float(g @ step) < FLOOR else None
        s, y = xn - x, gn - g
        if float(y @ s) > 0:
            Bs = B @ s
            B = B - np.outer(Bs, Bs) / float(s @ Bs) + np.outer(y, y) / float(y @ s)
        x, f, g, exact = xn, fn, gn, tol <= PIRLS_TOL
    return None


def newton_stage(
    obj: Objective, x0: np.ndarray, lower: np.ndarray, rx: np.ndarray
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, int] | None:
    """(x, F(x), gradient, H, evaluations) at the Laplace optimum from the fast stage's x0 and RX
    (rx rx' = RX'RX), or None where the caller must fall back to BOBYQA (module docstring)."""
    if not _inside(x0, lower):
        return None
    grad = LaplaceGradient(obj.pls)
    obj.predict_near(x0, HESSIAN_STEP)
    f, g = _value_gradient(obj, grad, x0)
    B, feval = _start_hessian(obj, grad, x0, g, rx, HESSIAN_STEP), 1 + obj.ntheta
    x = np.array(x0, dtype=float)
    for attempt in range(3):
        went = _descend(obj, grad, x, f, g, B, lower)
        if went is None:
            return None
        moved = not np.array_equal(went[0], x)
        x, f, g, n = went
        feval += n
        if attempt > 0 and not moved:  # B is H at x, and x needs no step by it
            return x, f, g, B, feval
        f, g, B = gradient_hessian(obj, grad, x, RELATIVE_STEP * np.sqrt(2.0 * np.diag(np.linalg.inv(B))), (f, g))
        feval += len(x) + 1
    return None
