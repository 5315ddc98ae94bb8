"""Parse lme4 model formulas.

``y ~ fixed + (expr | g) + (expr || g)``: the fixed part is kept as formulaic text; each
parenthesised term with a top-level ``|`` or ``||`` becomes :class:`RandomTerm` objects:

* ``(x | g)`` = ``(1 + x | g)``: correlated intercept and slope; ``(0 + x | g)``: slope only;
* ``(x || g)`` = ``(1 | g) + (0 + x | g)``: independent effects (one term per column);
* ``(1 | a/b/c)`` = ``(1 | a) + (1 | a:b) + (1 | a:b:c)``, named ``a``, ``b:a``, ``c:b:a``
  as lme4 names them; ``(1 | a:b)`` groups by the interaction of ``a`` and ``b``.
"""

from __future__ import annotations

import re

from formulaic import Formula

from hlm.errors import FormulaError
from hlm.spec.terms import ModelSpec, RandomTerm

_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$|^`[^`]+`$")


def _top_level_split(text: str, sep: str, offset: int, full: str) -> list[tuple[str, int]]:
    """Split ``text`` on ``sep`` outside parentheses; return (piece, position) pairs."""
    pieces, depth, start, i = [], 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise FormulaError("unmatched ')'", full, offset + i)
        elif depth == 0 and text.startswith(sep, i):
            pieces.append((text[start:i], offset + start))
            i += len(sep)
            start = i
            continue
        i += 1
    if depth != 0:
        raise FormulaError("unclosed '('; add the missing ')'", full, offset + len(text))
    pieces.append((text[start:], offset + start))
    return pieces


def _strip(piece: str, pos: int) -> tuple[str, int]:
    lead = len(piece) - len(piece.lstrip())
    return piece.strip(), pos + lead


def _bar_position(inner: str) -> tuple[int, int] | None:
    """Position and width of the top-level ``|`` or ``||`` inside a term, if any."""
    depth = 0
    for i, ch in enumerate(inner):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            width = 2 if inner.startswith("||", i) else 1
            return i, width
    return None


def _group_name(col: str, full: str, pos: int) -> str:
    col = col.strip()
    if not col or not _NAME.match(col):
        raise FormulaError("a grouping factor must be a column name (use a:b for an interaction)", full, pos)
    return col.strip("`")


def _expand_groups(group: str, full: str, pos: int) -> list[tuple[tuple[str, ...], str]]:
    """``a/b:c`` -> [((a,), 'a'), ((a, b, c), 'b:c:a')] (lme4's names for nested factors)."""
    if not group.strip():
        raise FormulaError("missing grouping factor after '|'", full, pos)
    out: list[tuple[tuple[str, ...], str]] = []
    path: list[str] = []
    names: list[str] = []
    offset = pos
    for part in group.split("/"):
        cols = [_group_name(c, full, offset) for c in part.split(":")]
        offset += len(part) + 1
        path.extend(cols)
        names.insert(0, ":".join(cols))
        out.append((tuple(path), ":".join(names)))
    return out


def _parse_expr(expr: str, full: str, pos: int) -> tuple[bool, tuple[str, ...]]:
    """Left side of a bar: (has intercept, slope expressions)."""
    if not expr.strip():
        raise FormulaError("missing random-effect expression before '|'; use 1 for an intercept", full, pos)
    intercept = True
    columns: list[str] = []
    for piece, ppos in _top_level_split(expr, "+", pos, full):
        piece, ppos = _strip(piece, ppos)
        for sub_i, sub in enumerate(_top_level_split(piece, "-", ppos, full)):
            token, tpos = _strip(*sub)
            if sub_i > 0:  # "x - 1" removes the intercept
                if token in ("1", "0"):
                    intercept = False
                    continue
                raise FormulaError("only '- 1' may be subtracted in a random term", full, tpos)
            if token == "":
                if sub_i == 0 and len(_top_level_split(piece, "-", ppos, full)) > 1:
                    continue
                raise FormulaError("empty term in random-effect expression", full, tpos)
            if token == "1":
                continue
            if token == "0":
                intercept = False
                continue
            columns.append(token)
    if not intercept and not columns:
        raise FormulaError("random term has no columns: use (1 | g) for an intercept", full, pos)
    return intercept, tuple(columns)


def _double_bar_columns(columns: tuple[str, ...]) -> list[str]:
    """The separate terms of ``(x || g)``, as lme4's ``expandDoubleVerts`` takes them from R's
    ``terms()``: ``a * b`` gives a, b and a:b (each its own independent term)."""
    out: list[str] = []
    for col in columns:
        labels: list[str] = []
        if "*" in col or "^" in col:
            try:
                labels = [str(t) for t in Formula("0 + " + col)]
            except Exception:  # not formulaic's syntax: the column stays one term, as written
                labels = []
        out.extend(labels if len(labels) > 1 else [col])
    return out


def _random_terms(inner: str, full: str, pos: int) -> list[RandomTerm]:
    bar = _bar_position(inner)
    assert bar is not None
    at, width = bar
    expr, group = inner[:at], inner[at + width :]
    intercept, columns = _parse_expr(expr, full, pos)
    terms: list[RandomTerm] = []
    for cols, name in _expand_groups(group, full, pos + at + width):
        if width == 2:  # (x || g): one term per column, independent
            if intercept:
                terms.append(RandomTerm((), True, cols, name))
            terms.extend(RandomTerm((c,), False, cols, name) for c in _double_bar_columns(columns))
        else:
            terms.append(RandomTerm(columns, intercept, cols, name))
    return terms


def parse_lme4(text: str) -> ModelSpec:
    """Parse an lme4 formula such as ``y ~ x + (x | g) + (1 | a/b)``."""
    if not isinstance(text, str) or not text.strip():
        raise FormulaError("the model is empty; write it as 'y ~ x + (1 | g)'")
    sides = _top_level_split(text, "~", 0, text)
    if len(sides) != 2:
        pos = sides[2][1] - 1 if len(sides) > 2 else len(text)
        raise FormulaError("a formula needs exactly one '~' between response and predictors", text, pos)
    (lhs, lpos), (rhs, rpos) = sides
    response, rpos_l = _strip(lhs, lpos)
    if not response:
        raise FormulaError("missing response before '~'", text, lpos)
    if not _NAME.match(response):
        raise FormulaError("the response must be a column name", text, rpos_l)
    fixed: list[str] = []
    random: list[RandomTerm] = []
    for piece, ppos in _top_level_split(rhs, "+", rpos, text):
        piece, ppos = _strip(piece, ppos)
        if not piece:
            raise FormulaError("empty term: remove the extra '+' or add a term", text, ppos)
        if piece.startswith("(") and piece.endswith(")") and _bar_position(piece[1:-1]) is not None:
            if _balanced(piece[1:-1]):  # the opening '(' closes at the end
                random.extend(_random_terms(piece[1:-1], text, ppos + 1))
                continue
        if "|" in piece:
            raise FormulaError("a random term must be in parentheses: (expr | group)", text, ppos + piece.index("|"))
        fixed.append(piece)
    fixed_rhs = " + ".join(fixed) if fixed else "1"
    return ModelSpec(text=text, response=response.strip("`"), fixed=fixed_rhs, random=tuple(random), syntax="lme4")


def _balanced(inner: str) -> bool:
    depth = 0
    for ch in inner:
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            return False
    return depth == 0
