"""R's meaning of an lme4 right-hand side, rewritten as a formulaic formula.

An lme4 fixed part is read with R's grammar and R's semantics, then handed to formulaic
(which lays out terms and contrasts as R's ``model.matrix`` does) in a form where Python
cannot change its meaning:

* every data column is renamed to a safe internal name (``hlm_`` and its hex), so a column called
  ``Treatment``, ``C``, ``poly``, ``log`` or ``np`` is that column; a name is a function only
  when it is called;
* inside calls ``^`` (and ``**``) is a power, ``TRUE``/``FALSE`` are booleans, ``+ - * /``
  are arithmetic on numbers (``r_num``: a logical column counts 0/1 there, while as a term
  it is a factor with levels FALSE, TRUE, as in R); the functions are hlm's own
  (``r_log`` ...), never Python's;
* each term factor (an *atom*: a column, ``I(...)``, ``log(...)``, ``factor(x)``,
  ``poly(x, k)``, ``scale(x)``) keeps R's deparsed text, from which R's column names are
  built (``poly(Days, 2)1``, ``TreatmentLow:sexF``);
* ``offset(expr)`` terms leave the formula and are returned as expressions;
* formula-level operators (``+ - * / : ^ %in%``, ``0``, ``1``) keep their formula meaning,
  so ``(a + b)^2`` is the two-way expansion and ``b %in% a`` the term ``a:b``.

Stateful atoms (``poly`` orthogonal, ``scale``, ``center``) carry their fit-time state as
literals in the formula text (:meth:`RFormula.formula`), so the same text serves the fit and
``predict(newdata)``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from hlm.errors import FormulaError

# ----------------------------------------------------------------------------- R grammar

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?L?)
  | (?P<name>(?:[^\W\d]|\.)[\w.]*|`[^`]+`)
  | (?P<op>%in%|\*\*|[-+*/^:(),=])
)""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Name:
    id: str


@dataclass(frozen=True)
class Call:
    fn: str
    args: tuple[Node, ...]
    kwargs: tuple[tuple[str, Node], ...]


@dataclass(frozen=True)
class Bin:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Unary:
    op: str
    operand: Node


@dataclass(frozen=True)
class Paren:
    inner: Node


Node = Num | Name | Call | Bin | Unary | Paren

# binding powers, R's precedence (?Syntax): ^ > unary -+ > : > %in% > * / > + -
_INFIX = {"+": 10, "-": 10, "*": 20, "/": 20, "%in%": 25, ":": 30, "^": 40, "**": 40}
_UNARY = 35


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                bad = pos + len(text[pos:]) - len(text[pos:].lstrip())
                raise FormulaError(f"cannot read the formula at '{text[bad]}'", text, bad)
            kind = m.lastgroup or "op"
            self.tokens.append((kind, m.group(kind), m.start(kind)))
            pos = m.end()
        self.i = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str, int]:
        tok = self.peek()
        if tok is None:
            raise FormulaError("the formula ends too early", self.text, len(self.text))
        if value is not None and tok[1] != value:
            raise FormulaError(f"expected '{value}'", self.text, tok[2])
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.expr(0)
        tok = self.peek()
        if tok is not None:
            raise FormulaError(f"unexpected '{tok[1]}'", self.text, tok[2])
        return node

    def expr(self, bp: int) -> Node:
        left = self.prefix()
        while (tok := self.peek()) is not None and tok[0] == "op" and tok[1] in _INFIX:
            lbp = _INFIX[tok[1]]
            if lbp <= bp:
                break
            self.take()
            right = self.expr(lbp - 1 if lbp == 40 else lbp)  # ^ is right-associative
            left = Bin("^" if tok[1] == "**" else tok[1], left, right)
        return left

    def prefix(self) -> Node:
        kind, value, pos = self.take()
        if kind == "num":
            return Num(float(value.rstrip("L")))
        if kind == "name":
            nxt = self.peek()
            if nxt is not None and nxt[1] == "(" and not value.startswith("`"):
                self.take("(")
                return self.call(value)
            return Name(value.strip("`"))
        if value in ("-", "+"):
            return Unary(value, self.expr(_UNARY))
        if value == "(":
            inner = self.expr(0)
            self.take(")")
            return Paren(inner)
        raise FormulaError(f"unexpected '{value}'", self.text, pos)

    def call(self, fn: str) -> Call:
        args: list[Node] = []
        kwargs: list[tuple[str, Node]] = []
        tok = self.peek()
        if tok is not None and tok[1] == ")":
            self.take(")")
            return Call(fn, (), ())
        while True:
            tok = self.peek()
            nxt = self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else None
            if tok is not None and tok[0] == "name" and nxt is not None and nxt[1] == "=":
                self.i += 2
                kwargs.append((tok[1].strip("`"), self.expr(0)))
            else:
                if kwargs:
                    raise FormulaError(
                        f"a positional argument follows a named one in {fn}()",
                        self.text,
                        tok[2] if tok else len(self.text),
                    )
                args.append(self.expr(0))
            sep = self.take()
            if sep[1] == ")":
                return Call(fn, tuple(args), tuple(kwargs))
            if sep[1] != ",":
                raise FormulaError(f"expected ',' or ')' in {fn}()", self.text, sep[2])


_SYNTACTIC = re.compile(r"^(?:[^\W\d_]|\.(?![0-9]))[\w.]*$|^\.$")


def _num_text(v: float) -> str:
    text = f"{v:.15g}"
    return text.replace("e+0", "e+").replace("e-0", "e-")


def deparse(node: Node) -> str:
    """R's ``deparse`` of an expression (the text R uses in term and column names)."""
    if isinstance(node, Num):
        return _num_text(node.value)
    if isinstance(node, Name):
        return node.id if _SYNTACTIC.match(node.id) else f"`{node.id}`"
    if isinstance(node, Paren):
        return f"({deparse(node.inner)})"
    if isinstance(node, Unary):
        return f"{node.op}{deparse(node.operand)}"
    if isinstance(node, Bin):
        sep = node.op if node.op in ("^", ":", "/") else f" {node.op} "
        return f"{deparse(node.left)}{sep}{deparse(node.right)}"
    parts = [deparse(a) for a in node.args] + [f"{k} = {deparse(v)}" for k, v in node.kwargs]
    return f"{node.fn}({', '.join(parts)})"


