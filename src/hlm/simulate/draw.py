"""Vectorised draws of one block of a design (all of it, or a run of outermost units).

No loop runs over units or rows: each level's random effects are drawn as one array,
pushed down the tree with ``np.repeat`` (children of a unit are contiguous), and every
row-level column is one array operation.  Draws happen in a fixed order -- unit counts
(outermost first, then observations per innermost unit), random effects (outermost
first), covariates (in design order), residuals -- and every one is made whatever the
SDs and coefficients are, so changing an SD or a coefficient rescales the same draws
(common random numbers across a study's grid of values).

Ids are 1-based.  *Global* ids number the units of a level 1..N across the whole data
set (plus ``offset``, the units in earlier blocks); *within* ids number them 1..n inside
their parent, the form Stata's ``expand`` examples use.  The outermost level's two forms
coincide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import special

from hlm.errors import OptionError
from hlm.simulate.design import Design, mean_count
from hlm.simulate.distributions import Assign
from hlm.simulate.parts import Count, Level, Outcome

_PIECE = 1 << 16
IdForm = Literal["global", "within", "both"]
WITHIN_SUFFIX = "_within"
MAX_LOG_MEAN = 40.0  # exp(40) ~ 2e17: numpy's Poisson draws stop near 1e19


@dataclass(frozen=True)
class Block:
    """The columns of one simulated block, in output order, and its unit counts."""

    columns: dict[str, np.ndarray]
    units: tuple[int, ...]  # units of each level, outermost first
    rows: int


def _counts(n: Count, parents: int, rng: np.random.Generator) -> np.ndarray | int:
    """Units per parent: a scalar for fixed counts, an int64 array for drawn ones."""
    if isinstance(n, int):
        return n
    return n.draw(rng, parents)


def _expand(values: np.ndarray, per_unit: np.ndarray | int) -> np.ndarray:
    """Repeat each unit's value over its rows (or children)."""
    return np.repeat(values, per_unit)


def _within(counts: np.ndarray | int, parents: int, total: int, dtype: type = np.int32) -> np.ndarray:
    """1..count inside each parent, for every child unit."""
    if isinstance(counts, int):
        return np.tile(np.arange(1, counts + 1, dtype=dtype), parents)
    starts = np.cumsum(counts) - counts
    return (np.arange(1, total + 1, dtype=np.int64) - np.repeat(starts, counts)).astype(dtype, copy=False)


def _add_scaled(y: np.ndarray, x: np.ndarray, beta: float | np.ndarray) -> None:
    """``y += beta * x`` in cache-sized pieces, without a row-length temporary."""
    step = _PIECE
    scratch = np.empty(min(step, len(y)))
    for start in range(0, len(y), step):
        stop = min(start + step, len(y))
        buf = scratch[: stop - start]
        piece = beta[start:stop] if isinstance(beta, np.ndarray) and beta.ndim else beta
        np.multiply(x[start:stop], piece, out=buf)
        y[start:stop] += buf


def id_dtype(design: Design) -> type:
    """int32 ids when the design's ids and rows fit with a margin of 2, else int64.

    Decided from the design alone, so every block of a chunked simulation has one schema.
    """
    units, biggest = 1.0, 1.0
    for lv in design.levels:
        units *= mean_count(lv.n)
        biggest = max(biggest, units)
    return np.int32 if 2.0 * max(biggest, design.expected_rows()) < 2**31 else np.int64


def _sum_children(per_child: np.ndarray | int, counts: np.ndarray | int, parents: int) -> np.ndarray | int:
    """Rows per parent from rows per child."""
    if isinstance(per_child, int) and isinstance(counts, int):
        return per_child * counts
    if isinstance(counts, int):
        return np.add.reduceat(per_child, np.arange(0, parents * counts, counts))
    child = np.broadcast_to(per_child, (int(counts.sum()),)) if isinstance(per_child, int) else per_child
    starts = np.cumsum(counts) - counts  # counts >= 1, so every start is a valid index
    return np.add.reduceat(child, starts)


