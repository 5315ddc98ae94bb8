"""A lean REML/ML fit for power replicates: the fixed effect of one term and its SE, nothing else.

A power replicate needs beta_j and SE_j = sigma (Q_XX^{-1})_jj^{1/2} at the optimum theta; the
full fit (:func:`hlm.lmm.pipeline.fit_aggregates`) also checks the data, optimises to round-off
(ftol_rel 1e-14), checks convergence by finite differences (about a third of its evaluations)
and builds the result record.  Replicates of one grid point share their layout -- X, Z and
therefore the checks, the collinearity, the structure and the column scales -- so a *plan* is
made once from one full fit (the pilot), and each replicate then runs only

    DevianceFunction.build -> BOBYQA from the pilot's theta (the full fit's ftol_rel) -> profile at the optimum,

the criterion evaluated by type (:mod:`hlm.power.typed`: one compiled call, O(types)) where the
model is a chain of random intercepts whose groups fall into few types (balanced designs).  That
criterion is cheap enough for BOBYQA to restart once from where it stopped (radius ``POLISH``):
beta and its SE then lie within about 1e-7 of the full fit's (1e-6 without the restart).

The pilot's theta is a start near every replicate's optimum, and the same start for every
replicate (results do not depend on how replicates are split over processes).  A replicate the
lean path cannot vouch for -- BOBYQA stopped otherwise than by its tolerances, a nonfinite
criterion, or a variance parameter within ``BOUNDARY`` of zero on unit-rms columns (where the
full fit snaps to the bound and restarts) -- is refitted by the full path (``None`` here).  With
the criterion by type (nested scalar intercepts: the full fit has no restarts for them) such a
parameter is instead snapped to its bound as the full fit snaps it
(:func:`hlm.lmm.optimize.snap_to_bounds`, on unit-rms columns).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from hlm.aggregate.stats import Aggregates
from hlm.lmm.objective import DevianceFunction
from hlm.lmm.optimize import snap_to_bounds
from hlm.lmm.pipeline import fit_aggregates
from hlm.lmm.result import LmmResult
from hlm.lmm.scaling import standardized_theta
from hlm.lmm.structure import Structure
from hlm.numerics.bobyqa import bobyqa
from hlm.power.typed import TypedLayout
from hlm.spec import ModelSpec

FTOL_REL = 1e-14  # the full fit's: estimates and SEs within 1e-6 of its (1e-12 leaves 2e-5)
BOUNDARY = 1e-3  # standardised theta this close to its bound: refit by the full path
STEP = 0.05  # BOBYQA's initial trust radius around the pilot's theta
POLISH = 1e-3  # its radius when it restarts from where it stopped (the criterion by type)
STOPPED = ("success", "ftol reached", "xtol reached")


@dataclass(frozen=True)
class LeanPlan:
    """What the replicates of one layout share: the structure, the start, the term's column,
    and theta's multipliers to unit-rms random-effect columns (X and Z do not change)."""

    struct: Structure
    theta0: np.ndarray
    column: int
    reml: bool
    to_standard: np.ndarray
    typed: TypedLayout | None  # the criterion by type (nested random intercepts, few types)

    @classmethod
    def pilot(cls, spec: ModelSpec, agg: Aggregates, term: str, *, reml: bool) -> LeanPlan | None:
        """The plan from a full fit to ``agg`` (one replicate of the layout); None where the lean
        path does not apply: a column dropped as collinear, a structured covariance, a pilot that
        did not converge, or one on a bound without the criterion by type (which starts its
        replicates STEP off that bound)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit: LmmResult = fit_aggregates(spec, agg, reml=reml)
        names = fit.aggregates.xnames
        if fit.dropped_columns or fit.structure.structured or term not in names:
            return None
        if not fit.converged or agg.weights is not None:
            return None
        theta = np.asarray(fit.theta, dtype=float)
        to_standard = standardized_theta(agg, fit.structure, np.ones(len(theta)))
        typed = TypedLayout.of(agg, fit.structure, reml)
        bound = None if typed is None else typed.bind(agg)
        objective = fit.profiled.objective  # the same criterion (and both kernels compiled before any fork)
        if bound is not None and not all(
            math.isclose(f, objective, rel_tol=1e-10) for f in (bound(theta), bound.profiled(theta).objective)
        ):
            typed = None
        if fit.singular:  # replicates snap to a bound only with the criterion by type; start off the bound
            if typed is None:
                return None
            lower = fit.structure.lower
            theta = np.where(
                np.isfinite(lower) & (theta * to_standard < lower + STEP), lower + STEP / to_standard, theta
            )
        return cls(fit.structure, theta, names.index(term), reml, to_standard, typed)

    def estimate(self, agg: Aggregates) -> tuple[float, float] | None:
        """(beta_term, SE) of the model fitted to ``agg`` (same layout as the pilot's), or None
        where the full fit must decide (module docstring), a failed evaluation included."""
        typed = None if self.typed is None else self.typed.bind(agg)
        devfun = DevianceFunction.build(agg, self.struct, self.reml) if typed is None else typed
        lower = self.struct.lower
        theta = self.theta0
        for step in (STEP,) if typed is None else (STEP, POLISH):  # a cheap criterion: restart where it stopped
            run = bobyqa(
                devfun,
                theta,
                lower,
                step=step,
                ftol_abs=0.0,
                ftol_rel=FTOL_REL,
                xtol_abs=1e-10,
                maxeval=2000,
                catch_failures=True,
            )
            theta = np.where(np.isfinite(lower), np.maximum(run.x, lower), run.x)
            if run.code not in STOPPED:
                return None
        if np.any(np.isfinite(lower) & (theta * self.to_standard < lower + BOUNDARY)):
            if self.typed is None:
                return None
            scale = self.to_standard
            std, _ = snap_to_bounds(lambda t: devfun(t / scale), theta * scale, devfun(theta), lower * scale)
            theta = std / scale
        try:
            prof = devfun.profiled(theta)
            se2 = prof.sigma2 * prof.qxx_inv[self.column, self.column]
        except (np.linalg.LinAlgError, ArithmeticError, ValueError):
            return None
        if not (math.isfinite(prof.objective) and math.isfinite(se2) and se2 > 0):
            return None
        return float(prof.beta[self.column]), math.sqrt(se2)
