"""A two-stage sample from a simulated population (PISA's design): clusters by systematic PPS,
then rows within each selected cluster by Poisson sampling, with the weight columns.

The design's outermost level is the population of clusters (its ``n`` units) and its rows the
population within them.  Stage 1 draws ``clusters`` of them by systematic sampling with
probability proportional to the size measure

    s_j = N_j exp(informative b_j / sd),

N_j the cluster's rows and b_j its random intercept (``informative = 0``: plain PPS, not
informative); inclusion probabilities pi_j = m s_j / sum s (clusters with m s_j / sum s >= 1
are taken with certainty, and m reduced, until none is left).  Stage 2 keeps row i of a
selected cluster independently with

    pi_i|j = expit(logit(rate) + informative_within e_i / residual_sd + unequal nu_i),

e_i its residual (informative on the outcome) and nu_i ~ N(0, 1) independent of the model
(unequal but not informative).  Columns written: ``weights[1]`` = 1 / pi_j (the cluster's),
``weights[0]`` = 1 / (pi_i|j pi_j) (the unconditional row weight, as PISA's W_FSTUWT) and
``weights[0] + "_cond"`` = 1 / pi_i|j.  The truth stays the population's parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from hlm.errors import OptionError
from hlm.simulate.parts import checked_name

SAMPLING_KEYS = ("clusters", "rate", "informative", "informative_within", "unequal", "weights")


@dataclass(frozen=True)
class Sampling:
    """A two-stage sample (see the module docstring)."""

    clusters: int
    rate: float = 0.5
    informative: float = 0.0
    informative_within: float = 0.0
    unequal: float = 0.0
    weights: tuple[str, str] = ("w_row", "w_cluster")

    def __post_init__(self) -> None:
        if isinstance(self.clusters, bool) or not isinstance(self.clusters, int) or self.clusters < 2:
            raise OptionError(f"sampling.clusters must be a whole number >= 2, got {self.clusters!r}")
        if not 0.0 < float(self.rate) <= 1.0:
            raise OptionError(f"sampling.rate must be in (0, 1], got {self.rate!r}")
        for key in ("informative", "informative_within", "unequal"):
            if not np.isfinite(float(getattr(self, key))):
                raise OptionError(f"sampling.{key} must be a finite number")
        names = tuple(self.weights)
        if len(names) != 2:
            raise OptionError("sampling.weights names two columns: the rows' weight, then the clusters'")
        for name in names:
            checked_name(name, "sampling.weights")
        object.__setattr__(self, "weights", names)

    @property
    def columns(self) -> tuple[str, str, str]:
        """The weight columns written: unconditional row, conditional row, cluster."""
        return self.weights[0], self.weights[0] + "_cond", self.weights[1]

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(self.weights) if k == "weights" else getattr(self, k)) for k in SAMPLING_KEYS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sampling:
        unknown = [k for k in data if k not in SAMPLING_KEYS]
        if unknown:
            raise OptionError(f"sampling: unknown key {unknown[0]!r}; the keys are {', '.join(SAMPLING_KEYS)}")
        if "clusters" not in data:
            raise OptionError("sampling needs clusters = (clusters drawn by PPS)")
        values: dict[str, Any] = {k: tuple(v) if k == "weights" else v for k, v in data.items()}
        return cls(**values)


def pps_systematic(size: np.ndarray, m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Systematic PPS of m units (random order): the selected indices and every unit's pi."""
    if m > len(size):
        raise OptionError(f"sampling.clusters = {m} exceeds the {len(size)} clusters of the population")
    certain = np.zeros(len(size), dtype=bool)
    while True:
        k = m - int(certain.sum())
        pi = np.where(certain, 1.0, k * size / size[~certain].sum())
        new = ~certain & (pi >= 1.0)
        if not new.any():
            break
        certain |= new
    order = rng.permutation(np.flatnonzero(~certain))
    points = rng.uniform() + np.arange(k)
    chosen = order[np.searchsorted(np.cumsum(pi[order]), points, side="left")]
    return np.sort(np.concatenate([np.flatnonzero(certain), chosen])), pi


def draw_sample(
    population: pd.DataFrame,
    sampling: Sampling,
    cluster: str,
    effect: str,
    sd: float,
    residual_sd: float,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """The two-stage sample of ``population`` (with its ``effect`` and ``residual`` columns) and
    its weight columns; ``cluster`` is the outermost level's id column."""
    ids, codes = np.unique(population[cluster].to_numpy(), return_inverse=True)
    N = np.bincount(codes).astype(float)
    b = population[effect].to_numpy()[np.unique(codes, return_index=True)[1]]
    scale = float(sd) if sd > 0 else 1.0
    picked, pi = pps_systematic(N * np.exp(sampling.informative * b / scale), sampling.clusters, rng)
    in_cluster = np.isin(codes, picked)
    rows = population.loc[in_cluster].reset_index(drop=True)
    e = rows["residual"].to_numpy() / (residual_sd if residual_sd > 0 else 1.0)
    nu = rng.standard_normal(len(rows))
    pcond = expit(logit(sampling.rate) + sampling.informative_within * e + sampling.unequal * nu)
    keep = rng.uniform(size=len(rows)) < pcond
    pj = pi[codes[in_cluster]]
    w_row, w_cond, w_cluster = sampling.columns
    rows = rows.assign(**{w_row: 1.0 / (pcond * pj), w_cond: 1.0 / pcond, w_cluster: 1.0 / pj})
    return rows.loc[keep].reset_index(drop=True)
