"""Generalized linear mixed models (binomial, Poisson, negative binomial): a family beside
:mod:`hlm.lmm` with its own stages -- :mod:`.frame` (model frame), :mod:`.laplace` (PIRLS and
the Laplace deviance), :mod:`.optimize` (BOBYQA, Hessian) and :mod:`.result` (the record).
"""

from __future__ import annotations

from typing import Any

from hlm.errors import OptionError
from hlm.glmm.family import Family
from hlm.glmm.frame import glmm_frame
from hlm.glmm.optimize import Objective, optimize
from hlm.glmm.result import GlmmResult


def fit_glmm(
    model: Any,
    data: Any,
    *,
    family: str,
    link: str | None = None,
    nagq: int = 1,
    reml: bool | None = None,
    offset: Any = None,
    weights: Any = None,
    backend: str = "auto",
) -> GlmmResult:
    """Fit a GLMM by maximum likelihood (Laplace for ``nagq=1``, adaptive Gauss-Hermite for
    ``nagq > 1`` with one scalar random term); see :mod:`hlm.glmm.optimize`."""
    fam = Family.of(family, link)
    if reml:
        raise OptionError("GLMMs are fitted by maximum likelihood (ML) only; there is no REML for them")
    if backend not in ("auto", "memory"):
        raise OptionError(f"GLMMs are fitted in memory for now; backend={backend!r} is not available for them")
    if not isinstance(nagq, int) or isinstance(nagq, bool) or nagq < 1:
        raise OptionError(f"nagq must be a whole number >= 1, not {nagq!r} (nagq=0 is not available yet)")
    frame = glmm_frame(model, data, fam, offset=offset, weights=weights)
    if nagq > 1 and len(frame.blocks) != 1:
        raise OptionError("nagq > 1 needs exactly one scalar random term (1 | g); use nagq=1 (Laplace)")
    obj = Objective(fam, frame, nagq)
    x, summary, H = optimize(obj)
    theta, beta, fam_hat = obj.split(x)
    notes = () if offset is None else (f"offset: {offset if isinstance(offset, str) else 'an array'}",)
    return GlmmResult(frame.spec, fam_hat, nagq, frame, x, summary, H, obj.modes(x), notes)
