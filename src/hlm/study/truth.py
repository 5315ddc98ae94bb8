"""The true values a fitted model estimates, read off a simulation design.

A design's levels are nested, outermost first; level ``l`` has random effects with
covariance ``S_l`` over the columns ``("(Intercept)", slope covariates...)`` and the
residual has variance ``s^2``.  A model sees only some of the levels, as grouping factors
matched to design levels by their id columns (lme4's ``school_id:dist_id`` is matched on
its innermost id, ``school_id``; Stata's ``|| school_id:`` names the id itself).  Levels
the model leaves out are *collapsed* into the modelled ones:

- a design level goes to the nearest modelled level at or inside it (an effect constant
  within the units of that modelled factor: omitting ``teacher`` in a
  ``school / student`` model puts the teacher variance into the student SD; omitting
  ``district`` puts it into the school SD);
- levels inside the innermost modelled factor go to the residual.

So a modelled factor's true covariance is the sum of its collapsed levels' ``S_l`` and the
true residual variance is ``s^2`` plus the intercept variances of the levels inside the
innermost modelled factor (their slope variances are ignored: the residual is then not
homoscedastic).  With every level modelled these are the design's own values; the
collapsed values are the variance decomposition the smaller model can represent, exact
for the marginal variance and for the covariance within the modelled units.

ICC of modelled factor ``g`` (nested, random intercepts at covariates 0): the correlation
of two observations in the same ``g`` unit,

    icc_g = sum_{modelled h at or outside g} v_h / (sum_l v_l + s^2),

the same definition as :func:`hlm.variance_share.icc_table`.

For a GLMM outcome the values are on the link scale (see :meth:`Truth.from_design`) and levels
inside the innermost modelled factor cannot join a residual: a probit model that omits them
estimates every coefficient and SD times 1 / sqrt(1 + their variance) (:meth:`Truth.glmm_scale`;
its ICCs are unchanged), and other links have no true values then.  A panel estimator (``xtreg``)
with panel variable at level ``k`` is the one-factor case: ``sigma_u`` estimates the
collapsed SD of level ``k``, ``sigma_e`` the collapsed residual SD, ``rho`` its ICC.  Pooled
OLS models no level: its ``sigma`` estimates the total SD.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from hlm.simulate.design import INTERCEPT, Design

INTERCEPT_COLUMN = "(Intercept)"
# Variance of the latent residual whose cut gives a binary outcome (the link's standard
# logistic, normal or Gumbel variable); a count has none.
LATENT_VARIANCE = {"logit": math.pi**2 / 3, "probit": 1.0, "cloglog": math.pi**2 / 6, "log": math.nan}
_INTERCEPT_TERMS = ("(Intercept)", "_cons", "Intercept")


@dataclass(frozen=True)
class LevelTruth:
    """One design level: its name, id column and random-effect covariance."""

    name: str
    id: str
    columns: tuple[str, ...]  # "(Intercept)" then slope covariates
    cov: np.ndarray  # len(columns) x len(columns)

    def covariance(self, a: str, b: str) -> float:
        if a in self.columns and b in self.columns:
            return float(self.cov[self.columns.index(a), self.columns.index(b)])
        return 0.0


@dataclass(frozen=True)
class Truth:
    """The true parameters of a design, and their collapsed values for a given model."""

    levels: tuple[LevelTruth, ...]  # outermost first
    residual_var: float
    fixed: Mapping[str, float]
    variables: tuple[str, ...]
    link: str | None = None  # a GLMM outcome's link (None: Gaussian)

    @classmethod
    def from_design(cls, design: Design) -> Truth:
        """The design's values; for a binomial or Poisson outcome on the link scale, with the
        latent residual variance of the link as ``residual_var`` (NaN for Poisson)."""
        shift, s = design.outcome.link_scale(design.residual_sd)
        levels = []
        for lv in design.levels:
            f = lv.covariance_factor() / s
            levels.append(LevelTruth(lv.name, str(lv.id), (INTERCEPT_COLUMN, *lv.slopes), f @ f.T))
        fixed = {k: (v - shift if k == INTERCEPT else v) / s for k, v in design.fixed.items()}
        if shift and INTERCEPT not in fixed:
            fixed[INTERCEPT] = -shift / s
        link = str(design.outcome.link)
        residual_var = design.residual_sd**2 if design.outcome.family == "gaussian" else LATENT_VARIANCE[link]
        glmm_link = None if design.outcome.family == "gaussian" else link
        return cls(tuple(levels), residual_var, fixed, tuple(design.variables()), glmm_link)

    # ---- matching -----------------------------------------------------------------------
    def level_index(self, group: str | Iterable[str] | None) -> int | None:
        """The design level of a grouping factor: the innermost level whose id column is
        one of the factor's columns (``"school_id:dist_id"`` -> school); None if none is."""
        if group is None:
            return None
        parts = group.split(":") if isinstance(group, str) else list(group)
        hits = [i for i, lv in enumerate(self.levels) if lv.id in parts]
        return max(hits) if hits else None

    def level_name(self, index: int) -> str:
        return self.levels[index].name

    # ---- fixed effects ------------------------------------------------------------------
    def fixed_truth(self, term: str) -> float | None:
        """True coefficient of a model term: the intercept, a design variable (0 when the
        design gives it no effect), or None for terms the design does not define."""
        if term in _INTERCEPT_TERMS:
            return float(self.fixed.get(INTERCEPT, 0.0))
        if term in self.variables:
            return float(self.fixed.get(term, 0.0))
        return None

    # ---- variance components ------------------------------------------------------------
    @property
    def total_var(self) -> float:
        """Variance of an observation at covariates 0."""
        return sum(lv.covariance(INTERCEPT_COLUMN, INTERCEPT_COLUMN) for lv in self.levels) + self.residual_var

    def assignment(self, modelled: Iterable[int]) -> dict[int, list[int]]:
        """Modelled level -> the design levels collapsed into it (see the module docstring);
        key -1 holds the levels that go to the residual."""
        ms = sorted(set(modelled))
        out: dict[int, list[int]] = {m: [] for m in ms}
        out[-1] = []
        for i in range(len(self.levels)):
            target = next((m for m in ms if m >= i), -1)
            out[target].append(i)
        return out

    def covariance(self, modelled: Iterable[int], level: int, a: str, b: str) -> float:
        """True (collapsed) covariance of columns ``a`` and ``b`` at modelled level ``level``."""
        members = self.assignment(modelled)[level]
        return sum(self.levels[i].covariance(a, b) for i in members)

    def sd(self, modelled: Iterable[int], level: int, column: str = INTERCEPT_COLUMN) -> float:
        return math.sqrt(max(self.covariance(modelled, level, column, column), 0.0))

    def cor(self, modelled: Iterable[int], level: int, a: str, b: str) -> float:
        va = self.covariance(modelled, level, a, a)
        vb = self.covariance(modelled, level, b, b)
        if va <= 0 or vb <= 0:
            return float("nan")
        return self.covariance(modelled, level, a, b) / math.sqrt(va * vb)

    def residual_sd(self, modelled: Iterable[int]) -> float:
        inside = self.assignment(modelled)[-1]
        v = self.residual_var + sum(self.levels[i].covariance(INTERCEPT_COLUMN, INTERCEPT_COLUMN) for i in inside)
        return math.sqrt(v)

    def icc(self, modelled: Iterable[int], level: int) -> float:
        """Correlation of two observations in the same unit of modelled level ``level``."""
        ms = sorted(set(modelled))
        v = sum(self.covariance(ms, m, INTERCEPT_COLUMN, INTERCEPT_COLUMN) for m in ms if m <= level)
        total = self.total_var
        return v / total if total > 0 else float("nan")

    def glmm_scale(self, modelled: Iterable[int]) -> float:
        """The factor on a GLMM's link-scale truths when the model omits levels inside its innermost
        factor: 1 when they have no variance; for a probit, 1 / sqrt(1 + v) with v their intercept
        variance (their effects join the standard normal latent residual, Phi(eta / sqrt(1 + v)));
        NaN otherwise (other links and random slopes attenuate with no closed form)."""
        inside = self.assignment(modelled)[-1]
        if not any(np.any(self.levels[i].cov != 0.0) for i in inside):
            return 1.0
        if self.link != "probit" or any(len(self.levels[i].columns) > 1 for i in inside):
            return math.nan
        v = sum(self.levels[i].covariance(INTERCEPT_COLUMN, INTERCEPT_COLUMN) for i in inside)
        return 1.0 / math.sqrt(1.0 + v)
