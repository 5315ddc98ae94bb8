"""Generalized linear mixed models (binomial, Poisson, negative binomial): a family beside
:mod:`hlm.lmm` with its own stages -- :mod:`.frame` (model frame), :mod:`.laplace` (PIRLS and
the Laplace deviance), :mod:`.optimize` (BOBYQA, Hessian) and :mod:`.result` (the record).
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any, cast

from hlm.data.source import Backend, choose_backend
from hlm.errors import OptionError, SeparationWarning
from hlm.glmm.agq_nested import nested_chain
from hlm.glmm.collapse import read_glmm_source
from hlm.glmm.family import Family
from hlm.glmm.frame import StataOffset, glmm_frame
from hlm.glmm.optimize import Objective, estimate
from hlm.glmm.result import GlmmResult
from hlm.glmm.separation import separated_terms, separation_message
from hlm.glmm.stata import AGQ_NOTE, command_of, read_command

FAST_NOTE = (
    "nagq=0 (fast): beta is the joint PIRLS mode at theta, not the Laplace optimum; SEs from RX'RX (glmer's nAGQ = 0)"
)


def fit_glmm(
    model: Any,
    data: Any,
    *,
    family: str,
    link: str | None = None,
    nagq: int | None = None,
    reml: bool | None = None,
    offset: Any = None,
    weights: Any = None,
    backend: str = "auto",
    sql: str | None = None,
    con: Any = None,
) -> GlmmResult:
    """Fit a GLMM by maximum likelihood (Laplace for ``nagq=1``, adaptive Gauss-Hermite for
    ``nagq > 1`` with one scalar random term or nested intercepts, glmer's fast ``nAGQ = 0``
    stage only for ``nagq=0``); see :mod:`hlm.glmm.optimize` and :mod:`hlm.glmm.agq_nested`."""
    text = model if isinstance(model, str) else None
    display = None
    if command_of(model) is not None:  # melogit ..., meglm ..., family() link(): ML by Stata's rule
        read = read_command(model)
        if family not in ("gaussian", read.family) or link not in (None, read.link):
            raise OptionError(f"the model's command fits {read.family} ({read.link}); it contradicts family=/link=")
        if nagq not in (None, read.nagq):  # not given: the command's own points stand
            raise OptionError(f"the command integrates with {read.nagq} point(s); it contradicts nagq={nagq}")
        model, family, link, display, nagq = read.model, read.family, read.link, read.display, read.nagq
        exposure = read.exposure or read.offset
        if exposure is not None:
            if offset is not None:
                raise OptionError("give the offset once: in the command's exposure()/offset() or as offset=")
            offset = StataOffset(exposure, log=read.exposure is not None)
    nagq = 1 if nagq is None else nagq
    fam = Family.of(family, link)
    if reml:
        raise OptionError("GLMMs are fitted by maximum likelihood (ML) only; there is no REML for them")
    if not isinstance(nagq, int) or isinstance(nagq, bool) or nagq < 0:
        raise OptionError(f"nagq must be a whole number >= 0, not {nagq!r}")
    engine = choose_backend(data, cast(Backend, backend), sql=sql)
    notes: tuple[str, ...] = (
        () if offset is None else (f"offset: {offset if isinstance(offset, (str, StataOffset)) else 'an array'}",)
    )
    if engine in ("duckdb", "spark"):
        model, data, aggregated, note = read_glmm_source(
            model, data, fam, offset=offset, sql=sql, con=con, engine=engine
        )
        notes += () if note is None else (note,)
        frame = glmm_frame(model, data, fam, offset=offset, weights=weights, aggregated=aggregated)
    else:
        frame = glmm_frame(model, data, fam, offset=offset, weights=weights)
    obj = Objective(fam, frame, nagq)
    if nagq > 1:
        nested_chain(obj.pls.rows, frame.dims)  # one-line refusal unless nested scalar intercepts
    x, summary, H = estimate(obj)
    theta, beta, fam_hat = obj.split(x)
    if nagq == 0:
        notes += (FAST_NOTE,)
    if text is not None and command_of(text) is not None and nagq > 1:  # Stata's me* commands
        notes += (AGQ_NOTE,)
    spec = frame.spec if text is None else replace(frame.spec, text=text)
    modes = obj.modes(x)
    modes = replace(modes, eta=obj.pls.frame_eta(modes))
    separated = separated_terms(fam_hat, frame, beta)
    if separated:
        warnings.warn(separation_message(separated), SeparationWarning, stacklevel=3)
    return GlmmResult(spec, fam_hat, nagq, frame, x, summary, H, modes, notes, separation=separated, display=display)
