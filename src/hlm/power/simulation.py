"""Power by simulation for any linear mixed model hlm fits to a simulated design.

Each replicate draws a data set from the design, fits the model and tests the fixed effect
``term`` (two-sided, level ``alpha``); the power is the share of successful replicates that
reject, with Monte Carlo SE sqrt(power (1 - power) / successes).  The tests:

* ``"wald"``: z = estimate / SE against N(0, 1) (Stata's z);
* ``"satterthwaite"``: the same t against t(df), df by Satterthwaite (lmerTest's);
* ``"lrt"``: 2 (l_1 - l_0) against chi^2(1), both fits by ML, the reduced one without the term.

How a replicate is drawn (``method`` in the result):

* ``"sufficient"``: for a Gaussian nested model whose innermost factor is the design's innermost
  level, the layout and covariates are drawn once per grid point (from the seed) and each
  replicate draws only the statistics the fit reads (:mod:`hlm.power.sufficient`, exact, O(groups));
  power is then conditional on that layout -- for treatments assigned as ``Assign(p)`` it is the
  randomisation the analytic formulas assume;
* ``"rows"``: otherwise every replicate simulates the rows (layout and covariates redrawn).

Wald tests of sufficient-statistic replicates are fitted by :mod:`hlm.power.lean` (the estimate
and its SE only, from a start and checks shared by the grid point's replicates); a replicate it
cannot vouch for, and every other test, gets the full fit.

GLMMs: when the design's outcome is binomial or Poisson (:class:`hlm.simulate.Outcome`) each
replicate's rows are fitted by :func:`hlm.fit` with the outcome's family and link (Laplace, ML) --
a model in lme4 syntax takes them from the design, a Stata command (``melogit ...``) must say the
same -- and the test is Wald's z on the link scale (route ``"rows"``; other tests are refused).

Replicates are seeded and run in parallel by :mod:`hlm.study.run` (same seeds, same results for
any ``n_jobs``).
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from hlm.aggregate.stats import Aggregates
from hlm.errors import FormulaError, HLMError, OptionError
from hlm.lmm.collinear import drop_columns
from hlm.lmm.pipeline import aggregate, criterion, fit_aggregates
from hlm.lmm.result import LmmResult
from hlm.power.lean import LeanPlan
from hlm.power.result import PowerSimulation
from hlm.power.sufficient import Skeleton, build_skeleton, sufficient_reason
from hlm.simulate.design import Design
from hlm.simulate.run import rng_for
from hlm.simulate.run import simulate as simulate_rows
from hlm.spec import ModelSpec, parse_model
from hlm.study.run import grid_points, replicate_seed, run_tasks

Test = Literal["wald", "satterthwaite", "lrt"]
TESTS = ("wald", "satterthwaite", "lrt")
Method = Literal["auto", "sufficient", "rows"]
LAYOUT_REP = 1 << 32  # the replicate number whose seed draws a grid point's layout (no replicate has it)


@dataclass(frozen=True)
class _Setup:
    """One grid point's work: the design, the model, the test and, for the sufficient-statistic
    route, the layout and (Wald test) the lean fit's plan; ``model`` is the string a GLMM's fit
    reads (None for linear models)."""

    index: int
    design: Design
    spec: ModelSpec | None
    reml: bool
    term: str
    test: Test
    skeleton: Skeleton | None
    plan: LeanPlan | None = None
    model: str | None = None


def glmm_term_test(model: str, design: Design, frame: pd.DataFrame, term: str) -> tuple[float, float]:
    """(estimate, two-sided Wald p-value) of ``term`` in the GLMM ``model`` fitted to ``frame`` with
    the design's outcome family and link."""
    from hlm import api

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = api.fit(model, frame, family=design.outcome.family, link=design.outcome.link)
    if term not in fit.fixef.index:
        raise OptionError(
            f"'{term}' is not a fixed effect of the model; its fixed effects are {', '.join(fit.fixef.index)}"
        )
    beta, se = float(fit.fixef[term]), float(fit.se[term])
    if not (math.isfinite(beta) and math.isfinite(se) and se > 0):
        raise ArithmeticError(f"no finite Wald SE of '{term}' (separation or a failed fit)")
    return beta, wald_p(beta, se)


def _replicate(setup: _Setup, seed: int) -> Aggregates:
    """The aggregates of one replicate."""
    if setup.skeleton is not None:
        return setup.skeleton.draw(rng_for(seed))
    assert setup.spec is not None  # a linear model (GLMM replicates are fitted from rows)
    return aggregate(setup.spec, simulate_rows(setup.design, seed=seed), backend="memory")[0]