# ----------------------------------------------------------------------------- translation

_MATH = {
    "log": "r_log",
    "exp": "r_exp",
    "sqrt": "r_sqrt",
    "abs": "r_abs",
    "log1p": "r_log1p",
    "expm1": "r_expm1",
    "log2": "r_log2",
    "log10": "r_log10",
}
for _m in ("log", "exp", "sqrt", "abs", "log1p", "expm1", "log2", "log10"):  # numpy spellings, as before
    _MATH[f"np.{_m}"] = _MATH[f"numpy.{_m}"] = _MATH[_m]
_FACTOR = ("factor", "as.factor", "C")
_LOGICAL = {"TRUE": True, "FALSE": False, "T": True, "F": False}
SUPPORTED = (
    "I(), log, log1p, log2, log10, exp, expm1, sqrt, abs, factor(), as.factor(), poly(x, k), "
    "poly(x, k, raw = TRUE), scale(), center(), offset()"
)

AtomKind = Literal["value", "factor", "poly", "scale"]


@dataclass(frozen=True)
class Atom:
    """One term factor: R's text ``rname`` and how to compute it from the safe names.

    ``value``: a numeric (or, for a bare column, possibly categorical) expression ``code``;
    ``factor``: ``code`` coded as a factor; ``poly``: ``degree`` columns of ``code``
    (``raw`` powers, or R's orthogonal polynomials); ``scale``: ``(code - centre) / scale``
    with ``center``/``scale`` saying which of the two R's ``scale()`` applies."""

    rname: str
    kind: AtomKind
    code: str
    degree: int = 0
    raw: bool = False
    center: bool = True
    scale: bool = True

    @property
    def stateful(self) -> bool:
        return self.kind == "scale" or (self.kind == "poly" and not self.raw)

    def formulaic(self, state: tuple | None) -> str:
        """The factor's formulaic text; ``state`` as :mod:`hlm.transforms` computes it."""
        if self.kind == "value":
            return self.code
        if self.kind == "factor":
            return f"C({self.code})"
        if self.kind == "poly":
            if self.raw:
                return f"r_poly({self.code}, {self.degree})"
            alpha, norm2 = state if state is not None else ((0.0,) * self.degree, (1.0,) * (self.degree + 2))
            return f"r_poly({self.code}, {self.degree}, {_tuple(alpha)}, {_tuple(norm2)})"
        centre, scale = state if state is not None else (0.0, 1.0)
        return f"r_scale({self.code}, {float(centre)!r}, {float(scale)!r})"


