"""The parts of a multilevel design (see :mod:`hlm.simulate.design` for the model): levels,
repeated observations and covariates, each an immutable value checked when built.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import numpy as np

from hlm.errors import OptionError
from hlm.simulate.distributions import (
    CountDistribution,
    Distribution,
    Poisson,
    UniformInt,
    parse_distribution,
)

Count = int | CountDistribution
INTERCEPT = "intercept"


class FrozenMap(Mapping[str, float]):
    """A read-only, hashable, ordered mapping of names to numbers."""

    __slots__ = ("_items",)
    _items: tuple[tuple[str, float], ...]

    def __init__(self, items: Mapping[str, Any] | None = None, *, what: str = "value") -> None:
        d = dict(items or {})
        for k, v in d.items():
            if not isinstance(k, str):
                raise OptionError(f"{what} names must be strings, got {k!r}")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise OptionError(f"{what} '{k}' must be a finite number, got {v!r}")
        object.__setattr__(self, "_items", tuple((k, float(v)) for k, v in d.items()))

    def __getitem__(self, key: str) -> float:
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._items) == dict(other.items())

    def __repr__(self) -> str:
        return repr(dict(self._items))


def checked_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.isidentifier():
        raise OptionError(f"{what} must be a column name (letters, digits, _), got {value!r}")
    return value


def checked_sd(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise OptionError(f"{what} must be a number, got {value!r}")
    if value < 0:
        raise OptionError(f"{what} must be >= 0, got {value}; use a non-negative standard deviation")
    return float(value)


def checked_count(value: object, what: str) -> Count:
    """A fixed whole number >= 1 or a count distribution whose draws are >= 1."""
    if isinstance(value, str):
        value = parse_distribution(value, what=what)
    if isinstance(value, Poisson):
        if value.min < 1:
            raise OptionError(f"{what} = {value} can draw 0 units; write Poisson({value.mean:g}, min=1)")
        return value
    if isinstance(value, UniformInt):
        if value.low < 1:
            raise OptionError(f"{what} = {value} can draw 0 units; make its low at least 1")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise OptionError(
            f"{what} must be a whole number or a count distribution such as 'Poisson(5, min=1)', got {value!r}"
        )
    if value < 1:
        raise OptionError(f"{what} must be at least 1, got {int(value)}; every parent needs a unit")
    return int(value)


def mean_count(n: Count) -> float:
    """Expected units per parent."""
    return float(n) if isinstance(n, int) else n.expected()


@dataclass(frozen=True)
class Level:
    """One level of the hierarchy: its units per parent and random effects.

    ``n`` is the number of units per parent unit (for the outermost level: in all), a
    whole number or a count distribution.  ``sd`` is the SD of the random intercept;
    ``slopes`` maps covariate names to the SDs of their random slopes; ``corr`` is the
    correlation matrix of (intercept, slopes...) or one number for every pair.
    ``id`` names the id column (default ``<name>_id``).
    """

    name: str
    _: KW_ONLY
    id: str | None = None
    n: Count = 1
    sd: float = 0.0
    slopes: Mapping[str, float] = field(default_factory=FrozenMap)
    corr: float | tuple[tuple[float, ...], ...] = 0.0

    def __post_init__(self) -> None:
        what = f"levels.{self.name}"
        checked_name(self.name, "a level's name")
        object.__setattr__(
            self, "id", checked_name(self.id if self.id is not None else f"{self.name}_id", f"{what}.id")
        )
        object.__setattr__(self, "n", checked_count(self.n, f"{what}.n"))
        object.__setattr__(self, "sd", checked_sd(self.sd, f"{what}.sd"))
        slopes = FrozenMap(self.slopes, what=f"{what}.slopes")
        for k, v in slopes.items():
            checked_sd(v, f"{what}.slopes.{k}")
        object.__setattr__(self, "slopes", slopes)
        corr = checked_corr(self.corr, len(slopes) + 1, f"{what}.corr")
        if not slopes and corr not in (0.0, ((1.0,),)):
            raise OptionError(f"{what}.corr correlates random slopes with the intercept; give {what}.slopes first")
        object.__setattr__(self, "corr", 0.0 if not slopes else corr)

    @property
    def id_column(self) -> str:
        """The id column's name: ``id``, which building the level fills in."""
        assert self.id is not None
        return self.id

    def correlation(self) -> np.ndarray:
        """The correlation matrix of (intercept, slopes...)."""
        q = len(self.slopes) + 1
        if isinstance(self.corr, float):
            return np.full((q, q), self.corr) + np.eye(q) * (1.0 - self.corr)
        return np.array(self.corr, dtype=float)

    def covariance_factor(self) -> np.ndarray:
        """A matrix ``F`` with ``F F' = D R D``: effects are ``z @ F.T`` for standard normal ``z``."""
        sds = np.array([self.sd, *self.slopes.values()])
        r = self.correlation()
        try:
            f = np.linalg.cholesky(r)
        except np.linalg.LinAlgError:  # singular (|corr| = 1): a symmetric square root
            w, v = np.linalg.eigh(r)
            f = v * np.sqrt(np.clip(w, 0.0, None))
        return sds[:, None] * f


def checked_corr(value: object, q: int, what: str) -> float | tuple[tuple[float, ...], ...]:
    if isinstance(value, bool):
        raise OptionError(f"{what} must be a number or a matrix, got {value!r}")
    if isinstance(value, (int, float)):
        r = float(value)
        if not -1.0 <= r <= 1.0:
            raise OptionError(f"{what} must lie in [-1, 1], got {r}")
        if q > 1 and r < -1.0 / (q - 1) - 1e-12:
            raise OptionError(f"{what} = {r} for all {q} pairs is not a valid correlation; use >= {-1 / (q - 1):.3g}")
        return r
    try:
        m = np.array(value, dtype=float)
    except (TypeError, ValueError):
        raise OptionError(f"{what} must be a number or a {q} x {q} matrix (list of rows)") from None
    if m.shape != (q, q):
        raise OptionError(f"{what} must be {q} x {q} (intercept and {q - 1} slope(s)), got shape {m.shape}")
    if not np.all(np.isfinite(m)) or not np.allclose(m, m.T) or not np.allclose(np.diag(m), 1.0):
        raise OptionError(f"{what} must be symmetric with ones on the diagonal")
    if np.any(np.abs(m) > 1.0) or np.linalg.eigvalsh(m).min() < -1e-10:
        raise OptionError(f"{what} is not positive semi-definite; it is not a correlation matrix")
    return tuple(tuple(float(x) for x in row) for row in m)


@dataclass(frozen=True)
class Observations:
    """Repeated measures per innermost unit: how many (``n``) and the occasion column's name.

    With ``name=None`` no occasion column is written.  ``n`` may be a count distribution.
    """

    n: Count = 1
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", checked_count(self.n, "observations.n"))
        if self.name is not None:
            checked_name(self.name, "observations.name")


@dataclass(frozen=True)
class Covariate:
    """A covariate or treatment drawn from ``dist`` per observation (``level=None``) or
    once per unit of the named level and shared by all its observations."""

    name: str
    dist: Distribution
    _: KW_ONLY
    level: str | None = None

    def __post_init__(self) -> None:
        checked_name(self.name, "a covariate's name")
        object.__setattr__(self, "dist", parse_distribution(self.dist, what=f"covariates.{self.name}.dist"))
        if self.level is not None and not isinstance(self.level, str):
            raise OptionError(f"covariates.{self.name}.level must be a level's name, got {self.level!r}")