def term_test(spec: ModelSpec, agg: Aggregates, term: str, test: Test, *, reml: bool) -> tuple[float, float]:
    """(estimate, two-sided p-value) of the fixed effect ``term`` in the model fitted to ``agg``."""
    from hlm.inference.ddf import satterthwaite_df

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit: LmmResult = fit_aggregates(spec, agg, reml=False if test == "lrt" else reml)
        names = fit.aggregates.xnames
        if term not in names:
            raise OptionError(f"'{term}' was dropped from the fit (collinear)")
        j = names.index(term)
        beta = float(fit.profiled.beta[j])
        se = math.sqrt(float(fit.profiled.sigma2 * fit.profiled.qxx_inv[j, j]))
        if test == "wald":
            return beta, wald_p(beta, se)
        if test == "satterthwaite":
            L = np.zeros((1, len(names)))
            L[0, j] = 1.0
            df = float(satterthwaite_df(fit, L)[0])
            return beta, float(2.0 * stats.t.sf(abs(beta / se), df))
        reduced: LmmResult = fit_aggregates(spec, drop_columns(agg, [agg.xnames.index(term)]), reml=False)
        stat = max(0.0, 2.0 * (fit.loglik - reduced.loglik))
        return beta, float(stats.chi2.sf(stat, 1))


def wald_p(beta: float, se: float) -> float:
    """Two-sided p-value of z = beta / SE against N(0, 1): erfc(|z| / sqrt 2)."""
    return math.erfc(abs(beta / se) / math.sqrt(2.0))


def _test(setup: _Setup, agg: Aggregates) -> tuple[float, float]:
    """(estimate, p-value) of one replicate: the lean fit where the setup has a plan and the
    replicate passes its checks, else the full fit."""
    if setup.plan is not None and (lean := setup.plan.estimate(agg)) is not None:
        return lean[0], wald_p(*lean)
    assert setup.spec is not None  # a linear model (a GLMM's replicates are fitted from rows)
    return term_test(setup.spec, agg, setup.term, setup.test, reml=setup.reml)


