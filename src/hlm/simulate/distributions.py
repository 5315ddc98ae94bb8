"""Distributions of covariates and of unit counts, with a one-line text form.

Covariates (per observation or per unit of a level) are drawn from

* ``Bernoulli(p)``        0/1, stored as int8 (a treatment indicator)
* ``Normal(mean, sd)``    float64
* ``Uniform(low, high)``  float64 on [low, high)
* ``Poisson(mean)``       int64
* ``UniformInt(low, high)`` int64, each of low..high (inclusive) equally likely
* ``Assign(p)``           0/1, int8: a randomised treatment given to exactly p n of the n
  units inside each parent unit (all units of the outermost level; rounded at random,
  floor(p n) or one more, when p n is fractional), as the analytic power formulas assume

Units per parent are a whole number (balanced) or, for unbalanced designs, a count
distribution: ``Poisson(mean, min=1)`` (draws below ``min`` are raised to ``min``, so
the realised mean is slightly above ``mean`` when ``mean`` is small) or
``UniformInt(low, high)`` with ``low >= 1``.

Every distribution is a frozen dataclass whose ``str()`` is its text form, and
:func:`parse_distribution` reads that form back: ``"Bernoulli(0.2)"``,
``"Normal(0, 1)"``, ``"Poisson(5, min=1)"``, ``"UniformInt(3, 8)"``.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, fields

import numpy as np

from hlm.errors import OptionError


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise OptionError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _whole(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise OptionError(f"{what} must be a whole number, got {value!r}")
    return int(value)


def _fmt(x: float) -> str:
    return repr(int(x)) if float(x).is_integer() else repr(float(x))


@dataclass(frozen=True)
class Bernoulli:
    """0/1 with P(1) = ``p``."""

    p: float

    def __post_init__(self) -> None:
        p = _number(self.p, "Bernoulli's p")
        if not 0.0 <= p <= 1.0:
            raise OptionError(f"Bernoulli's p must lie in [0, 1], got {p}; use a probability")
        object.__setattr__(self, "p", p)

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        # 32-bit uniforms suffice for a probability and halve the generator's work; drawn
        # in cache-sized pieces (the stream is the same as one call's).
        out = np.empty(size, dtype=np.bool_)
        buf = np.empty(min(size, 1 << 16), dtype=np.float32)
        p = np.float32(self.p)
        for start in range(0, size, len(buf)):
            piece = buf[: min(len(buf), size - start)]
            rng.random(out=piece, dtype=np.float32)
            np.less(piece, p, out=out[start : start + len(piece)])
        return out.view(np.int8)

    def __str__(self) -> str:
        return f"Bernoulli({_fmt(self.p)})"


@dataclass(frozen=True)
class Assign:
    """A treatment assigned to exactly ``p`` of the units inside each parent (complete
    randomisation within blocks): a parent with n units treats floor(p n + U) of them, U ~ U(0, 1),
    chosen at random -- exactly p n when that is whole, p n on average otherwise."""

    p: float

    def __post_init__(self) -> None:
        p = _number(self.p, "Assign's p")
        if not 0.0 <= p <= 1.0:
            raise OptionError(f"Assign's p must lie in [0, 1], got {p}; use the treated proportion")
        object.__setattr__(self, "p", p)

    def draw(self, rng: np.random.Generator, size: int, per_parent: np.ndarray | int | None = None) -> np.ndarray:
        """``size`` units in consecutive blocks of ``per_parent`` (one block of all when None)."""
        sizes = np.atleast_1d(np.asarray(size if per_parent is None else per_parent, dtype=np.int64))
        if sizes.size == 1 and sizes[0] != size:
            sizes = np.full(size // int(sizes[0]), sizes[0])
        treated = np.floor(self.p * sizes + rng.random(len(sizes))).astype(np.int64)
        block = np.repeat(np.arange(len(sizes)), sizes)
        order = np.lexsort((rng.random(size), block))  # a random order inside each block
        rank = np.empty(size, dtype=np.int64)
        rank[order] = np.arange(size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        return (rank < np.repeat(treated, sizes)).astype(np.int8)

    def __str__(self) -> str:
        return f"Assign({_fmt(self.p)})"


@dataclass(frozen=True)
class Normal:
    """Normal with the given mean and standard deviation."""

    mean: float = 0.0
    sd: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", _number(self.mean, "Normal's mean"))
        sd = _number(self.sd, "Normal's sd")
        if sd < 0:
            raise OptionError(f"Normal's sd must be >= 0, got {sd}; use a non-negative standard deviation")
        object.__setattr__(self, "sd", sd)

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        out = rng.standard_normal(size)
        if self.sd != 1.0:
            out *= self.sd
        if self.mean != 0.0:
            out += self.mean
        return out

    def __str__(self) -> str:
        return f"Normal({_fmt(self.mean)}, {_fmt(self.sd)})"


@dataclass(frozen=True)
class Uniform:
    """Continuous uniform on [low, high)."""

    low: float = 0.0
    high: float = 1.0

    def __post_init__(self) -> None:
        low, high = _number(self.low, "Uniform's low"), _number(self.high, "Uniform's high")
        if not low < high:
            raise OptionError(f"Uniform needs low < high, got Uniform({low}, {high})")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.uniform(self.low, self.high, size)

    def __str__(self) -> str:
        return f"Uniform({_fmt(self.low)}, {_fmt(self.high)})"


@dataclass(frozen=True)
class Poisson:
    """Poisson with the given mean; draws below ``min`` are raised to ``min``."""

    mean: float
    min: int = 0

    def __post_init__(self) -> None:
        mean = _number(self.mean, "Poisson's mean")
        if mean < 0:
            raise OptionError(f"Poisson's mean must be >= 0, got {mean}")
        object.__setattr__(self, "mean", mean)
        lo = _whole(self.min, "Poisson's min")
        if lo < 0:
            raise OptionError(f"Poisson's min must be >= 0, got {lo}")
        object.__setattr__(self, "min", lo)

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        out = rng.poisson(self.mean, size).astype(np.int64, copy=False)
        if self.min > 0:
            np.maximum(out, self.min, out=out)
        return out

    def expected(self) -> float:
        """Mean of a draw (after raising draws below ``min``)."""
        pmf = [math.exp(-self.mean) * self.mean**k / math.factorial(k) for k in range(self.min)]
        return self.mean + sum(p * (self.min - k) for k, p in enumerate(pmf))

    def __str__(self) -> str:
        return f"Poisson({_fmt(self.mean)})" if self.min == 0 else f"Poisson({_fmt(self.mean)}, min={self.min})"


@dataclass(frozen=True)
class UniformInt:
    """Whole numbers low..high (both included), equally likely."""

    low: int
    high: int

    def __post_init__(self) -> None:
        low, high = _whole(self.low, "UniformInt's low"), _whole(self.high, "UniformInt's high")
        if low > high:
            raise OptionError(f"UniformInt needs low <= high, got UniformInt({low}, {high})")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.integers(self.low, self.high, size, endpoint=True, dtype=np.int64)

    def expected(self) -> float:
        """Mean of a draw."""
        return (self.low + self.high) / 2.0

    def __str__(self) -> str:
        return f"UniformInt({self.low}, {self.high})"


Distribution = Bernoulli | Assign | Normal | Uniform | Poisson | UniformInt
CountDistribution = Poisson | UniformInt
KINDS: dict[str, type] = {c.__name__: c for c in (Bernoulli, Assign, Normal, Uniform, Poisson, UniformInt)}


def parse_distribution(text: object, *, what: str = "distribution") -> Distribution:
    """Read a distribution from its text form, e.g. ``"Bernoulli(0.2)"`` or ``"Poisson(5, min=1)"``."""
    usage = (
        "write it like Bernoulli(0.2), Assign(0.5), Normal(0, 1), Uniform(0, 1), Poisson(5, min=1) or UniformInt(3, 8)"
    )
    if isinstance(text, Distribution.__args__):
        return text
    if not isinstance(text, str):
        raise OptionError(f"{what} must be a distribution such as 'Bernoulli(0.2)', got {text!r}")
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise OptionError(f"{what} '{text}' is not a distribution; {usage}") from None
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        raise OptionError(f"{what} '{text}' is not a distribution; {usage}")
    name = node.func.id
    cls = KINDS.get(name) or {k.lower(): v for k, v in KINDS.items()}.get(name.lower())
    if cls is None:
        raise OptionError(f"{what} '{text}': unknown distribution '{name}'; use one of {', '.join(KINDS)}")
    try:
        args = [ast.literal_eval(a) for a in node.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg is not None}
    except ValueError:
        raise OptionError(f"{what} '{text}': arguments must be numbers; {usage}") from None
    names = [f.name for f in fields(cls)]
    unknown = [k for k in kwargs if k not in names]
    if unknown or len(args) > len(names) or len(node.keywords) != len(kwargs):
        raise OptionError(f"{what} '{text}': {cls.__name__} takes ({', '.join(names)})")
    try:
        return cls(*args, **kwargs)
    except TypeError:
        raise OptionError(f"{what} '{text}': {cls.__name__} takes ({', '.join(names)})") from None
    except OptionError as exc:
        raise OptionError(f"{what} '{text}': {exc}") from None
