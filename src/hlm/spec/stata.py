"""Parse Stata ``mixed`` syntax.

``depvar [indepvars] [, noconstant] || level1: [varlist] [, noconstant cov(unstructured)] || level2: ...``

Levels are listed outermost first and each later level is nested in the earlier ones, so a
level's ids are read within its parent (the grouping factor is the interaction of the
level's variable with all earlier levels' variables), as ``mixed`` does.  Random terms are
named by the level variable.  ``i.x`` becomes ``C(x)``, ``a#b`` ``a:b`` and ``a##b`` ``a*b``.
``_all: R.x`` (crossed effects by Stata's trick) is not supported; write crossed models in
lme4 syntax.
"""

from __future__ import annotations

import re

from hlm.errors import FormulaError
from hlm.spec.terms import ModelSpec, RandomTerm

_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_COV = re.compile(r"^cov(a|ar|ari|aria|arian|arianc|ariance)?\((\w+)\)$")
_COV_KINDS = {"unstructured": True, "un": True, "independent": False, "ind": False,
              "identity": False, "id": False}


def _translate_var(token: str, text: str, pos: int) -> str:
    """Stata factor-variable notation -> formulaic."""
    if "##" in token:
        return "*".join(_translate_var(t, text, pos) for t in token.split("##"))
    if "#" in token:
        return ":".join(_translate_var(t, text, pos) for t in token.split("#"))
    lowered = token.lower()
    if lowered.startswith("i."):
        return f"C({_check_var(token[2:], text, pos)})"
    if lowered.startswith("c."):
        return _check_var(token[2:], text, pos)
    return _check_var(token, text, pos)


def _check_var(token: str, text: str, pos: int) -> str:
    if not _VAR.match(token):
        raise FormulaError(f"'{token}' is not a Stata variable name", text, pos)
    return token


def _tokens(segment: str, offset: int) -> list[tuple[str, int]]:
    return [(m.group(), offset + m.start()) for m in re.finditer(r"\S+", segment)]


def _options(segment: str, offset: int, text: str) -> tuple[bool, bool | None]:
    """Parse ``, noconstant cov(...)``: (noconstant, correlated or None if not given)."""
    noconstant, correlated = False, None
    for token, pos in _tokens(segment, offset):
        low = token.lower()
        if low in ("nocons", "noconst", "noconstant", "nocon"):
            noconstant = True
        elif (m := _COV.match(low)) is not None:
            kind = m.group(2)
            if kind not in _COV_KINDS:
                raise FormulaError(
                    f"cov({kind}) is not supported; use cov(unstructured) or cov(independent)", text, pos
                )
            correlated = _COV_KINDS[kind]
        elif low in ("reml", "mle", "ml", "stddeviations", "variance"):
            continue  # estimation/display options handled by the caller's keywords
        else:
            raise FormulaError(f"unknown option '{token}'; known: noconstant, cov(unstructured|independent)", text, pos)
    return noconstant, correlated


def _split_options(segment: str, offset: int) -> tuple[str, int, str | None, int]:
    if "," in segment:
        at = segment.index(",")
        return segment[:at], offset, segment[at + 1 :], offset + at + 1
    return segment, offset, None, 0


def parse_stata(text: str) -> ModelSpec:
    """Parse ``depvar indepvars || lev1: [vars] [, opts] || lev2: ...``."""
    if not isinstance(text, str) or not text.strip():
        raise FormulaError("the model is empty; write it as 'y x || group:'")
    parts: list[tuple[str, int]] = []
    start = 0
    for m in re.finditer(r"\|\|", text):
        parts.append((text[start : m.start()], start))
        start = m.end()
    parts.append((text[start:], start))
    if re.search(r"(?<!\|)\|(?!\|)", text):
        pos = re.search(r"(?<!\|)\|(?!\|)", text).start()  # type: ignore[union-attr]
        raise FormulaError("Stata syntax separates levels with '||'", text, pos)

    fixed_seg, fpos = parts[0]
    body, bpos, opts, opos = _split_options(fixed_seg, fpos)
    tokens = _tokens(body, bpos)
    if not tokens:
        raise FormulaError("missing dependent variable before '||'", text, fpos)
    response = _check_var(tokens[0][0], text, tokens[0][1])
    fixed = [_translate_var(t, text, p) for t, p in tokens[1:]]
    noconstant = False
    if opts is not None:
        noconstant, cov = _options(opts, opos, text)
        if cov is not None:
            raise FormulaError("cov() belongs to a random-effects level, after 'level:'", text, opos)
    fixed_rhs = " + ".join((["0"] if noconstant else []) + fixed) or "1"

    random: list[RandomTerm] = []
    path: list[str] = []
    for seg, spos in parts[1:]:
        if ":" not in seg:
            raise FormulaError("a level needs a colon: '|| level_var: [slopes]'", text, spos + len(seg.rstrip()))
        colon = seg.index(":")
        level = seg[:colon].strip()
        lpos = spos + len(seg[:colon]) - len(seg[:colon].lstrip())
        if not level:
            raise FormulaError("missing level variable before ':'", text, spos + colon)
        if level.lower() == "_all":
            raise FormulaError("'_all: R.x' crossed effects are not supported; use lme4 syntax '(1|a) + (1|b)'", text, lpos)
        _check_var(level, text, lpos)
        if level in path:
            raise FormulaError(f"level '{level}' is listed twice", text, lpos)
        path.append(level)
        body, bpos, opts, opos = _split_options(seg[colon + 1 :], spos + colon + 1)
        slopes = tuple(_translate_var(t, text, p) for t, p in _tokens(body, bpos))
        noconst, correlated = (False, None) if opts is None else _options(opts, opos, text)
        if noconst and not slopes:
            raise FormulaError("noconstant leaves this level with no random effects", text, opos)
        if correlated is None:
            correlated = False  # Stata's default covariance is independent
        group = tuple(path)
        if correlated or len(slopes) + (not noconst) == 1:
            random.append(RandomTerm(slopes, not noconst, group, level))
        else:
            # cov(independent): Stata lists slopes before _cons; lme4 order is intercept first
            if not noconst:
                random.append(RandomTerm((), True, group, level))
            random.extend(RandomTerm((s,), False, group, level) for s in slopes)
    return ModelSpec(text=text, response=response, fixed=fixed_rhs, random=tuple(random), syntax="stata")
