"""A multilevel design: nested levels, repeated measures, covariates and the true model.

Levels are listed outermost first (district, school, teacher, student).  Unit ``g`` of
level ``l`` has a random intercept and, optionally, random slopes on named covariates,

    (b0_g, b1_g, ..., bq_g) ~ N(0, D R D),   D = diag(sd, slope sds),  R = ``corr``,

independent across units and levels.  Observation ``i`` of innermost unit ``s`` (one of
``observations.n`` repeated measures, e.g. semesters) has covariates ``x_i`` and response

    y_i = intercept + sum_j beta_j x_ij
          + sum_l ( b0_{l,g_l(i)} + sum_j b_{l,j,g_l(i)} x_ij ) + e_i,   e_i ~ N(0, residual_sd^2).

A covariate is drawn per observation or once per unit of a named level (a treatment
assigned per teacher or school).  Units per parent are fixed or drawn per parent from a
count distribution (unbalanced designs); the outermost level's count is a whole number.

Everything here is an immutable value: :meth:`Design.set` returns a modified copy, with
the dotted paths of the TOML form (``"levels.district.n"``, ``"fixed.tutoring"``).
"""

from __future__ import annotations

import math
import os
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


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.isidentifier():
        raise OptionError(f"{what} must be a column name (letters, digits, _), got {value!r}")
    return value


