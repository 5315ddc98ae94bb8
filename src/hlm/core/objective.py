"""The deviance function of theta (lme4's ``mkLmerDevfun``) built from aggregates."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hlm.aggregate.stats import Aggregates
from hlm.core.crossed import CrossedSystem, build_crossed, crossed_terms
from hlm.core.deviance import Profiled, profile
from hlm.core.nested import InterceptChain, LeafClasses, intercept_chain, intercept_terms, leaf_classes, nested_terms
from hlm.core.structure import Structure


@dataclass(frozen=True)
class DevianceFunction:
    """theta -> REML criterion or ML deviance; nested or crossed evaluation by structure."""

    agg: Aggregates
    struct: Structure
    reml: bool
    crossed: CrossedSystem | None = field(default=None)
    intercepts: InterceptChain | None = field(default=None)
    pooled: LeafClasses | None = field(default=None)

    @classmethod
    def build(cls, agg: Aggregates, struct: Structure, reml: bool) -> "DevianceFunction":
        if not agg.nested:
            return cls(agg, struct, reml, build_crossed(agg, struct))
        pooled = leaf_classes(agg) if agg.pool == ("(Intercept)",) else None
        return cls(agg, struct, reml, None, intercept_chain(agg, pooled is not None), pooled)

    def terms(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """log|H| and K'H^{-1}K at theta."""
        lambdas = self.struct.lambdas(np.asarray(theta, dtype=float))
        if self.intercepts is not None:
            return intercept_terms(self.agg, self.intercepts, lambdas, self.pooled)
        if self.crossed is None:
            return nested_terms(self.agg, self.struct, lambdas)
        return crossed_terms(self.crossed, self.agg, lambdas)

    def profiled(self, theta: np.ndarray) -> Profiled:
        logdet, Q = self.terms(theta)
        return profile(logdet, Q, self.agg.nobs, self.reml)

    def __call__(self, theta: np.ndarray) -> float:
        try:
            return self.profiled(theta).objective
        except np.linalg.LinAlgError:
            return np.inf
