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


OUTCOME_LINKS = {
    "gaussian": ("identity",),
    "binomial": ("logit", "probit", "cloglog"),
    "poisson": ("log",),
}


@dataclass(frozen=True)
class Outcome:
    """How the response is drawn from the linear predictor eta = fixed part + random effects.

    * ``"gaussian"`` (identity link): y = eta + e, e ~ N(0, residual_sd^2);
    * ``"binomial"``: y ~ Bernoulli(h(eta)), h the inverse logit, probit or cloglog link (no residual);
    * ``"poisson"``: y ~ Poisson(exp(eta)) (log link; no residual);
    * ``threshold=c`` (family binomial, link probit, also when not given): the seed's ``pass = perform > c`` -- a
      Gaussian latent response y* = eta + e is drawn and y = 1{y* > c}, so that
      P(y = 1) = Phi((eta - c) / residual_sd): a probit GLMM whose coefficients and SDs are the
      design's divided by residual_sd (the intercept's less c).  ``latent`` names a column that
      keeps y* (omit for none).

    ``link`` None is the family's first (identity, logit, log).
    """

    family: str = "gaussian"
    link: str | None = None
    threshold: float | None = None
    latent: str | None = None

    def __post_init__(self) -> None:
        if self.threshold is not None and self.family == "gaussian" and self.link is None:
            object.__setattr__(self, "family", "binomial")  # a cut response is binary: what a threshold means
            object.__setattr__(self, "link", "probit")
        if self.family not in OUTCOME_LINKS:
            raise OptionError(f"outcome.family must be one of {', '.join(OUTCOME_LINKS)}; not {self.family!r}")
        links = OUTCOME_LINKS[self.family]
        link = links[0] if self.link is None else self.link
        if link not in links:
            raise OptionError(
                f"outcome.link {link!r} is not available for the {self.family} family; use {' or '.join(links)}"
            )
        object.__setattr__(self, "link", link)
        if self.threshold is not None:
            if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)):
                raise OptionError(f"outcome.threshold must be a number, got {self.threshold!r}")
            if not math.isfinite(self.threshold):
                raise OptionError(f"outcome.threshold must be finite, got {self.threshold}")
            if (self.family, link) != ("binomial", "probit"):
                raise OptionError(
                    "outcome.threshold cuts a normal latent response: that is family = 'binomial', link = 'probit'"
                )
            object.__setattr__(self, "threshold", float(self.threshold))
        if self.latent is not None:
            if self.threshold is None:
                raise OptionError("outcome.latent names the latent response of a threshold; give outcome.threshold")
            checked_name(self.latent, "outcome.latent")

    @property
    def has_residual(self) -> bool:
        """True when the draw uses residual_sd (Gaussian, or the latent response of a threshold)."""
        return self.family == "gaussian" or self.threshold is not None

    def link_scale(self, residual_sd: float) -> tuple[float, float]:
        """(shift, divisor) that take the design's intercept and coefficients to the outcome model's
        link scale: a threshold's probit model has (b0 - c) / s and b / s; otherwise (0, 1)."""
        if self.threshold is None:
            return 0.0, 1.0
        return self.threshold, residual_sd
