"""Fuzz the model parsers: any string either parses to a ModelSpec or raises an
hlm.HLMError (FormulaError for syntax) -- never another exception.  Strategies: arbitrary
text, and a token soup of both grammars (``~ + | || ( ) : / 1 0 x g , cov( noconstant``)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hlm
from hlm.errors import FormulaError, HLMError
from hlm.spec import ModelSpec, parse_lme4, parse_model, parse_stata

TOKENS = [
    "~",
    "+",
    "-",
    "|",
    "||",
    "(",
    ")",
    ":",
    "/",
    "1",
    "0",
    "x",
    "g",
    "y",
    ",",
    "cov(",
    "cov(un)",
    "cov(independent)",
    "cov(exchangeable)",
    "noconstant",
    "nocons",
    " ",
    "i.",
    "c.",
    "#",
    "##",
    "*",
    "`",
    "_all:",
    "R.",
    "\t",
    "\n",
    "é",
    ".",
    "C(",
    "log(",
    "I(",
    "**2",
    "reml",
    "mle",
    "2x",
    "a.b",
]
SOUP = st.lists(st.sampled_from(TOKENS), max_size=24).map("".join)
SETTINGS = settings(max_examples=1500, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


def _parses_or_formula_error(text: str) -> None:
    for parse in (parse_model, parse_lme4, parse_stata):
        try:
            spec = parse(text)
        except FormulaError as exc:
            assert str(exc)
        else:
            assert isinstance(spec, ModelSpec) and spec.response


@SETTINGS
@given(st.text(max_size=60))
def test_arbitrary_text(text):
    _parses_or_formula_error(text)


@SETTINGS
@given(SOUP)
def test_token_soup(text):
    _parses_or_formula_error(text)


def test_non_strings_refused():
    for bad in (None, 3, ["y ~ x"], b"y ~ x + (1|g)"):
        try:
            parse_model(bad)  # type: ignore[arg-type]
        except FormulaError:
            continue
        raise AssertionError(f"{bad!r} was accepted")


_rng = np.random.default_rng(0)
_FRAME = pd.DataFrame(
    {
        "y": _rng.normal(size=48),
        "x": _rng.normal(size=48),
        "g": np.repeat(np.arange(8), 6),
        "h": np.tile(np.arange(4), 12),
    }
)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(TOKENS[:20] + ["h", "y ~ x + (1|g)", "y x || g:"]), max_size=14).map("".join))
def test_fit_of_token_soup(text):
    """Past the parser too: building the frame and fitting raise HLMError or succeed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            hlm.fit(text, _FRAME)
        except HLMError:
            pass
