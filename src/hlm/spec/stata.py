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
* Factor variables are expanded as Stata does (see :func:`_expand`): ``i.a`` is a factor
  (base: the lowest level; ``ib2.a`` base 2, ``ib(first).a``; ``ibn.a`` no base, with
  ``noconstant``), ``c.x`` continuous; in ``a#b`` an unprefixed variable is a factor;
  ``c.x#c.x`` is x^2 and ``A##B`` all the interactions of the subsets of A and B.
* ``_all: R.x`` (crossed effects by Stata's trick) is not supported; write crossed models
  in lme4 syntax.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hlm.errors import DataError, FormulaError
from hlm.spec.terms import CovKind, ModelSpec, RandomTerm

if TYPE_CHECKING:
    import pandas as pd

_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_COV = re.compile(r"^cov(a|ar|ari|aria|arian|arianc|ariance)?\((\w+)\)$")
_COV_KINDS: dict[str, tuple[int, CovKind | None]] = {  # name: (shortest abbreviation, kind)
    "unstructured": (2, "unstructured"), "independent": (3, None), "identity": (2, "identity"),
    "exchangeable": (2, "exchangeable")}


def _cov_kind(word: str) -> tuple[bool, CovKind | None]:
    """Stata's ``cov()`` argument, abbreviated down to un, ind, id, ex: (known, kind)."""
    for name, (shortest, kind) in _COV_KINDS.items():
        if len(word) >= shortest and name.startswith(word):
            return True, kind
    return False, None
_ESTIMATION = {"reml": True, "mle": False, "ml": False}
_NOCONS = ("nocons", "noconst", "noconstant", "nocon")
_FACTOR = re.compile(r"^(?:(?P<c>c)|i(?:b(?:(?P<bn>n)|(?P<num>\d+)|\((?P<paren>[^)]*)\))?)?)\.(?P<var>.*)$", re.I)

COMMAND_REML = {"mixed": False, "xtmixed": True}
"""The criterion each supported leading command defaults to (True: REML)."""
_LATER = ("melogit", "meqrlogit", "mepoisson", "meqrpoisson", "meglm", "menbreg", "meprobit", "mecloglog",
          "meologit", "meoprobit", "mestreg", "metobit", "meintreg", "xtmelogit", "xtmepoisson", "gsem",
          "xtlogit", "xtprobit", "xtpoisson", "xtnbreg", "xtgee", "regress", "reg", "logit", "probit", "poisson")


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
    if word in _LATER:
        raise FormulaError(f"'{word}' is not supported yet: hlm fits linear mixed models (mixed, xtmixed) "
                           "and xtreg (hlm.xtreg)")
    return None, 0


def _check_var(token: str, text: str, pos: int) -> str:
    if not _VAR.match(token):
        raise FormulaError(f"'{token}' is not a Stata variable name", text, pos)
    return token


@dataclass(frozen=True)
class _Factor:
    """One variable of an interaction: continuous, or a factor with its base choice."""

    var: str
    continuous: bool
    base: str | None = None  # None: the lowest level; "none": ibn.; else a level value

    @property
    def formulaic(self) -> str:
        if self.base is None:
            return f"C({self.var})"
        if self.base == "none":
            return f"C({self.var}, spans_intercept=False)"
        return f"C({self.var}, contr.treatment(base={self.base}))"


def _factor(token: str, in_interaction: bool, text: str, pos: int) -> _Factor:
    """``x``, ``c.x``, ``i.x``, ``ib2.x``, ``ib(first).x``, ``ibn.x`` -> :class:`_Factor`."""
    m = _FACTOR.match(token)
    if m is None:  # no operator: a factor inside an interaction, continuous alone (Stata's rule)
        return _Factor(_check_var(token, text, pos), continuous=not in_interaction)
    var = _check_var(m.group("var"), text, pos)
    if m.group("c"):
        return _Factor(var, continuous=True)
    if m.group("bn"):
        return _Factor(var, False, "none")
    if m.group("num"):
        return _Factor(var, False, str(int(m.group("num"))))
    paren = m.group("paren")
    if paren is None or paren.lower() == "first":
        return _Factor(var, False)
    raise FormulaError(f"ib({paren}). is not supported; name the base level's value (ib2.{var}) or use "
                       f"ib(first).{var}", text, pos)


def _term(factors: tuple[_Factor, ...], text: str, pos: int) -> tuple[tuple[_Factor, ...], tuple[str, ...]]:
    """One ``#`` interaction -> (its factor variables, its continuous variables with repeats)."""
    fvs = tuple(f for f in factors if not f.continuous)
    if len({f.var for f in fvs}) < len(fvs):
        raise FormulaError("a factor variable cannot be interacted with itself", text, pos)
    return fvs, tuple(sorted(f.var for f in factors if f.continuous))


def _formulaic(term: tuple[tuple[_Factor, ...], tuple[str, ...]]) -> str:
    """A term as formulaic: factors ``C(a)``, each continuous variable once with its power
    (``c.x#c.x`` -> ``I(x ** 2)``), joined by ``:``."""
    fvs, cont = term
    powers = [(v, cont.count(v)) for v in dict.fromkeys(cont)]
    parts = [f.formulaic for f in fvs] + [v if k == 1 else f"I({v} ** {k})" for v, k in powers]
    return ":".join(parts)


def _expand(token: str, text: str, pos: int) -> list[tuple[tuple[_Factor, ...], tuple[str, ...]]]:
    """Stata's expansion of one token: ``A##B`` -> every non-empty subset of {A, B} as an
    interaction (``c.x##c.x`` -> x and x^2), ``A#B`` -> the interaction alone."""
    groups = token.split("##")
    if any(not g for g in groups) or any(not e for g in groups for e in g.split("#")):
        raise FormulaError(f"'{token}' is not a Stata variable list term", text, pos)
    interaction = "#" in token
    members = [tuple(_factor(e, interaction, text, pos) for e in g.split("#")) for g in groups]
    out = []
    for k in range(1, len(members) + 1):
        for subset in itertools.combinations(members, k):
            out.append(_term(tuple(f for g in subset for f in g), text, pos))
    return out


def _fixed_terms(tokens: list[tuple[str, int]], noconstant: bool, text: str) -> list[str]:
    """The fixed part as formulaic terms, refusing what formulaic would code differently
    from Stata: ``i.a#i.b`` without both main effects (Stata codes cells against the base
    cell), a main effect ``i.x`` without a constant (Stata keeps the base out; write
    ``ibn.x``) and ``ibn.x`` with one."""
    terms: list[tuple[tuple[_Factor, ...], tuple[str, ...]]] = []
    where: list[int] = []
    for token, pos in tokens:
        for term in _expand(token, text, pos):
            if term not in terms:
                terms.append(term)
                where.append(pos)
    present = set(terms)
    for (fvs, cont), pos in zip(terms, where):
        if len(fvs) > 1 and any((tuple(g for g in fvs if g != f), cont) not in present for f in fvs):
            names = "##".join(f"i.{f.var}" for f in fvs)
            raise FormulaError(f"an interaction of factor variables needs its main effects; write {names}", text, pos)
        for f in fvs if len(fvs) == 1 and not cont else ():  # a factor's main effect
            if noconstant and f.base != "none":
                raise FormulaError(f"with noconstant, Stata keeps the base level of {f.var} out of the model; "
                                   f"write ibn.{f.var} for every level, or keep the constant", text, pos)
            if not noconstant and f.base == "none":
                raise FormulaError(f"ibn.{f.var} (no base level) needs noconstant", text, pos)
    return [_formulaic(t) for t in terms]


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
                raise FormulaError(f"cov({m.group(2)}) is not supported; use cov(independent), cov(unstructured), "
                                   "cov(identity) or cov(exchangeable)", text, pos)
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
    return ([RandomTerm((), True, group, level)] if intercept else []) + \
        [RandomTerm((s,), False, group, level) for s in slopes]


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
    response = _check_var(tokens[0][0], text, tokens[0][1])
    fopts = _Options() if opts_text is None else _options(opts_text, opos, text)
    if fopts.cov_given:
        raise FormulaError("cov() belongs to a random-effects level, after 'level:'", text, opos)
    fixed = _fixed_terms(tokens[1:], fopts.noconstant, text)
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
            raise FormulaError("'_all: R.x' crossed effects are not supported; use lme4 syntax '(1|a) + (1|b)'", text, lpos)
        _check_var(level, text, lpos)
        if level in path:
            raise FormulaError(f"level '{level}' is listed twice", text, lpos)
        path.append(level)
        body, bpos, opts_text, opos = _split_options(seg[colon + 1 :], spos + colon + 1)
        slopes = tuple(_formulaic(t) for tok, p in _tokens(body, bpos) for t in _expand(tok, text, p))
        opts = _Options() if opts_text is None else _options(opts_text, opos, text)
        if opts.reml is not None:
            if n != len(parts) - 1:
                raise FormulaError("mle/reml are estimation options: put them after the last level", text,
                                   opts.reml_pos)
            estimation.append((opts.reml, opts.reml_pos))
        if opts.noconstant and not slopes:
            raise FormulaError("noconstant leaves this level with no random effects", text, opos)
        random.extend(_level_terms(tuple(dict.fromkeys(slopes)), opts, tuple(path), level))
    if len({r for r, _ in estimation}) > 1:
        raise FormulaError("both mle and reml are given; choose one", text, estimation[-1][1])
    reml = estimation[0][0] if estimation else COMMAND_REML.get(command or "")
    return ModelSpec(text=text, response=response, fixed=fixed_rhs, random=tuple(random), syntax="stata",
                     reml=reml, command=command)


_PART = re.compile(r"(?P<fv>C\((?P<var>\w+)[^\[]*\)\[(?:T\.)?(?P<level>.*?)\])(?=:|$)|"
                   r"(?P<pow>I\((?P<pvar>\w+) \*\* (?P<k>\d+)\))(?=:|$)|(?P<plain>[^:]+)(?=:|$)")


def _level_label(level: str, var: str) -> str:
    """Stata's label of a factor level: ``2.arm`` for a number, ``arm=high`` for a value label."""
    try:
        value = float(level)
    except ValueError:
        return f"{var}={level}"
    return f"{int(value)}.{var}" if value.is_integer() else f"{level}.{var}"


def stata_column_name(name: str) -> str:
    """A formulaic column name of a Stata model -> Stata's: ``C(arm)[T.2]`` -> ``2.arm``,
    ``C(a)[1]:x`` -> ``1.a#c.x``, ``I(x ** 2)`` -> ``c.x#c.x``, ``Intercept`` -> ``_cons``."""
    if name == "Intercept":
        return "_cons"
    parts = [m for m in _PART.finditer(name) if m.group()]
    if "".join(m.group() for m in parts) != name.replace(":", ""):
        return name  # not a name this module wrote
    single = len(parts) == 1
    out = []
    for m in parts:
        if m.group("fv"):
            out.append(_level_label(m.group("level"), m.group("var")))
        elif m.group("pow"):
            out.append("#".join([f"c.{m.group('pvar')}"] * int(m.group("k"))))
        else:
            out.append(m.group("plain") if single else f"c.{m.group('plain')}")
    return "#".join(out)


def check_factor_values(spec: ModelSpec, frame: "pd.DataFrame") -> None:
    """Stata's rule for factor variables: nonnegative integers (or value-labelled categories).
    A continuous column written as ``i.x`` would otherwise become one dummy per distinct value."""
    rhs = " ".join([spec.fixed] + [t.rhs for t in spec.random])
    for var in dict.fromkeys(re.findall(r"C\((\w+)", rhs)):
        if var not in frame.columns or frame[var].dtype.kind not in "fiu":
            continue
        values = frame[var].to_numpy(dtype=float)
        if (values < 0).any() or (values != np.round(values)).any():
            raise DataError(f"factor variable {var} has negative or noninteger values (Stata's rule); use c.{var} "
                            "for a continuous effect, or recode it")
