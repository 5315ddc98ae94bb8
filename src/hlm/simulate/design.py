"""A multilevel design: nested levels, repeated measures, covariates and the true model.

Levels are listed outermost first (district, school, teacher, student).  Unit ``g`` of
level ``l`` has a random intercept and, optionally, random slopes on named covariates,

    (b0_g, b1_g, ..., bq_g) ~ N(0, D R D),   D = diag(sd, slope sds),  R = ``corr``,

independent across units and levels.  Observation ``i`` of innermost unit ``s`` (one of
``observations.n`` repeated measures, e.g. semesters) has covariates ``x_i`` and response

    y_i = intercept + sum_j beta_j x_ij
          + sum_l ( b0_{l,g_l(i)} + sum_j b_{l,j,g_l(i)} x_ij ) + e_i,   e_i ~ N(0, residual_sd^2).

With a non-Gaussian ``outcome`` (:class:`hlm.simulate.Outcome`) the same linear predictor
without e_i gives the response's mean through the inverse link: y_i ~ Bernoulli(h(eta_i)) or
Poisson(exp(eta_i)); or y_i = 1{eta_i + e_i > c} (the seed's ``pass = perform > 0``).

A covariate is drawn per observation or once per unit of a named level (a treatment
assigned per teacher or school).  Units per parent are fixed or drawn per parent from a
count distribution (unbalanced designs); the outermost level's count is a whole number.

Everything here is an immutable value: :meth:`Design.set` returns a modified copy, with
the dotted paths of the TOML form (``"levels.district.n"``, ``"fixed.tutoring"``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from hlm.errors import OptionError
from hlm.simulate.parts import (
    INTERCEPT,
    Covariate,
    FrozenMap,
    Level,
    Observations,
    Outcome,
    checked_name,
    checked_sd,
    mean_count,
)
from hlm.simulate.sampling import Sampling
from hlm.simulate.toml import design_from_dict, design_to_dict, read_design, set_path, write_design


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
    sampling: Sampling | None = None  # a two-stage sample of the population (hlm.simulate.sampling)
    outcome: Outcome = field(default_factory=Outcome)

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
        object.__setattr__(self, "residual_sd", checked_sd(self.residual_sd, "residual_sd"))
        object.__setattr__(self, "fixed", FrozenMap(self.fixed, what="fixed effect"))
        checked_name(self.response, "response")
        if self.sampling is not None and (not isinstance(self.sampling, Sampling) or len(levels) != 1):
            raise OptionError(
                "sampling draws a two-stage sample from a one-level design (clusters and their rows): "
                "give one [[levels]] table and an hlm.simulate.Sampling"
            )
        if not isinstance(self.outcome, Outcome):
            raise OptionError("outcome must be an hlm.simulate.Outcome, e.g. Outcome('binomial', 'logit')")
        if self.outcome.threshold is not None and self.residual_sd <= 0:
            raise OptionError("outcome.threshold cuts a latent response with residual_sd > 0; give residual_sd")
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
            claim(lv.id_column, f"levels.{lv.name}.id")
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
        for col in self.sampling.columns if self.sampling is not None else ():
            claim(col, "sampling.weights")
        if self.outcome.latent is not None:
            claim(self.outcome.latent, "outcome.latent")
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
        return design_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Design:
        """A design from plain data (the TOML form); unknown keys are errors."""
        return design_from_dict(data, cls)

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> Design:
        """Read a design file."""
        return read_design(path, cls)

    def to_toml(self, path: str | os.PathLike | None = None) -> str:
        """The design as TOML text; also written to ``path`` when given."""
        return write_design(self, path)

    def set(self, path: str, value: Any) -> Design:
        """A copy with one value replaced, e.g. ``design.set("levels.district.n", 50)``."""
        return set_path(self, path, value)
