"""Stata's sampling-weight syntax in a ``mixed`` model string:
``score ses [pw=w_student] || school:, pweight(w_school) pwscale(size)``.

The ``[pw=...]`` (or ``[pweight=...]``) qualifier gives the level-1 weight; each level's
``pweight(...)`` option its own.  Stata's weights are conditional (w_i|j, w_j|k, ...), and
levels are written outermost first, so hlm's list (observations first) is the qualifier's column
followed by the levels' in reverse.  ``pwscale()`` may follow any level's options."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hlm.errors import FormulaError

_QUALIFIER = re.compile(r"\[\s*(?:pw|pweight)\s*=\s*([A-Za-z_][A-Za-z0-9_]*)\s*\]")
_LEVEL_WEIGHT = re.compile(r"\bpweight\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)")
_SCALE = re.compile(r"\bpwscale\s*\(\s*(\w+)\s*\)")


@dataclass(frozen=True)
class StataWeights:
    model: str  # the model string without the weight syntax
    pweights: list[str]  # observations first
    pwscale: str | None


def _drop_empty_options(segment: str) -> str:
    """Remove a trailing ``,`` left with no options once the weight options are taken out."""
    return re.sub(r",\s*$", "", segment.rstrip())


def stata_weights(text: str) -> StataWeights | None:
    """The sampling weights a Stata model string declares, or None when it declares none."""
    if "||" not in text and "[" not in text:
        return None
    segments = text.split("||")
    qualifiers = _QUALIFIER.findall(segments[0])
    levels = [_LEVEL_WEIGHT.findall(s) for s in segments[1:]]
    scales = [m for s in segments for m in _SCALE.findall(s)]
    if not qualifiers and not any(levels) and not scales:
        return None
    if len(qualifiers) != 1 or any(len(found) != 1 for found in levels):
        raise FormulaError(
            "sampling weights in Stata syntax need one [pw=...] on the fixed part and one pweight(...) per level"
        )
    if len(scales) > 1:
        raise FormulaError("pwscale() given more than once")
    cleaned = [_QUALIFIER.sub("", segments[0])] + [
        _drop_empty_options(_SCALE.sub("", _LEVEL_WEIGHT.sub("", s))) for s in segments[1:]
    ]
    model = " || ".join(s.strip() for s in cleaned)
    return StataWeights(model, [qualifiers[0]] + [f[0] for f in reversed(levels)], scales[0] if scales else None)