def _tuple(values: Sequence[float]) -> str:
    return "(" + ", ".join(repr(float(v)) for v in values) + ",)"


@dataclass(frozen=True)
class RFormula:
    """An lme4 right-hand side read with R's semantics (see the module docstring).

    ``template`` is the formulaic formula with ``\\x00i\\x00`` in place of atom i; ``alias``
    maps each safe name to its data column; ``offsets`` are Python expressions over the
    safe names."""

    text: str
    template: str
    atoms: tuple[Atom, ...]
    alias: tuple[tuple[str, str], ...]
    offsets: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """The data columns used, in order of first use."""
        return tuple(col for _, col in self.alias)

    def formula(self, states: dict[int, tuple] | None = None) -> str:
        """The formulaic formula with the stateful atoms' states filled in (placeholders if
        ``states`` is None: enough to lay out the terms)."""
        parts = self.template.split("\x00")
        for j in range(1, len(parts), 2):
            i = int(parts[j])
            parts[j] = self.atoms[i].formulaic((states or {}).get(i))
        return "".join(parts)


class _Translate:
    def __init__(self, text: str):
        self.text = text
        self.atoms: list[Atom] = []
        self.alias: dict[str, str] = {}
        self.offsets: list[str] = []

    def fail(self, message: str) -> FormulaError:
        return FormulaError(f"{message} (in '{self.text}')")

    def safe(self, column: str) -> str:
        if column not in self.alias:
            self.alias[column] = "hlm_" + column.encode().hex()  # the same in every formula of a model
        return self.alias[column]

    def atom(self, atom: Atom) -> str:
        if atom not in self.atoms:
            self.atoms.append(atom)
        return f"\x00{self.atoms.index(atom)}\x00"

    # ---- the formula level: terms and their operators
    def term(self, node: Node, top: bool) -> str | None:
        if isinstance(node, Bin):
            if node.op == "+" and top:
                left, right = self.term(node.left, True), self.term(node.right, True)
                if left is None or right is None:
                    return left or right
                return f"{left} + {right}"
            if node.op == "^":
                if not (isinstance(node.right, Num) and node.right.value == int(node.right.value) >= 1):
                    raise self.fail("a formula power such as (a + b)^2 needs a positive whole number")
                return f"{self.operand(node.left)} ** {int(node.right.value)}"
            op = ":" if node.op == "%in%" else node.op  # R: b %in% a is the term a:b alone (formulaic adds a)
            return f"{self.operand(node.left)} {op} {self.operand(node.right)}"
        if isinstance(node, Paren):
            inner = self.term(node.inner, False)
            return f"({inner})"
        if isinstance(node, Unary):
            if node.op == "-" and isinstance(node.operand, Num) and node.operand.value in (0, 1):
                return f"-{int(node.operand.value)}"
            if node.op == "+":
                return self.term(node.operand, top)
            raise self.fail(f"'{deparse(node)}' is not a term; write arithmetic inside I(), e.g. I({deparse(node)})")
        if isinstance(node, Num):
            if node.value in (0, 1):
                return str(int(node.value))
            raise self.fail(f"the number {deparse(node)} is not a term; only 0 and 1 (the intercept) are")
        if isinstance(node, Name):
            if node.id == ".":
                raise self.fail("'.' (all other columns) is not supported; list the columns")
            return self.atom(Atom(deparse(node), "value", self.safe(node.id)))
        return self.call_term(node, top)

    def operand(self, node: Node) -> str:
        out = self.term(node, False)
        assert out is not None
        return out

    def call_term(self, node: Call, top: bool) -> str | None:
        fn, rname = node.fn, deparse(node)
        if fn == "offset":
            if not top:
                raise self.fail("offset() must be a term of its own, added with '+'")
            self.offsets.append(self.arith(self.one_arg(node)))
            return None
        if fn in _FACTOR:
            arg = self.one_arg(node)
            return self.atom(Atom(rname, "factor", self.safe(arg.id) if isinstance(arg, Name) else self.arith(arg)))
        if fn == "poly":
            return self.atom(self.poly(node, rname))
        if fn in ("scale", "center"):
            return self.atom(self.scale(node, rname))
        if fn == "I" or fn in _MATH:
            return self.atom(Atom(rname, "value", self.arith(node)))
        raise self.fail(f"the function '{fn}' is not supported in lme4 formulas; supported: {SUPPORTED}")

    def one_arg(self, node: Call) -> Node:
        if len(node.args) != 1 or node.kwargs:
            raise self.fail(f"{node.fn}() takes one argument here: {deparse(node)}")
        return node.args[0]

    def logical(self, node: Node, what: str) -> bool:
        if isinstance(node, Name) and node.id in _LOGICAL:
            return _LOGICAL[node.id]
        raise self.fail(f"{what} must be TRUE or FALSE, not {deparse(node)}")

    def poly(self, node: Call, rname: str) -> Atom:
        args = list(node.args)
        kwargs = dict(node.kwargs)
        if set(kwargs) - {"degree", "raw"} or not args or len(args) > 3:
            raise self.fail(f"poly() is supported as poly(x, degree) or poly(x, degree, raw = TRUE): {rname}")
        degree = args[1] if len(args) > 1 else kwargs.get("degree", Num(1.0))
        raw = args[2] if len(args) > 2 else kwargs.get("raw", Name("FALSE"))
        if not (isinstance(degree, Num) and degree.value == int(degree.value) >= 1):
            raise self.fail(f"the degree of poly() must be a positive whole number: {rname}")
        return Atom(rname, "poly", self.arith(args[0]), degree=int(degree.value), raw=self.logical(raw, "raw"))

    def scale(self, node: Call, rname: str) -> Atom:
        kwargs = dict(node.kwargs)
        if len(node.args) != 1 or set(kwargs) - ({"center", "scale"} if node.fn == "scale" else set()):
            extra = ", with center = and scale = TRUE or FALSE" if node.fn == "scale" else ""
            raise self.fail(f"{node.fn}() is supported as {node.fn}(x){extra}: {rname}")
        center = self.logical(kwargs.get("center", Name("TRUE")), "center")
        scale = node.fn == "scale" and self.logical(kwargs.get("scale", Name("TRUE")), "scale")
        return Atom(rname, "scale", self.arith(node.args[0]), center=center, scale=scale)

    # ---- inside calls: R arithmetic as Python over the safe names
    def arith(self, node: Node) -> str:
        if isinstance(node, Num):
            return repr(node.value)
        if isinstance(node, Name):
            if node.id in ("TRUE", "FALSE"):
                return str(node.id == "TRUE")
            return f"r_num({self.safe(node.id)})"  # a logical column is a factor as a term, 0/1 in arithmetic
        if isinstance(node, Paren):
            return f"({self.arith(node.inner)})"
        if isinstance(node, Unary):
            return f"({node.op}{self.arith(node.operand)})"
        if isinstance(node, Bin):
            ops = {"+": "+", "-": "-", "*": "*", "/": "/", "^": "**"}
            if node.op not in ops:
                raise self.fail(f"the operator '{node.op}' inside a function call is not supported: {deparse(node)}")
            return f"({self.arith(node.left)} {ops[node.op]} {self.arith(node.right)})"
        if node.fn == "I":
            return f"r_I({self.arith(self.one_arg(node))})"
        if node.fn in _MATH:
            return f"{_MATH[node.fn]}({self.arith(self.one_arg(node))})"
        if node.fn in ("poly", "scale", "center", "offset", *_FACTOR):
            raise self.fail(f"{node.fn}() must be a term of its own, not inside another call: {deparse(node)}")
        raise self.fail(f"the function '{node.fn}' is not supported in lme4 formulas; supported: {SUPPORTED}")


@lru_cache(maxsize=256)
def translate(rhs: str) -> RFormula:
    """Read an lme4 right-hand side (fixed part) with R's grammar and semantics."""
    node = _Parser(rhs).parse()
    tr = _Translate(rhs)
    template = tr.term(node, True)
    return RFormula(
        rhs,
        template if template is not None else "1",
        tuple(tr.atoms),
        tuple((safe, col) for col, safe in tr.alias.items()),
        tuple(tr.offsets),
    )
