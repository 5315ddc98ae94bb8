"""Property: for random lme4 fixed parts (powers in I(), orthogonal and raw poly, scale, log,
factor(), interactions of factors and numbers, offsets, factor columns named like functions),
hlm's design matrix equals one built here with numpy by R's rules, column by column and
name by name -- in memory and, for the SQL backends, as the cross-products DuckDB computes.

R's rules rebuilt here: terms sorted by degree (stable); a term's variables in the order they
first appear in the formula, the first varying fastest; a factor in a term is coded by
treatment contrasts when the term without it is empty or within a preceding term, else by
one column per level (R's TermCode), and without an intercept the first factor of the first
term that has one by one column per level; poly() by R's QR algorithm.
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hlm.aggregate import aggregate_any
from hlm.errors import FormulaError
from hlm.modelframe import build_frame
from hlm.spec import parse_model

N = 40
FACTOR_NAMES = ["Treatment", "C", "Q", "poly", "I", "np", "lag", "my col", "f.2", "log"]
LEVELS = ["a", "b", "B", "a:b", "x]", "1.5", "T.x", "Low"]


def r_poly(x: np.ndarray, degree: int) -> np.ndarray:
    """R's poly(x, degree): QR of the centred powers, columns Q_j R_jj normalised."""
    t = x - x.mean()
    q, r = np.linalg.qr(np.vander(t, degree + 1, increasing=True))
    z = q * np.diag(r)
    return (z / np.sqrt((z**2).sum(axis=0)))[:, 1:]


def quoted(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z][A-Za-z0-9._]*", name) else f"`{name}`"


def make_data(seed: int, factors: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "y": rng.normal(size=N),
            "u": rng.uniform(0.5, 3.0, N),
            "w": rng.normal(size=N),
            "k": rng.integers(0, 5, N),
            "g": np.arange(N) % 5,
        }
    )
    for name in factors:
        levels = list(rng.choice(LEVELS, size=int(rng.integers(2, 4)), replace=False))
        df[name] = rng.permutation([levels[i % len(levels)] for i in range(N)])
    return df


def numeric_atoms(df: pd.DataFrame) -> dict[str, list[tuple[str, np.ndarray]]]:
    """R text -> its columns (R's name, values), computed here independently."""
    u, w, k = df["u"].to_numpy(), df["w"].to_numpy(), df["k"].to_numpy().astype(float)
    return {
        "u": [("u", u)],
        "k": [("k", k)],
        "I(k^2)": [("I(k^2)", k**2)],
        "I(u^3)": [("I(u^3)", u**3)],
        "I(2 * w + 1)": [("I(2 * w + 1)", 2 * w + 1)],
        "log(u)": [("log(u)", np.log(u))],
        "sqrt(u + 1)": [("sqrt(u + 1)", np.sqrt(u + 1))],
        "poly(u, 2)": [(f"poly(u, 2){j + 1}", c) for j, c in enumerate(r_poly(u, 2).T)],
        "poly(w, 3)": [(f"poly(w, 3){j + 1}", c) for j, c in enumerate(r_poly(w, 3).T)],
        "poly(k, 2, raw = TRUE)": [(f"poly(k, 2, raw = TRUE){j}", k**j) for j in (1, 2)],
        "scale(w)": [("scale(w)", (w - w.mean()) / w.std(ddof=1))],
    }


def factor_atoms(df: pd.DataFrame, names: list[str]) -> dict[str, tuple[list[str], np.ndarray]]:
    """R text -> (level labels in order, the rows' level index)."""
    out = {}
    for name in names:
        levels = sorted(set(df[name]))
        out[quoted(name)] = (levels, np.array([levels.index(v) for v in df[name]]))
    kv = sorted(set(df["k"]))
    out["factor(k)"] = ([str(v) for v in kv], np.array([kv.index(v) for v in df["k"]]))
    return out


