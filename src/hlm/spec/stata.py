"""Parse Stata ``mixed`` syntax.

``[mixed|xtmixed] depvar [indepvars] [, noconstant] || level1: [varlist] [, noconstant cov(...)]
|| level2: ... [, mle|reml]``

* A leading command sets the default criterion as Stata does: ``mixed`` ML (Stata 13+),
  ``xtmixed`` REML (Stata 12); without one the caller's default (REML) applies.  The
  estimation options ``mle``/``ml`` and ``reml`` may end the fixed part or the last level.
  ``xtreg`` and the GLMM commands are refused with a pointer to what fits them.
* Levels are listed outermost first and each later level is nested in the earlier ones, so
  a level's ids are read within its parent (the grouping factor is the interaction of the
  level's variable with all earlier levels' variables), as ``mixed`` does.
* ``cov(independent)`` (the default), ``cov(unstructured)``, ``cov(identity)`` (one shared
  variance) and ``cov(exchangeable)`` (one variance and one covariance).
* Factor variables (``i.a``, ``ib2.a``, ``c.x##c.x``, ...) are expanded as Stata does, see
  :mod:`hlm.spec.factor_variables`.
* ``_all: R.x`` (crossed effects by Stata's trick) is not supported; write crossed models
  in lme4 syntax.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hlm.errors import FormulaError
from hlm.spec.factor_variables import check_var, expand, fixed_terms, term_formula
from hlm.spec.terms import CovKind, ModelSpec, RandomTerm

_COV = re.compile(r"^cov(a|ar|ari|aria|arian|arianc|ariance)?\((\w+)\)$")
_COV_KINDS: dict[str, tuple[int, CovKind | None]] = {  # name: (shortest abbreviation, kind)
    "unstructured": (2, "unstructured"),
    "independent": (3, None),
    "identity": (2, "identity"),
    "exchangeable": (2, "exchangeable"),
}


def _cov_kind(word: str) -> tuple[bool, CovKind | None]:
    """Stata's ``cov()`` argument, abbreviated down to un, ind, id, ex: (known, kind)."""
    for name, (shortest, kind) in _COV_KINDS.items():
        if len(word) >= shortest and name.startswith(word):
            return True, kind
    return False, None


_ESTIMATION = {"reml": True, "mle": False, "ml": False}
_NOCONS = ("nocons", "noconst", "noconstant", "nocon")

COMMAND_REML = {"mixed": False, "xtmixed": True}
"""The criterion each supported leading command defaults to (True: REML)."""
_LATER = (
    "melogit",
    "meqrlogit",
    "mepoisson",
    "meqrpoisson",
    "meglm",
    "menbreg",
    "meprobit",
    "mecloglog",
    "meologit",
    "meoprobit",
    "mestreg",
    "metobit",
    "meintreg",
    "xtmelogit",
    "xtmepoisson",
    "gsem",
    "xtlogit",
    "xtprobit",
    "xtpoisson",
    "xtnbreg",
    "xtgee",
    "regress",
)


def split_command(text: str) -> tuple[str | None, int]:
    """The leading Stata command of ``text`` (lower case) and where the model after it starts.

    ``mixed``/``xtmixed``/``xtreg`` are returned; a GLMM or other estimation command is
    refused (not yet supported); anything else is no command (``(None, 0)``)."""
    m = re.match(r"\s*([A-Za-z_]\w*)\s+", text)
    if m is None:
        return None, 0
    word = m.group(1).lower()
    if word in COMMAND_REML or word == "xtreg":
        return word, m.end()
    if word in ("melogit", "meprobit", "mecloglog", "mepoisson", "menbreg", "meglm"):
        raise FormulaError(f"'{word}' is a GLMM command: fit it with hlm.fit (or 'hlm fit'), which reads it")
    if word in _LATER:
        raise FormulaError(
            f"'{word}' is not supported yet: hlm fits linear mixed models (mixed, xtmixed) and xtreg (hlm.xtreg)"
        )
    return None, 0


def _tokens(segment: str, offset: int) -> list[tuple[str, int]]:
    return [(m.group(), offset + m.start()) for m in re.finditer(r"\S+", segment)]


@dataclass(frozen=True)
class _Options:
    noconstant: bool = False
    cov: CovKind | None = None  # None: independent (Stata's default)
    cov_given: bool = False
    reml: bool | None = None  # the estimation option, if any
    reml_pos: int = 0


def _options(segment: str, offset: int, text: str) -> _Options:
    """Parse ``, noconstant cov(...) mle|reml``."""
    noconstant, cov, cov_given, reml, reml_pos = False, None, False, None, 0
    for token, pos in _tokens(segment, offset):
        low = token.lower()
        if low in _NOCONS:
            noconstant = True
        elif (m := _COV.match(low)) is not None:
            known, cov = _cov_kind(m.group(2))
            if not known:
                raise FormulaError(
                    f"cov({m.group(2)}) is not supported; use cov(independent), cov(unstructured), "
                    "cov(identity) or cov(exchangeable)",
                    text,
                    pos,
                )
            cov_given = True
        elif low in _ESTIMATION:
            if reml is not None and reml != _ESTIMATION[low]:
                raise FormulaError("both mle and reml are given; choose one", text, pos)
            reml, reml_pos = _ESTIMATION[low], pos
        elif low in ("stddeviations", "variance"):
            continue  # display options: hlm's tables show standard deviations
        else:
            raise FormulaError(f"unknown option '{token}'; known: noconstant, cov(...), mle, reml", text, pos)
    return _Options(noconstant, cov, cov_given, reml, reml_pos)