def _chunk(setup: _Setup, reps: Sequence[int], seed: int) -> list[tuple[int, int, float, float, str | None]]:
    """(point, replicate, estimate, p-value, error) of replicates ``reps`` (runs in a worker)."""
    out: list[tuple[int, int, float, float, str | None]] = []
    for r in reps:
        try:
            if setup.model is not None:
                frame = simulate_rows(setup.design, seed=replicate_seed(seed, setup.index, r))
                est, pval = glmm_term_test(setup.model, setup.design, frame, setup.term)
            else:
                est, pval = _test(setup, _replicate(setup, replicate_seed(seed, setup.index, r)))
            out.append((setup.index, r, est, pval, None))
        except (HLMError, ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            out.append((setup.index, r, math.nan, math.nan, f"{type(exc).__name__}: {str(exc).splitlines()[0]}"))
    return out


def _checked(design: Any, model: str, test: str, alpha: float, method: str) -> tuple[Design, ModelSpec | None]:
    if isinstance(design, (str, os.PathLike)):
        design = Design.from_toml(design)
    if not isinstance(design, Design):
        raise OptionError(f"design must be an hlm.simulate.Design or a design file, not {type(design).__name__}")
    if test not in TESTS:
        raise OptionError(f"test must be one of {', '.join(TESTS)}, got {test!r}")
    if not 0.0 < alpha < 1.0:
        raise OptionError(f"alpha must lie between 0 and 1, got {alpha}")
    if method not in ("auto", "sufficient", "rows"):
        raise OptionError(f"method must be 'auto', 'sufficient' or 'rows', got {method!r}")
    if not isinstance(model, str):
        raise OptionError(f"model must be a model string, got {model!r}")
    glmm = design.outcome.family != "gaussian"
    if glmm and (test != "wald" or method == "sufficient"):
        raise OptionError(
            f"the design's outcome is {design.outcome.family}: GLMM power uses the Wald z test on simulated rows "
            "(test='wald', method 'auto' or 'rows')"
        )
    try:
        spec = parse_model(model)
    except FormulaError as exc:
        if "GLMM" not in str(exc):
            raise
        if not glmm:
            raise OptionError(
                "the model is a GLMM command but the design's outcome is Gaussian; give the design an "
                "[outcome] family (e.g. family = 'binomial', link = 'logit')"
            ) from None
        return design, None
    if not spec.random:
        raise OptionError("power by simulation needs a mixed model (a random term such as (1 | group))")
    return design, spec


def _setup(
    index: int, design: Design, spec: ModelSpec | None, model: str, term: str, test: Test, method: str, seed: int
) -> _Setup:
    """A grid point's setup: the model's aggregates of one data set decide the route (a GLMM's
    fit to that data set checks the model and the term)."""
    if design.outcome.family != "gaussian":
        frame = simulate_rows(design, seed=replicate_seed(seed, index, LAYOUT_REP))
        try:
            glmm_term_test(model, design, frame, term)
        except (ArithmeticError, np.linalg.LinAlgError):
            pass  # this data set's fit; the replicates count their own failures
        return _Setup(index, design, spec, False, term, test, None, model=model)
    if spec is None:
        raise OptionError(f"the design's outcome became Gaussian at design point {index + 1}; a GLMM cannot fit it")
    reml, _ = criterion(spec, None)
    if test == "lrt" and spec.reml:
        raise OptionError("the likelihood-ratio test compares ML fits; drop REML from the model string")
    frame = simulate_rows(design, seed=replicate_seed(seed, index, LAYOUT_REP))
    agg, _ = aggregate(spec, frame, backend="memory")
    if term not in agg.xnames:
        raise OptionError(f"'{term}' is not a fixed effect of the model; its fixed effects are {', '.join(agg.xnames)}")
    reason = sufficient_reason(design, agg)
    if method == "sufficient" and reason is not None:
        raise OptionError(f"the sufficient-statistic simulator does not apply: {reason}")
    skeleton = build_skeleton(design, agg, frame) if reason is None and method != "rows" else None
    return _Setup(index, design, spec, reml, term, test, skeleton, _plan(skeleton, spec, term, test, reml, seed, index))


def _plan(
    skeleton: Skeleton | None, spec: ModelSpec, term: str, test: Test, reml: bool, seed: int, index: int
) -> LeanPlan | None:
    """The lean fit's plan for Wald tests of sufficient-statistic replicates, piloted on the
    statistics drawn with the layout's seed (no replicate's), or None."""
    if skeleton is None or test != "wald":
        return None
    try:
        return LeanPlan.pilot(spec, skeleton.draw(rng_for(replicate_seed(seed, index, LAYOUT_REP))), term, reml=reml)
    except (HLMError, ValueError, ArithmeticError, np.linalg.LinAlgError):
        return None


def simulate(
    design: Design | str | os.PathLike,
    model: str,
    term: str,
    *,
    effect: float | None = None,
    reps: int = 1000,
    seed: int | None = None,
    test: Test = "wald",
    alpha: float = 0.05,
    vary: Mapping[str, Sequence[Any]] | None = None,
    method: Method = "auto",
    n_jobs: int | None = None,
    progress: bool | None = None,
) -> PowerSimulation:
    """Power to detect the fixed effect ``term`` of ``model`` fitted to data from ``design``.

    ``effect`` replaces the design's coefficient of ``term`` (``fixed.<term>``); ``vary`` maps
    design paths to values (``{"levels.district.n": [5, 10, 20]}``): power at every combination.
    ``seed`` None draws one (kept in the result).  ``method``: ``"auto"`` (sufficient statistics
    where exact, else rows), ``"sufficient"`` (refuse otherwise) or ``"rows"``.  See the module
    docstring for the tests and routes.
    """
    design, spec = _checked(design, model, test, alpha, method)
    if isinstance(reps, bool) or not isinstance(reps, (int, np.integer)) or reps < 1:
        raise OptionError(f"reps must be a whole number >= 1, got {reps!r}")
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1, np.uint32)[0])
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise OptionError(f"seed must be a whole number >= 0, got {seed!r}")
    if effect is not None:
        design = design.set(f"fixed.{term}", effect)
    keys, points = grid_points(design, vary, [model])
    setups = [_setup(p.index, p.design, spec, model, term, test, method, int(seed)) for p in points]
    n_jobs = int(min(n_jobs or os.cpu_count() or 1, int(reps) * len(setups)))
    size = max(1, math.ceil(int(reps) / max(1, math.ceil(2 * n_jobs / len(setups)))))
    tasks = [(s, range(a, min(a + size, int(reps)))) for s in setups for a in range(0, int(reps), size)]
    t0 = time.perf_counter()
    show = sys.stderr.isatty() if progress is None else bool(progress)
    results = run_tasks(
        tasks,
        (int(seed),),
        n_jobs,
        show,
        f"power: {int(reps) * len(setups)} replicate(s)",
        int(reps) * len(setups),
        worker=_chunk,
    )
    rows = [row for i in range(len(tasks)) for row in results[i]]
    return PowerSimulation.build(
        term=term,
        test=test,
        alpha=alpha,
        reps=int(reps),
        seed=int(seed),
        model=model,
        design=design,
        vary_keys=keys,
        vary_values=[p.values for p in points],
        methods=["sufficient" if s.skeleton is not None else "rows" for s in setups],
        replicates=rows,
        seconds=time.perf_counter() - t0,
    )