def r_design(items: list[tuple[str, ...]], intercept: bool, numeric, factors) -> tuple[list[str], np.ndarray]:
    """The model matrix of ``items`` (atoms; ``(a, b)`` an interaction, ``("*", a, b)`` a*b) by R's rules."""
    terms: list[tuple[str, ...]] = []
    variables: list[str] = []
    for item in items:
        expanded = [(item[1],), (item[2],), item[1:]] if item[0] == "*" else [item]
        for term in expanded:
            variables += [v for v in term if v not in variables]
            if frozenset(term) not in map(frozenset, terms):
                terms.append(term)
    terms = sorted(terms, key=len)  # stable: by degree, then order of appearance
    terms = [tuple(sorted(t, key=variables.index)) for t in terms]
    codes = []
    for t, term in enumerate(terms):
        codes.append(
            {
                v: not (set(term) - {v}) or any(set(term) - {v} <= set(p) for p in terms[:t])
                for v in term
                if v in factors
            }
        )
    if not intercept:
        first = next((c for c in codes if c), None)
        if first:
            first[next(iter(first))] = False
    names, cols = (["(Intercept)"], [np.ones(N)]) if intercept else ([], [])
    for term, code in zip(terms, codes):
        pieces = []
        for v in term:
            if v in factors:
                levels, idx = factors[v]
                use = range(1, len(levels)) if code[v] else range(len(levels))
                pieces.append([(v + levels[j], (idx == j).astype(float)) for j in use])
            else:
                pieces.append(numeric[v])
        for combo in itertools.product(*reversed(pieces)):
            combo = combo[::-1]
            names.append(":".join(c[0] for c in combo))
            cols.append(np.prod([c[1] for c in combo], axis=0))
    return names, np.column_stack(cols)


@st.composite
def formulas(draw):
    factor_names = draw(st.lists(st.sampled_from(FACTOR_NAMES), min_size=1, max_size=2, unique=True))
    seed = draw(st.integers(0, 2**16))
    df = make_data(seed, factor_names)
    numeric, factors = numeric_atoms(df), factor_atoms(df, factor_names)
    pool = sorted(numeric) + sorted(factors)
    atom = st.sampled_from(pool)
    item = st.one_of(
        atom.map(lambda a: (a,)),
        st.tuples(atom, atom).filter(lambda p: p[0] != p[1]),
        st.tuples(st.just("*"), atom, atom).filter(lambda p: p[1] != p[2]),
    )
    items = draw(st.lists(item, min_size=1, max_size=4))
    return df, items, draw(st.booleans()), draw(st.booleans()), numeric, factors


def model_text(items, intercept: bool, offset: bool) -> str:
    text = " + ".join(f"{i[1]} * {i[2]}" if i[0] == "*" else ":".join(i) for i in items)
    return f"y ~ {'' if intercept else '0 + '}{text}{' + offset(w)' if offset else ''} + (1 | g)"


def _hierarchical(items) -> bool:
    """Every interaction comes with its main effects."""
    singles = {i[0] for i in items if len(i) == 1} | {v for i in items if i[0] == "*" for v in i[1:]}
    return all(i[0] == "*" or len(i) == 1 or set(i) <= singles for i in items)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(formulas())
def test_design_matrix_equals_r_rules(case):
    df, items, intercept, offset, numeric, factors = case
    model = model_text(items, intercept, offset)
    names, X = r_design(items, intercept, numeric, factors)
    try:
        frame = build_frame(parse_model(model), df)
    except FormulaError as exc:  # refused only where R's own coding is rank-deficient (no margins)
        assert "without its margins" in str(exc) and not (_hierarchical(items) and intercept), (model, exc)
        return
    assert list(frame.xnames) == names, model
    np.testing.assert_allclose(frame.X, X, rtol=1e-9, atol=1e-9)
    want_y = df["y"].to_numpy() - (df["w"].to_numpy() if offset else 0.0)
    np.testing.assert_allclose(frame.y, want_y, rtol=1e-12)


@pytest.mark.filterwarnings("ignore")
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(formulas())
def test_duckdb_cross_products_equal_r_rules(case):
    df, items, _, offset, numeric, factors = case
    items = [("*", *i) if len(i) == 2 else i for i in items]  # with their margins: R's and formulaic's coding agree
    model = model_text(items, True, offset)
    names, X = r_design(items, True, numeric, factors)
    agg, _ = aggregate_any(parse_model(model), df, backend="duckdb")
    assert list(agg.xnames) == names, model
    K = np.column_stack([X, df["y"].to_numpy() - (df["w"].to_numpy() if offset else 0.0)])
    scale = np.sqrt(np.outer(np.diag(K.T @ K), np.diag(K.T @ K)))
    assert (np.abs(agg.ktk - K.T @ K) <= 1e-8 * scale).all(), model