def _tree(
    design: Design, rng: np.random.Generator, top_units: int
) -> tuple[list[np.ndarray | int], list[int], np.ndarray | int, int, list[np.ndarray | int]]:
    """The unit tree: children per parent at each level (an int when balanced), units per level,
    observations per innermost unit, the row count and the rows per unit of each level."""
    levels = design.levels
    k = len(levels)
    counts: list[np.ndarray | int] = [top_units]
    units = [top_units]
    for lv in levels[1:]:
        c = _counts(lv.n, units[-1], rng)
        counts.append(c)
        units.append(units[-1] * c if isinstance(c, int) else int(c.sum()))
    obs = _counts(design.observations.n, units[-1], rng)
    rows = units[-1] * obs if isinstance(obs, int) else int(obs.sum())

    # rows per unit of each level, innermost first
    per_unit: list[np.ndarray | int] = [0] * k
    per_unit[k - 1] = obs
    for l in range(k - 2, -1, -1):
        per_unit[l] = _sum_children(per_unit[l + 1], counts[l + 1], units[l])
    return counts, units, obs, rows, per_unit


def _random_effects(
    levels: Sequence[Level], counts: list[np.ndarray | int], units: list[int], rng: np.random.Generator
) -> tuple[list[np.ndarray], list[np.ndarray | None], np.ndarray]:
    """Each level's intercepts and slopes per unit, and the intercepts summed down to the innermost units."""
    k = len(levels)
    intercepts: list[np.ndarray] = []
    slopes: list[np.ndarray | None] = []
    for l, lv in enumerate(levels):
        if lv.slopes:  # unit-major: each unit's (intercept, slopes) are consecutive draws
            b = rng.standard_normal((units[l], 1 + len(lv.slopes))) @ lv.covariance_factor().T
            intercepts.append(np.ascontiguousarray(b[:, 0]))
            slopes.append(b[:, 1:])
        else:
            u = rng.standard_normal(units[l])
            u *= lv.sd
            intercepts.append(u)
            slopes.append(None)
    acc = intercepts[0]
    for l in range(1, k):
        acc = _expand(acc, counts[l])
        acc += intercepts[l]
    return intercepts, slopes, acc


def _covariates(
    design: Design,
    rng: np.random.Generator,
    tree: tuple[list[np.ndarray | int], list[int], np.ndarray | int, int, list[np.ndarray | int]],
) -> dict[str, np.ndarray]:
    """Each covariate drawn per row, or per unit of its level and repeated over that unit's rows
    (``tree`` is :func:`_tree`'s)."""
    counts, units, obs, rows, per_unit = tree
    out: dict[str, np.ndarray] = {}
    level_index = {lv.name: l for l, lv in enumerate(design.levels)}
    for cov in design.covariates:
        l = len(design.levels) if cov.level is None else level_index[cov.level]
        n = rows if cov.level is None else units[l]
        if isinstance(cov.dist, Assign):  # exactly p of the units inside each parent unit
            x = cov.dist.draw(rng, n, None if l == 0 else (obs if cov.level is None else counts[l]))
        else:
            x = cov.dist.draw(rng, n)
        out[cov.name] = x if cov.level is None else _expand(x, per_unit[l])
    return out


