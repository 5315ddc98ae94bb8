"""Separation: a fixed effect whose maximum-likelihood estimate is infinite.

The log-likelihood increases without bound along a direction d of beta when X d never
lowers the fit of any row and raises it somewhere: for the binomial X_i d >= 0 where every
trial succeeded, <= 0 where none did and = 0 where some did; for counts X_i d <= 0 where
y_i = 0 and = 0 elsewhere (Albert & Anderson 1984).  The random effects cannot stop it: the
conditional likelihood of every u increases along d, so the marginal one does.  Such a d is
found by the linear program  max sum_i s_i X_i d  subject to those signs and -1 <= d <= 1
(s_i the sign a row allows), over the distinct (X row, class) patterns; d's non-zero entries
name the terms that run off.  The program runs only when the fitted fixed part X beta reaches
|8| in some row: along such a direction the optimizer stops far out, where the likelihood is
flat, so a separated fit always gets there.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from hlm.glmm.family import Family
from hlm.glmm.frame import GlmmFrame

ETA_TRIGGER = 8.0
_TOL = 1e-6  # the LP's optimum above this (X scaled to max |x| = 1) is a separating direction


def separated_terms(family: Family, frame: GlmmFrame, beta: np.ndarray) -> tuple[str, ...]:
    """The fixed-effect terms running off to +-infinity (empty when the MLE is finite)."""
    X = frame.X
    if X.shape[1] == 0 or float(np.max(np.abs(X @ beta), initial=0.0)) < ETA_TRIGGER:
        return ()
    top = frame.n if family.name == "binomial" else np.full(len(frame.y), np.inf)
    sign = np.where(frame.y == 0, -1.0, np.where(frame.y == top, 1.0, 0.0))
    scale = np.maximum(np.max(np.abs(X), axis=0), 1e-300)
    patterns = np.unique(np.column_stack([X / scale, sign]), axis=0)
    Xs, s = patterns[:, :-1], patterns[:, -1]
    free, fixed = s != 0, s == 0
    res = optimize.linprog(
        -(s[free, None] * Xs[free]).sum(axis=0),
        A_ub=-(s[free, None] * Xs[free]) if free.any() else None,
        b_ub=np.zeros(int(free.sum())) if free.any() else None,
        A_eq=Xs[fixed] if fixed.any() else None,
        b_eq=np.zeros(int(fixed.sum())) if fixed.any() else None,
        bounds=[(-1.0, 1.0)] * Xs.shape[1],
        method="highs",
    )
    if res.status != 0 or -res.fun <= _TOL:
        return ()
    return tuple(name for name, dj in zip(frame.xnames, res.x) if abs(dj) > _TOL)


def separation_message(terms: tuple[str, ...]) -> str:
    """The one-line warning naming the terms."""
    many = len(terms) > 1
    it, its = ("them", "their") if many else ("it", "its")
    return (
        f"separation: the estimate{'s' if many else ''} of {', '.join(terms)} run{'' if many else 's'} off to "
        f"+-infinity (the outcome is perfectly predicted by {it}); {its} estimate and SE are not finite "
        f"maximum-likelihood values: drop or merge {it}, or use a penalized fit"
    )
