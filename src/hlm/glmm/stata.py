"""Stata's GLMM commands: ``melogit``, ``meprobit``, ``mecloglog``, ``mepoisson``, ``menbreg``
and ``meglm ..., family(...) link(...)``.  The command and its GLMM options (``exposure(t)``,
``offset(v)``, ``family()``, ``link()``, the display options ``or`` and ``irr`` -- kept for the
Stata table, see :mod:`hlm.report.stata_glmm`) and the integration options are read here;
what remains is ``mixed`` syntax for :func:`hlm.spec.parse_stata`.  Stata fits these by ML with,
by default, 7-point adaptive Gauss-Hermite quadrature: ``laplace`` (or ``intmethod(laplace)``)
asks for the Laplace approximation and ``intpoints(K)`` for K points.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hlm.errors import FormulaError, OptionError

COMMANDS: dict[str, tuple[str, str] | None] = {
    "melogit": ("binomial", "logit"),
    "meprobit": ("binomial", "probit"),
    "mecloglog": ("binomial", "cloglog"),
    "mepoisson": ("poisson", "log"),
    "menbreg": ("negative_binomial", "log"),
    "meglm": None,
}
_MEGLM_FAMILY = {
    "binomial": "binomial",
    "bernoulli": "binomial",
    "poisson": "poisson",
    "nbinomial": "negative_binomial",
}
STATA_POINTS = 7  # Stata's me* default: 7 adaptive points per level
AGQ_NOTE = (
    "integration: adaptive Gauss-Hermite with nodes at each group's mode and curvature (Stata's "
    "intmethod(mcaghermite)); Stata's default mvaghermite centres them at posterior means and "
    "variances, so with few points the two differ slightly; they agree as intpoints() grows"
)
_OPTION = re.compile(r"(\w+)\s*(?:\(([^()]*)\))?")


@dataclass(frozen=True)
class StataGlmm:
    """A GLMM command read: the ``mixed``-syntax model left, family, link, exposure/offset variable."""

    model: str
    family: str
    link: str
    exposure: str | None = None
    offset: str | None = None
    display: str | None = None  # "or" or "irr": the coefficients shown exponentiated
    nagq: int = STATA_POINTS  # quadrature points per level; 1 is Laplace


def command_of(model: object) -> str | None:
    """The GLMM command that ``model`` begins with, or None."""
    if not isinstance(model, str) or "~" in model:
        return None
    m = re.match(r"\s*([A-Za-z_]\w*)\s", model)
    return m.group(1).lower() if m and m.group(1).lower() in COMMANDS else None


def _meglm(options: dict[str, str]) -> tuple[str, str]:
    fam = options.pop("family", "gaussian").strip().lower()
    if fam not in _MEGLM_FAMILY:
        raise FormulaError(f"meglm family({fam}) is not available; use binomial, bernoulli, poisson or nbinomial")
    family = _MEGLM_FAMILY[fam]
    default = "log" if family != "binomial" else "logit"
    return family, options.pop("link", default).strip().lower()


def read_command(text: str) -> StataGlmm:
    """Split a GLMM command line into the ``mixed`` model and the GLMM settings."""
    command = command_of(text)
    if command is None:
        raise FormulaError("a Stata GLMM model begins with melogit, meprobit, mecloglog, mepoisson, menbreg or meglm")
    rest = text[re.match(r"\s*\w+\s", text).end() :]  # type: ignore[union-attr]
    fixed, bar, levels = rest.partition("||")
    body, comma, opts = fixed.partition(",")
    levels, trailing = _global_options(levels)
    opts = f"{opts} {trailing}"
    options: dict[str, str] = {}
    kept: list[str] = []
    display: str | None = None
    for m in _OPTION.finditer(opts):
        name, arg = m.group(1).lower(), m.group(2)
        if name in ("exposure", "offset", "family", "link", "intpoints", "intmethod") and arg is not None:
            options[name] = arg.strip()
        elif name in ("or", "irr") and arg is None:
            display = name
        else:
            kept.append(m.group(0))
    if options.get("exposure") and options.get("offset"):
        raise OptionError("give exposure() or offset(), not both")
    spec = COMMANDS[command]
    family, link = spec if spec is not None else _meglm(options)
    if command != "meglm" and ("family" in options or "link" in options):
        raise FormulaError(f"family() and link() are meglm options; {command} fixes them")
    if display == "or" and (family, link) != ("binomial", "logit"):
        raise OptionError(f"{command}: the or option (odds ratios) is for logit models")
    if display == "irr" and family == "binomial":
        raise OptionError(f"{command}: the irr option (incidence-rate ratios) is for Poisson and nbinomial models")
    laplace = "laplace" in (k.strip().lower() for k in kept)
    kept = [k for k in kept if k.strip().lower() != "laplace"]
    model = body + (", " + " ".join(kept) if kept else "") + (" " + bar + levels if bar else "")
    nagq = _points(options, laplace)
    return StataGlmm(model, family, link, options.get("exposure"), options.get("offset"), display, nagq)


def _global_options(levels: str) -> tuple[str, str]:
    """Stata writes the command's options after the last level (``|| school:, or laplace``):
    those of the GLMM leave that level, whose own options (``covariance()``, ``noconstant``, ...)
    stay.  Returns the levels and the GLMM options found there."""
    head, sep, last = levels.rpartition("||")
    body, comma, opts = last.partition(",")
    if not comma:
        return levels, ""
    ours: list[str] = []
    theirs: list[str] = []
    for m in _OPTION.finditer(opts):
        (ours if m.group(1).lower() in _GLMM_OPTIONS else theirs).append(m.group(0))
    last = body + (", " + " ".join(theirs) if theirs else "")
    return head + sep + last, " ".join(ours)


_GLMM_OPTIONS = ("exposure", "offset", "family", "link", "intpoints", "intmethod", "or", "irr", "laplace")


def _points(options: dict[str, str], laplace: bool) -> int:
    """Quadrature points per level from ``laplace``, ``intmethod()`` and ``intpoints()``: hlm's
    adaptive quadrature is Stata's ``mcaghermite`` (mode and curvature), used also when no
    intmethod() is written (with :data:`AGQ_NOTE` on the fit); an explicit ``mvaghermite`` or
    ``ghermite`` asks for another rule and is refused."""
    method = options.get("intmethod", "laplace" if laplace else "mcaghermite").lower()
    if method in ("lap", "laplace"):
        laplace = True
    elif method not in ("mc", "mca", "mcaghermite"):
        raise OptionError(
            f"intmethod({method}) is not available: hlm's adaptive quadrature places the nodes at the mode and "
            "curvature; write intmethod(mcaghermite), laplace, or no intmethod()"
        )
    if laplace and "intpoints" in options:
        raise OptionError("give laplace or intpoints(), not both")
    if laplace:
        return 1
    points = options.get("intpoints", str(STATA_POINTS))
    if not points.isdigit() or int(points) < 1:
        raise OptionError(f"intpoints() takes a whole number >= 1, not {points!r}")
    return int(points)
