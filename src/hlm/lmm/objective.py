"""The deviance function of theta (lme4's ``mkLmerDevfun``) built from aggregates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from hlm.aggregate.stats import Aggregates
from hlm.lmm.blocked import BlockedSystem, build_blocked
from hlm.lmm.crossed import CrossedSystem, build_crossed, crossed_terms, with_responses
from hlm.lmm.deviance import Profiled, profile
from hlm.lmm.gradient import Derivatives, derivatives
from hlm.lmm.kernels import OneLevel, one_level
from hlm.lmm.nested import InterceptChain, LeafClasses, intercept_chain, intercept_terms, leaf_classes, nested_terms
from hlm.lmm.structure import Structure

Evaluator = Literal["intercepts", "single", "nested", "blocked", "crossed"]
CROSSED_EVALUATORS: frozenset[Evaluator] = frozenset({"blocked", "crossed"})
GRADIENT_MAX = 2000  # random effects up to which the (dense) analytic gradient is offered


@dataclass(frozen=True)
class DevianceFunction:
    """theta -> REML criterion or ML deviance; nested or crossed evaluation by structure."""

    agg: Aggregates
    struct: Structure
    reml: bool
    crossed: CrossedSystem | None = field(default=None)
    intercepts: InterceptChain | None = field(default=None)
    pooled: LeafClasses | None = field(default=None)
    blocked: BlockedSystem | None = field(default=None)
    single: OneLevel | None = field(default=None)

    @classmethod
    def build(cls, agg: Aggregates, struct: Structure, reml: bool) -> DevianceFunction:
        if not agg.nested:
            crossed = build_crossed(agg, struct)
            q = [len(cols) for cols in struct.factor_cols]
            return cls(agg, struct, reml, crossed, blocked=build_blocked(crossed, agg, q))
        pooled = leaf_classes(agg) if agg.intercepts_only else None
        chain = intercept_chain(agg, pooled is not None)
        return cls(agg, struct, reml, None, chain, pooled, single=one_level(agg, struct) if chain is None else None)

    def rescaled(self, agg: Aggregates, same_z: bool) -> DevianceFunction:
        """The function built on ``agg``, the aggregates of the same rows with the columns of K
        (and, unless ``same_z``, of Z) rescaled; with Z unchanged, crossed factors keep their
        Z'Z layout (only Z'K is laid out again)."""
        if not same_z or self.crossed is None:
            return DevianceFunction.build(agg, self.struct, self.reml)
        crossed = with_responses(self.crossed, agg, self.struct)
        q = [len(cols) for cols in self.struct.factor_cols]
        return DevianceFunction(agg, self.struct, self.reml, crossed, blocked=build_blocked(crossed, agg, q))

    @property
    def evaluator(self) -> Evaluator:
        """The algorithm chosen for this structure when the function was built: a chain of
        scalar intercepts, one factor with vector effects (compiled), nested factors, crossed
        factors with vector effects in dense blocks, or crossed factors (sparse or scalar).
        Later stages (conditional modes, bootstrap, df) ask this instead of choosing again."""
        if self.intercepts is not None:
            return "intercepts"
        if self.crossed is None:
            return "nested" if self.single is None else "single"
        return "crossed" if self.blocked is None else "blocked"

    @property
    def crossed_factors(self) -> bool:
        """Whether the evaluator works on crossed factors (its :class:`CrossedSystem` lays out
        the random effects; nothing nests): conditional modes and simulations follow."""
        return self.evaluator in CROSSED_EVALUATORS

    @property
    def scalar_crossed(self) -> bool:
        """Whether the factors are crossed with one random effect each (scalar Lambda_f)."""
        return self.crossed is not None and self.crossed.scalar is not None

    def terms(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """log|H| and K'H^{-1}K at theta, H = Var(y) / sigma^2.

        With precision weights W the core works on the rows scaled by W^{1/2} (weighted
        aggregates), where H_w = I + Z_w Lambda Lambda' Z_w'; then H = W^{-1/2} H_w W^{-1/2},
        so log|H| = log|H_w| - sum log w (lme4's ldL2 - ldW) and K'H^{-1}K = K_w'H_w^{-1}K_w."""
        lambdas = self.struct.lambdas(np.asarray(theta, dtype=float))
        if self.intercepts is not None:
            logdet, Q = intercept_terms(self.agg, self.intercepts, lambdas, self.pooled)
        elif self.single is not None:
            logdet, Q = self.single.terms(lambdas)
        elif self.blocked is not None:
            logdet, Q = self.blocked.terms(lambdas)
        elif self.crossed is None:
            logdet, Q = nested_terms(self.agg, self.struct, lambdas)
        else:
            logdet, Q = crossed_terms(self.crossed, self.agg, lambdas)
        if self.agg.weights is not None:
            logdet -= self.agg.log_weights
        return logdet, Q

    def profiled(self, theta: np.ndarray) -> Profiled:
        logdet, Q = self.terms(theta)
        return profile(logdet, Q, self.agg.nobs, self.reml)

    @property
    def has_gradient(self) -> bool:
        """Whether :meth:`gradient` is available: crossed factors in the blocked layout (its
        factor gives the gradient by blocks) or with at most GRADIENT_MAX random effects
        (:mod:`hlm.lmm.gradient` then works on the dense q x q matrix)."""
        return self.crossed is not None and (self.blocked is not None or self.crossed.ztz.shape[0] <= GRADIENT_MAX)

    def derivatives(self, theta: np.ndarray) -> Derivatives:
        """The criterion, its analytic gradient and d criterion / d T_f at theta
        (:func:`hlm.lmm.gradient.derivatives`)."""
        assert self.crossed is not None, "the analytic gradient is for crossed factors"
        return derivatives(self.crossed, self.blocked, self.agg, self.struct, self.reml, theta)

    def gradient(self, theta: np.ndarray) -> np.ndarray:
        """The analytic gradient of the criterion at theta."""
        return self.derivatives(theta).gradient

    def __call__(self, theta: np.ndarray) -> float:
        try:
            return self.profiled(theta).objective
        except np.linalg.LinAlgError:
            return np.inf
