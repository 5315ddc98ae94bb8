"""Simulate multilevel designs: students in teachers in schools in districts, and the like.

A :class:`Design` names the levels outermost first, each with its units per parent
(fixed, or drawn for unbalanced designs) and the SD of its random intercept (optionally
random slopes with their SDs and correlation); the repeated measures per innermost unit;
covariates and treatments, drawn per observation or per unit of a level; the fixed
effects; and the residual SD.  The response is

    y = intercept + sum_j beta_j x_j + sum_levels (b0 + sum_j b_j x_j) + e,

with independent normal random effects per unit and level and normal residuals; an
:class:`Outcome` draws a binary or count response from the same linear predictor instead
(``Outcome("binomial", "logit")``, ``Outcome("poisson")``, ``Outcome(threshold=0.0)``).

    >>> from hlm.simulate import Design, simulate
    >>> design = Design.from_toml("examples/seed.toml").set("levels.district.n", 10)
    >>> frame = simulate(design, seed=1)          # 16,000 rows
"""

from hlm.simulate.design import Covariate, Design, FrozenMap, Level, Observations, Outcome
from hlm.simulate.distributions import (
    Bernoulli,
    Normal,
    Poisson,
    Uniform,
    UniformInt,
    parse_distribution,
)
from hlm.simulate.draw import WITHIN_SUFFIX, draw_block
from hlm.simulate.run import rng_for, simulate, simulate_to_parquet, write_frame
from hlm.simulate.toml import parse_assignment, parse_value

__all__ = [
    "Bernoulli",
    "Covariate",
    "Design",
    "FrozenMap",
    "Level",
    "Normal",
    "Observations",
    "Outcome",
    "Poisson",
    "Uniform",
    "UniformInt",
    "WITHIN_SUFFIX",
    "draw_block",
    "parse_assignment",
    "parse_distribution",
    "parse_value",
    "rng_for",
    "simulate",
    "simulate_to_parquet",
    "write_frame",
]