def _sd(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise OptionError(f"{what} must be a number, got {value!r}")
    if value < 0:
        raise OptionError(f"{what} must be >= 0, got {value}; use a non-negative standard deviation")
    return float(value)


def _count(value: object, what: str) -> Count:
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
        _name(self.name, "a level's name")
        object.__setattr__(self, "id", _name(self.id if self.id is not None else f"{self.name}_id", f"{what}.id"))
        object.__setattr__(self, "n", _count(self.n, f"{what}.n"))
        object.__setattr__(self, "sd", _sd(self.sd, f"{what}.sd"))
        slopes = FrozenMap(self.slopes, what=f"{what}.slopes")
        for k, v in slopes.items():
            _sd(v, f"{what}.slopes.{k}")
        object.__setattr__(self, "slopes", slopes)
        corr = _corr(self.corr, len(slopes) + 1, f"{what}.corr")
        if not slopes and corr not in (0.0, ((1.0,),)):
            raise OptionError(f"{what}.corr correlates random slopes with the intercept; give {what}.slopes first")
        object.__setattr__(self, "corr", 0.0 if not slopes else corr)

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


def _corr(value: object, q: int, what: str) -> float | tuple[tuple[float, ...], ...]:
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
        object.__setattr__(self, "n", _count(self.n, "observations.n"))
        if self.name is not None:
            _name(self.name, "observations.name")


@dataclass(frozen=True)
class Covariate:
    """A covariate or treatment drawn from ``dist`` per observation (``level=None``) or
    once per unit of the named level and shared by all its observations."""

    name: str
    dist: Distribution
    _: KW_ONLY
    level: str | None = None

    def __post_init__(self) -> None:
        _name(self.name, "a covariate's name")
        object.__setattr__(self, "dist", parse_distribution(self.dist, what=f"covariates.{self.name}.dist"))
        if self.level is not None and not isinstance(self.level, str):
            raise OptionError(f"covariates.{self.name}.level must be a level's name, got {self.level!r}")


@dataclass(frozen=True)
class Design:
    """A complete simulation design; see the module docstring for the model."""

    levels: tuple[Level, ...]
    _: KW_ONLY
    observations: Observations = field(default_factory=Observations)
    residual_sd: float = 1.0
    covariates: tuple[Covariate, ...] = ()
    fixed: Mapping[str, float] = field(default_factory=FrozenMap)
    response: str = "y"

    def __post_init__(self) -> None:
        levels = tuple(self.levels)
        if not levels or not all(isinstance(lv, Level) for lv in levels):
            raise OptionError("a design needs at least one level (hlm.simulate.Level), outermost first")
        object.__setattr__(self, "levels", levels)
        if not isinstance(self.observations, Observations):
            raise OptionError("observations must be an hlm.simulate.Observations")
        covs = tuple(self.covariates)
        if not all(isinstance(c, Covariate) for c in covs):
            raise OptionError("covariates must be hlm.simulate.Covariate values")
        object.__setattr__(self, "covariates", covs)
        object.__setattr__(self, "residual_sd", _sd(self.residual_sd, "residual_sd"))
        object.__setattr__(self, "fixed", FrozenMap(self.fixed, what="fixed effect"))
        _name(self.response, "response")
        self._check_names()

    def _check_names(self) -> None:
        if not isinstance(self.levels[0].n, int):
            raise OptionError(
                f"levels.{self.levels[0].name}.n is the outermost level's total count: make it a whole number"
            )
        seen: dict[str, str] = {}

        def claim(col: str, owner: str) -> None:
            if col in seen:
                raise OptionError(f"the name '{col}' is used twice ({seen[col]} and {owner}); rename one")
            seen[col] = owner

        names = [lv.name for lv in self.levels]
        if len(set(names)) != len(names):
            raise OptionError(f"level names must differ, got {', '.join(names)}")
        for lv in self.levels:
            claim(lv.id, f"levels.{lv.name}.id")
        if self.observations.name is not None:
            claim(self.observations.name, "observations.name")
        for c in self.covariates:
            claim(c.name, f"covariates.{c.name}")
            if c.level is not None and c.level not in names:
                raise OptionError(
                    f"covariates.{c.name}.level = '{c.level}' is not a level; use one of {', '.join(names)} "
                    "(or omit it: per observation)"
                )
        claim(self.response, "response")
        variables = self.variables()
        for k in self.fixed:
            if k != INTERCEPT and k not in variables:
                raise OptionError(
                    f"fixed.{k}: '{k}' is not a covariate; use intercept or one of {', '.join(variables) or '(none)'}"
                )
        for lv in self.levels:
            for k in lv.slopes:
                if k not in variables:
                    raise OptionError(
                        f"levels.{lv.name}.slopes.{k}: '{k}' is not a covariate; "
                        f"use one of {', '.join(variables) or '(none)'}"
                    )

    def variables(self) -> list[str]:
        """Names that can carry fixed effects and random slopes: covariates and the occasion."""
        out = [c.name for c in self.covariates]
        return out + ([self.observations.name] if self.observations.name else [])

    def level(self, name: str) -> Level:
        """The level called ``name``."""
        for lv in self.levels:
            if lv.name == name:
                return lv
        raise OptionError(f"no level '{name}'; the levels are {', '.join(lv.name for lv in self.levels)}")

    @property
    def intercept(self) -> float:
        """The fixed intercept (0 unless given)."""
        return self.fixed.get(INTERCEPT, 0.0)

    def expected_rows(self) -> float:
        """Expected number of rows (exact for a balanced design)."""
        return math.prod(mean_count(lv.n) for lv in self.levels) * mean_count(self.observations.n)

    def is_balanced(self) -> bool:
        """True when every count is a whole number."""
        return all(isinstance(lv.n, int) for lv in self.levels) and isinstance(self.observations.n, int)

    # -- conversions (hlm.simulate.toml does the work) ---------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The design as plain data (the TOML form)."""
        from hlm.simulate.toml import design_to_dict

        return design_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Design:
        """A design from plain data (the TOML form); unknown keys are errors."""
        from hlm.simulate.toml import design_from_dict

        return design_from_dict(data)

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> Design:
        """Read a design file."""
        from hlm.simulate.toml import read_design

        return read_design(path)

    def to_toml(self, path: str | os.PathLike | None = None) -> str:
        """The design as TOML text; also written to ``path`` when given."""
        from hlm.simulate.toml import write_design

        return write_design(self, path)

    def set(self, path: str, value: Any) -> Design:
        """A copy with one value replaced, e.g. ``design.set("levels.district.n", 50)``."""
        from hlm.simulate.toml import set_path

        return set_path(self, path, value)