def response_draw(outcome: Outcome, eta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The response from the linear predictor (with the residual where the outcome has one):
    itself (Gaussian), 1{eta > c} (a threshold), Bernoulli(h(eta)) or Poisson(exp(eta))."""
    if outcome.family == "gaussian":
        return eta
    if outcome.threshold is not None:
        return (eta > outcome.threshold).astype(np.int64)
    if outcome.family == "poisson":
        if eta.size and eta.max() > MAX_LOG_MEAN:
            raise OptionError(
                f"a Poisson mean exp({eta.max():.3g}) is too large to draw; lower the intercept, coefficients or SDs"
            )
        return rng.poisson(np.exp(eta)).astype(np.int64)
    if outcome.link == "logit":
        p = special.expit(eta)
    elif outcome.link == "probit":
        p = special.ndtr(eta)
    else:  # cloglog
        p = -np.expm1(-np.exp(eta))
    return (rng.random(len(eta)) < p).astype(np.int64)


def _id_columns(
    design: Design,
    tree: tuple[list[np.ndarray | int], list[int], np.ndarray | int, int, list[np.ndarray | int]],
    offsets: tuple[int, ...],
    ids: IdForm,
) -> tuple[dict[str, np.ndarray], type]:
    """The id columns (global ids shifted by ``offsets``, within ids, or both) and their dtype."""
    counts, units, _, _, per_unit = tree
    dtype = id_dtype(design)
    if dtype is np.int32 and max(o + u for o, u in zip(offsets, units)) >= 2**31:
        dtype = np.int64  # an extreme draw of an unbalanced design
    cols: dict[str, np.ndarray] = {}
    within_cols: dict[str, np.ndarray] = {}
    for l, lv in enumerate(design.levels):
        gid: np.ndarray = np.arange(offsets[l] + 1, offsets[l] + units[l] + 1, dtype=dtype)
        if ids != "within":
            cols[lv.id_column] = _expand(gid, per_unit[l])
        if ids != "global":
            within = gid if l == 0 else _within(counts[l], units[l - 1], units[l], dtype)
            target = cols if ids == "within" else within_cols
            target[lv.id_column + ("" if ids == "within" else WITHIN_SUFFIX)] = _expand(within, per_unit[l])
    cols.update(within_cols)
    return cols, dtype


def draw_block(
    design: Design,
    rng: np.random.Generator,
    *,
    top_units: int,
    offsets: tuple[int, ...] | None = None,
    ids: IdForm = "global",
    effects: bool = False,
) -> Block:
    """Simulate ``top_units`` outermost units of ``design`` with ``rng``.

    ``offsets`` (units of each level already simulated in earlier blocks) shift the
    global ids.  With ``effects=True`` the true random effects come back as columns
    ``u_<level>`` (intercepts), ``u_<level>_<covariate>`` (slopes) and ``residual`` (for an
    outcome drawn from its mean, ``eta``: the linear predictor).
    """
    levels = design.levels
    k = len(levels)
    offsets = offsets or (0,) * k

    tree = _tree(design, rng, top_units)
    counts, units, obs, rows, per_unit = tree
    intercepts, slopes, acc = _random_effects(levels, counts, units, rng)

    cols, dtype = _id_columns(design, tree, offsets, ids)
    variables: dict[str, np.ndarray] = {}
    if design.observations.name is not None:
        occasion = _within(obs, units[-1], rows, dtype)
        cols[design.observations.name] = occasion
        variables[design.observations.name] = occasion

    covariates = _covariates(design, rng, tree)
    cols.update(covariates)
    variables.update(covariates)

    # response: residual + intercept effects + fixed part + slopes (the linear predictor without
    # a residual for a family drawn from its mean)
    outcome = design.outcome
    residual = rng.standard_normal(rows) if outcome.has_residual else np.zeros(rows)
    residual *= design.residual_sd
    y = residual.copy() if effects and outcome.has_residual else residual
    if isinstance(obs, int):  # balanced: broadcast instead of materialising the repeat
        y.reshape(units[-1], obs)[...] += acc[:, None]
    else:
        y += _expand(acc, obs)
    if design.intercept != 0.0:
        y += design.intercept
    for name, beta in design.fixed.items():
        if name in variables and beta != 0.0:
            _add_scaled(y, variables[name], beta)
    extra: dict[str, np.ndarray] = {}
    for l, lv in enumerate(levels):
        if effects:
            extra[f"u_{lv.name}"] = _expand(intercepts[l], per_unit[l])
        for j, name in enumerate(lv.slopes):
            b = _expand(np.ascontiguousarray(slopes[l][:, j]), per_unit[l])  # type: ignore[index]
            if effects:
                extra[f"u_{lv.name}_{name}"] = b
            _add_scaled(y, variables[name], b)
    if outcome.latent is not None:
        cols[outcome.latent] = y
    cols[design.response] = response_draw(outcome, y, rng)
    if effects:
        if outcome.has_residual:
            extra["residual"] = residual
        else:
            extra["eta"] = y
        clash = [c for c in extra if c in cols]
        if clash:
            raise OptionError(f"effects=True would write '{clash[0]}', a column the design already has; rename it")
        cols.update(extra)
    return Block(columns=cols, units=tuple(units), rows=rows)