def _split_options(segment: str, offset: int) -> tuple[str, int, str | None, int]:
    if "," in segment:
        at = segment.index(",")
        return segment[:at], offset, segment[at + 1 :], offset + at + 1
    return segment, offset, None, 0


def _level_terms(slopes: tuple[str, ...], opts: _Options, group: tuple[str, ...], level: str) -> list[RandomTerm]:
    """The random terms of one level: one term (unstructured, identity, exchangeable) or,
    for cov(independent), one term per effect (intercept first, lme4's order)."""
    intercept = not opts.noconstant
    if opts.cov is not None and (len(slopes) + intercept > 1 or opts.cov == "unstructured"):
        return [RandomTerm(slopes, intercept, group, level, opts.cov)]
    if len(slopes) + intercept == 1:
        return [RandomTerm(slopes, intercept, group, level)]
    return ([RandomTerm((), True, group, level)] if intercept else []) + [
        RandomTerm((s,), False, group, level) for s in slopes
    ]


def parse_stata(text: str) -> ModelSpec:
    """Parse ``[mixed|xtmixed] depvar indepvars || lev1: [vars] [, opts] || lev2: ... [, mle|reml]``."""
    if not isinstance(text, str) or not text.strip():
        raise FormulaError("the model is empty; write it as 'y x || group:'")
    command, begin = split_command(text)
    if command == "xtreg":
        raise FormulaError("xtreg is a panel regression: use hlm.xtreg (or 'hlm xtreg' in the shell)")
    if re.search(r"(?<!\|)\|(?!\|)", text):
        pos = re.search(r"(?<!\|)\|(?!\|)", text).start()  # type: ignore[union-attr]
        raise FormulaError("Stata syntax separates levels with '||'", text, pos)
    parts: list[tuple[str, int]] = []
    start = begin
    for m in re.finditer(r"\|\|", text):
        parts.append((text[start : m.start()], start))
        start = m.end()
    parts.append((text[start:], start))

    fixed_seg, fpos = parts[0]
    body, bpos, opts_text, opos = _split_options(fixed_seg, fpos)
    tokens = _tokens(body, bpos)
    if not tokens:
        raise FormulaError("missing dependent variable before '||'", text, fpos)
    response = check_var(tokens[0][0], text, tokens[0][1])
    fopts = _Options() if opts_text is None else _options(opts_text, opos, text)
    if fopts.cov_given:
        raise FormulaError("cov() belongs to a random-effects level, after 'level:'", text, opos)
    fixed = fixed_terms(tokens[1:], fopts.noconstant, text)
    fixed_rhs = " + ".join((["0"] if fopts.noconstant else []) + fixed) or "1"
    estimation = [(fopts.reml, fopts.reml_pos)] if fopts.reml is not None else []

    random: list[RandomTerm] = []
    path: list[str] = []
    for n, (seg, spos) in enumerate(parts[1:], start=1):
        if ":" not in seg:
            raise FormulaError("a level needs a colon: '|| level_var: [slopes]'", text, spos + len(seg.rstrip()))
        colon = seg.index(":")
        level = seg[:colon].strip()
        lpos = spos + len(seg[:colon]) - len(seg[:colon].lstrip())
        if not level:
            raise FormulaError("missing level variable before ':'", text, spos + colon)
        if level.lower() == "_all":
            raise FormulaError(
                "'_all: R.x' crossed effects are not supported; use lme4 syntax '(1|a) + (1|b)'", text, lpos
            )
        check_var(level, text, lpos)
        if level in path:
            raise FormulaError(f"level '{level}' is listed twice", text, lpos)
        path.append(level)
        body, bpos, opts_text, opos = _split_options(seg[colon + 1 :], spos + colon + 1)
        slopes = tuple(term_formula(t) for tok, p in _tokens(body, bpos) for t in expand(tok, text, p))
        opts = _Options() if opts_text is None else _options(opts_text, opos, text)
        if opts.reml is not None:
            if n != len(parts) - 1:
                raise FormulaError(
                    "mle/reml are estimation options: put them after the last level", text, opts.reml_pos
                )
            estimation.append((opts.reml, opts.reml_pos))
        if opts.noconstant and not slopes:
            raise FormulaError("noconstant leaves this level with no random effects", text, opos)
        random.extend(_level_terms(tuple(dict.fromkeys(slopes)), opts, tuple(path), level))
    if len({r for r, _ in estimation}) > 1:
        raise FormulaError("both mle and reml are given; choose one", text, estimation[-1][1])
    reml = estimation[0][0] if estimation else COMMAND_REML.get(command or "")
    return ModelSpec(
        text=text, response=response, fixed=fixed_rhs, random=tuple(random), syntax="stata", reml=reml, command=command
    )
