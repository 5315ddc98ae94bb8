"""Model-string parsing: lme4 formulas and Stata syntax give the same ModelSpec terms."""

from __future__ import annotations

import pytest

from hlm.errors import FormulaError
from hlm.spec import parse_model
from hlm.spec.terms import RandomTerm


def test_correlated_slope():
    spec = parse_model("y ~ x + (x | g)")
    assert spec.response == "y" and spec.fixed == "x"
    assert spec.random == (RandomTerm(("x",), True, ("g",), "g"),)


def test_double_bar_expands_to_independent_terms():
    spec = parse_model("y ~ x + (x || g)")
    assert spec.random == (RandomTerm((), True, ("g",), "g"), RandomTerm(("x",), False, ("g",), "g"))


def test_slash_expands_with_lme4_names():
    spec = parse_model("y ~ 1 + (1 | a/b/c)")
    assert [t.name for t in spec.random] == ["a", "b:a", "c:b:a"]
    assert [t.group for t in spec.random] == [("a",), ("a", "b"), ("a", "b", "c")]


@pytest.mark.parametrize("text", ["y ~ x + (0 + x | g)", "y ~ x + (x - 1 | g)", "y ~ x + (-1 + x | g)"])
def test_slope_only(text):
    (term,) = parse_model(text).random
    assert not term.intercept and term.columns == ("x",)


def test_interaction_grouping_and_crossed():
    spec = parse_model("y ~ 0 + x + (1 | a:b) + (1 | c)")
    assert spec.fixed == "0 + x"
    assert [t.group for t in spec.random] == [("a", "b"), ("c",)]
    assert spec.random[0].name == "a:b"


def test_stata_nested_levels_read_within_parents():
    spec = parse_model("perform tutoring || dist_id: || school_id: || teach_id:")
    assert spec.syntax == "stata" and spec.fixed == "tutoring"
    assert [t.group for t in spec.random] == [
        ("dist_id",),
        ("dist_id", "school_id"),
        ("dist_id", "school_id", "teach_id"),
    ]
    assert [t.name for t in spec.random] == ["dist_id", "school_id", "teach_id"]


def test_stata_covariance_options():
    un = parse_model("y x || g: x, cov(unstructured)")
    assert un.random == (RandomTerm(("x",), True, ("g",), "g"),)
    ind = parse_model("y x || g: x")  # Stata's default is independent
    assert len(ind.random) == 2
    nc = parse_model("y x, noconstant || g: x, noconstant")
    assert nc.fixed == "0 + x" and nc.random == (RandomTerm(("x",), False, ("g",), "g"),)


def test_stata_factor_notation():
    # unprefixed variables in an interaction are factors, as in Stata
    assert parse_model("y i.grp c.x#c.z a##b || g:").fixed == "C(grp) + x:z + C(a) + C(b) + C(a):C(b)"


@pytest.mark.parametrize(
    "text,pos",
    [
        ("y ~ x + (x | g", 14),
        ("y ~ x + x | g", 10),
        ("y ~ x + (| g)", 9),
        ("y ~ x ~ z", 6),
        ("y ~ x + + z", 8),
        ("y x | g:", 4),
    ],
)
def test_syntax_errors_point_at_the_problem(text, pos):
    with pytest.raises(FormulaError) as err:
        parse_model(text)
    assert err.value.pos == pos
    assert "^" in str(err.value)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "y ~ (1 | )",
        "y x || :",
        "y x || g: , cov(banded)",
        "y x || g: x, bogus",
        "y x || _all: R.g",
        "y x || g: || g:",
    ],
)
def test_bad_models_raise_formula_error(text):
    with pytest.raises(FormulaError):
        parse_model(text)
