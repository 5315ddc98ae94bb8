"""Structure checks of a model against its data, run by :func:`hlm.fit` between
aggregation and fitting, and the words for a boundary (singular) fit.

Every check here reads only the sufficient statistics (:class:`~hlm.aggregate.Aggregates`),
so it runs the same for every backend (numpy, DuckDB, Spark):

* :func:`level_order` -- levels listed inner to outer (the seed's
  ``|| student_id: || teach_id: || school_id: || dist_id:``, or lme4's
  ``(1|student_id/teach_id/school_id/dist_id)``).  The key table of a nested path's
  innermost factor (``FactorStats.keys``: the value of every path column at each group)
  holds every distinct combination of the path's columns, which is all the order rules
  of :func:`hlm.diagnose.stata_level_order` look at (distinct-combination counts and
  pairwise nesting), so the answer is the one the rows would give.
* :func:`check_identifiable` -- a grouping factor with one group; as many random
  effects as observations (every group one observation, alongside the residual: lme4's
  ``nlev == nobs`` and ``nobs <= nlev * nRE``); two factors with the same partition;
  a q x q correlated block on a factor with q or fewer groups (lme4's ``nlev < nRE``,
  one stricter: the fixed effects take out the mean of the effects, so G groups give
  G - 1 directions of variation and a full-rank q x q covariance needs G >= q + 1).
* :func:`implicit_nesting_warning` -- lme4 crossed terms ``(1|district) + (1|school)``
  whose ids look unique only within the other factor.  Read from the crossed blocks'
  cell counts (``sum z z'`` of the intercept column over the rows of each cell), so it
  needs a random intercept on both factors; slope-only crossed terms are not checked.
  Stata syntax is nested by construction and is not checked.

What the aggregates cannot show is not checked: ids that are unique only within their
parent *and* listed backwards form a valid (if unintended) hierarchy that no data can
tell from the intended one (see :func:`hlm.diagnose.stata_level_order`).
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import replace

import numpy as np
import pandas as pd

from hlm.aggregate.stats import Aggregates, FactorStats
from hlm.diagnose.keys import as_factor
from hlm.diagnose.messages import (
    implicit_nesting_message,
    reordered_message,
    reversed_order_message,
    same_partition_message,
    singleton_message,
)
from hlm.diagnose.structure import implicit_nesting, stata_level_order
from hlm.errors import IdentifiabilityError, NestingError, StructureWarning
from hlm.lmm.result import LmmResult
from hlm.lmm.structure import TermInfo
from hlm.spec.terms import ModelSpec, RandomTerm

_INTERCEPTS = ("(Intercept)", "_cons", "Intercept")
_OPTION: ContextVar[str] = ContextVar("hlm_reorder_option", default="reorder=True")


@contextlib.contextmanager
def option_spelling(option: str) -> Iterator[None]:
    """Within the block, errors suggest ``option`` for reordering (the CLI's ``--reorder``)."""
    token = _OPTION.set(option)
    try:
        yield
    finally:
        _OPTION.reset(token)


# ---- helpers ---------------------------------------------------------------------------
def factor_of(agg: Aggregates, columns: Sequence[str]) -> FactorStats | None:
    want = frozenset(columns)
    return next((f for f in agg.factors if frozenset(f.columns) == want), None)


def key_frame(fac: FactorStats) -> pd.DataFrame:
    """One row per group: the value of each of the factor's columns (distinct combinations)."""
    return pd.DataFrame({c: k for c, k in zip(fac.columns, fac.keys)})


def nesting_paths(spec: ModelSpec) -> list[tuple[str, ...]]:
    """Maximal nested paths: groups (a, b, ...) of two or more columns whose every prefix
    is also the group of a term -- ``|| a: || b: || c:`` or ``(1|a/b/c)``."""
    groups = list(dict.fromkeys(t.group for t in spec.random))
    have = set(groups)
    paths = [g for g in groups if len(g) >= 2 and all(g[:j] in have for j in range(1, len(g)))]
    return [p for p in paths if not any(q != p and q[: len(p)] == p for q in paths)]


def _show(term: RandomTerm, syntax: str) -> str:
    """A term in the user's syntax."""
    if syntax == "stata":
        opts = ", noconstant" if not term.intercept else ""
        return f"`|| {term.group[-1]}:{''.join(' ' + c for c in term.columns)}{opts}`"
    lhs = " + ".join((["1"] if term.intercept else ["0"]) + list(term.columns))
    return f"({lhs} | {':'.join(term.group)})"


def _show_all(terms: Sequence[RandomTerm], syntax: str) -> str:
    """The terms of one grouping factor in the user's syntax (Stata: one level)."""
    if syntax == "stata":
        cols = list(dict.fromkeys(c for t in terms for c in t.columns))
        opts = ", noconstant" if not any(t.intercept for t in terms) else ""
        return f"`|| {terms[0].group[-1]}:{''.join(' ' + c for c in cols)}{opts}`"
    return " + ".join(_show(t, syntax) for t in terms)


def _level_name(term: RandomTerm, syntax: str) -> str:
    return term.group[-1] if syntax == "stata" else term.name


# ---- level order -----------------------------------------------------------------------
def _reordered_text(spec: ModelSpec, path: Sequence[str], corrected: Sequence[str]) -> str:
    """The model string with the path's levels in the corrected order, when it can be
    rewritten safely; else the text as given."""
    text = spec.text
    if spec.syntax == "stata":
        parts = text.split("||")
        segs = parts[1:]
        level_of = [seg.split(":", 1)[0].strip() for seg in segs]
        if sorted(level_of) != sorted(path) or len(set(level_of)) != len(level_of):
            return text
        by_level = {lev: seg.strip() for lev, seg in zip(level_of, segs)}
        return " || ".join([parts[0].rstrip(), *(by_level[lev] for lev in corrected)])
    pattern = r"(?<![\w.])" + r"\s*/\s*".join(re.escape(c) for c in path) + r"(?![\w.])"
    new, n = re.subn(pattern, "/".join(corrected), text)
    return new if n == 1 else text


def _reorder_terms(spec: ModelSpec, path: Sequence[str], corrected: Sequence[str]) -> ModelSpec:
    path, corrected = tuple(path), list(corrected)
    moved: list[tuple[int, RandomTerm]] = []
    slots: list[int] = []
    for i, term in enumerate(spec.random):
        g = term.group
        if g == path[: len(g)]:
            new_group = tuple(corrected[: corrected.index(g[-1]) + 1])
            name = term.name if spec.syntax == "stata" else ":".join(reversed(new_group))
            moved.append((len(new_group), RandomTerm(term.columns, term.intercept, new_group, name)))
            slots.append(i)
    moved.sort(key=lambda item: item[0])  # outermost level first, stable within a level
    random = list(spec.random)
    for slot, (_, term) in zip(slots, moved):
        random[slot] = term
    out = spec.with_random(tuple(random))
    return replace(out, text=_reordered_text(spec, path, corrected))


def _subdivides(agg: Aggregates, path: Sequence[str]) -> bool:
    """Whether every level of ``path`` has more groups than the one before it, read off the
    aggregates' factors (one per prefix of the path): such an order is never flagged
    (:func:`hlm.diagnose.structure.stata_level_order`), so the rows need not be looked at."""
    facs = [factor_of(agg, path[: j + 1]) for j in range(len(path))]
    if any(f is None for f in facs):
        return False
    sizes = [f.nlevels for f in facs if f is not None]
    return all(a < b for a, b in zip(sizes, sizes[1:]))


def level_order(spec: ModelSpec, agg: Aggregates, *, reorder: bool = False) -> tuple[ModelSpec, str] | None:
    """None when every nested path of ``spec`` is listed outermost first.

    Otherwise, without ``reorder`` a :class:`NestingError` naming the right order; with
    it the spec with every wrong path in the corrected order and the note saying so (a
    :class:`StructureWarning` is issued too).  The fit must then be re-aggregated."""
    syntax = spec.syntax
    new, notes = spec, []
    for path in nesting_paths(spec):
        fac = factor_of(agg, path)
        if fac is None or _subdivides(agg, path):
            continue
        frame = key_frame(fac)
        corrected = stata_level_order(frame, path)
        if corrected is None:
            continue
        if not reorder:
            raise NestingError(reversed_order_message(frame, path, corrected, syntax=syntax, option=_OPTION.get()))
        new = _reorder_terms(new, path, corrected)
        notes.append(reordered_message(path, corrected, syntax=syntax))
    if not notes:
        return None
    note = "; ".join(notes)
    warnings.warn(note, StructureWarning, stacklevel=3)
    return new, note


# ---- identifiability -------------------------------------------------------------------
def _terms_by_factor(spec: ModelSpec, agg: Aggregates) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for t, f in enumerate(agg.term_factor):
        out.setdefault(f, []).append(t)
    return out


def check_identifiable(spec: ModelSpec, agg: Aggregates) -> None:
    """Raise :class:`IdentifiabilityError` when the random-effects structure cannot be
    estimated from these groups (see the module docstring for the rules, in the order
    they are checked)."""
    syntax = spec.syntax
    terms = spec.random
    by_factor = _terms_by_factor(spec, agg)
    for f, ts in by_factor.items():
        fac = agg.factors[f]
        shown = _show_all([terms[t] for t in ts], syntax)
        name = _level_name(terms[ts[0]], syntax)
        if fac.nlevels == 1:
            label = fac.labels[0] if len(fac.labels) else "?"
            raise IdentifiabilityError(
                f"grouping factor '{name}' has one group ('{label}') in the {agg.nobs:,} observations used, and a "
                f"variance between groups needs at least two; drop {shown}, or check the data (a filter, or a "
                "constant id column)"
            )
    for f, ts in by_factor.items():
        fac = agg.factors[f]
        q = sum(len(agg.term_columns[t]) for t in ts)
        if agg.nobs > fac.nlevels * q:
            continue
        shown = _show_all([terms[t] for t in ts], syntax)
        name = _level_name(terms[ts[0]], syntax)
        if q == 1 and terms[ts[0]].intercept:
            factor = as_factor(terms[ts[0]].group)
            frame = None if fac.pooled is not None else key_frame(fac)
            raise IdentifiabilityError(singleton_message(frame, [factor], syntax=syntax, ngroups=fac.nlevels))
        raise IdentifiabilityError(
            f"the {fac.nlevels:,} {name} groups carry {q} random effects each, {fac.nlevels * q:,} in all, for "
            f"{agg.nobs:,} observations, so the random effects cannot be told apart from the residual; drop "
            f"random slopes from {shown}"
        )
    _check_same_partition(spec, agg, by_factor)
    for t, term in enumerate(terms):
        q = len(agg.term_columns[t])
        fac = agg.factors[agg.term_factor[t]]
        if q >= 2 and fac.nlevels <= q:
            name = _level_name(term, syntax)
            cols = ", ".join(agg.pool[c] for c in agg.term_columns[t])
            indep = (
                f"cov(independent) at `|| {name}:`"
                if syntax == "stata"
                else f"independent effects ({' + '.join(term.columns)} || {':'.join(term.group)})"
            )
            raise IdentifiabilityError(
                f"{name} has {fac.nlevels} groups for {q} correlated random effects ({cols}): their {q}x{q} covariance "
                f"({q * (q + 1) // 2} parameters) needs at least {q + 1} groups, as the fixed effects take out their "
                f"mean; drop random slopes from {_show(term, syntax)} or use {indep}"
            )


def check_degrees_of_freedom(agg: Aggregates) -> None:
    """Raise :class:`IdentifiabilityError` when the observations left after the fixed
    effects (n - p, after dropping aliased columns) are fewer than the variance
    parameters (theta and sigma): the criterion then has ridges or runs to sigma = 0."""
    k = 1 + sum(len(c) * (len(c) + 1) // 2 for c in agg.term_columns)
    df = agg.nobs - len(agg.xnames)
    if df < k:
        raise IdentifiabilityError(
            f"{agg.nobs} observations and {len(agg.xnames)} fixed effects leave {df} residual degrees of freedom for "
            f"{k} variance parameters (the residual and {k - 1} of the random effects); add data, or drop random "
            "terms or predictors"
        )


def _same_pairs(agg: Aggregates) -> list[tuple[int, int]]:
    """Pairs of factors (i, j) with the same partition of the rows."""
    nlev = [f.nlevels for f in agg.factors]
    if agg.chain is not None:
        chain = agg.chain
        return [(chain[k + 1], chain[k]) for k in range(len(chain) - 1) if nlev[chain[k]] == nlev[chain[k + 1]]]
    return [(b.i, b.j) for b in agg.cross if nlev[b.i] == nlev[b.j] == len(b.gi)]


def _check_same_partition(spec: ModelSpec, agg: Aggregates, by_factor: dict[int, list[int]]) -> None:
    pairs = _same_pairs(agg)
    if not pairs:
        return
    i, j = sorted(pairs[0], key=lambda f: by_factor[f][0])  # in listing order
    ti, tj = spec.random[by_factor[i][0]], spec.random[by_factor[j][0]]
    fa, fb = as_factor(ti.group), as_factor(tj.group)
    message = same_partition_message(key_frame(agg.factors[i]), [(fa, fb)], syntax=spec.syntax)
    if len(pairs) > 1:
        message += f" ({len(pairs) - 1} more such pair{'s' if len(pairs) > 2 else ''})"
    raise IdentifiabilityError(message)


# ---- implicit nesting ------------------------------------------------------------------
def implicit_nesting_warning(spec: ModelSpec, agg: Aggregates) -> str | None:
    """Warn (:class:`StructureWarning`) and return the message when crossed lme4 terms on
    single columns look implicitly nested (``(1|district) + (1|school)`` with school ids
    1..n in every district); None otherwise.  A pair whose interaction is also a term,
    ``(1|Operator) + (1|Part) + (1|Operator:Part)``, is a cross written as such (it
    contains the nested model ``(1|Operator/Part)``) and is not flagged."""
    if spec.syntax != "lme4" or agg.chain is not None or not agg.cross:
        return None
    by_factor = _terms_by_factor(spec, agg)
    order = sorted(by_factor, key=lambda f: by_factor[f][0])
    intercept_col: dict[int, int] = {}
    for f in order:
        for t in by_factor[f]:
            if spec.random[t].intercept and len(agg.factors[f].columns) == 1:
                intercept_col[f] = agg.term_columns[t][0]
                break
    crossed = {frozenset(t.group) for t in spec.random if len(t.group) == 2}
    found: list[tuple[str, str]] = []
    first_frame: pd.DataFrame | None = None
    for block in agg.cross:
        if block.i not in intercept_col or block.j not in intercept_col:
            continue
        if intercept_col[block.i] != intercept_col[block.j]:
            continue
        if frozenset(agg.factors[block.i].columns + agg.factors[block.j].columns) in crossed:
            continue  # (1|a) + (1|b) + (1|a:b): the cross is modelled, and (1|a/b) is its submodel
        outer, inner = sorted((block.i, block.j), key=order.index)
        go, gi = (block.gi, block.gj) if outer == block.i else (block.gj, block.gi)
        c = intercept_col[outer]
        counts = np.rint(block.zz[:, c, c]).astype(np.int64)
        rep = np.minimum(counts, 2)  # 'replicated' asks only for cells of >= 2 rows
        fo, fi = agg.factors[outer], agg.factors[inner]
        a, b = fo.columns[0], fi.columns[0]
        frame = pd.DataFrame({a: np.repeat(fo.keys[0][go], rep), b: np.repeat(fi.keys[0][gi], rep)})
        pairs = implicit_nesting(frame, [a, b])
        if pairs and first_frame is None:
            first_frame = frame
        found += pairs
    if not found or first_frame is None:
        return None
    factors = [agg.factors[f].columns[0] for f in order if len(agg.factors[f].columns) == 1]
    message = implicit_nesting_message(first_frame, found, factors)
    warnings.warn(message, StructureWarning, stacklevel=3)
    return message


# ---- boundary fits ---------------------------------------------------------------------
def _structured_boundary(fit: LmmResult, term: TermInfo, lam: np.ndarray, tol: float) -> list[str]:
    """The boundary of a cov(identity) / cov(exchangeable) term: its diagonal parameter
    (t or alpha, Lambda = alpha I + beta J) at 0 means a zero shared variance, or for an
    exchangeable term with beta != 0 a correlation of +1 (every effect the same); alpha + q
    beta at 0 a correlation of -1/(q-1) (the effects sum to zero)."""
    q = lam.shape[0]
    alpha = float(lam[0, 0] - (lam[1, 0] if q > 1 and term.cov == "exchangeable" else 0.0))
    group = fit.aggregates.factors[term.factor].name
    effects = ", ".join(term.columns)
    if term.cov == "exchangeable" and alpha >= tol and abs(float(lam[0].sum())) < tol:
        return [
            f"the common correlation of {effects} across {group} (cov(exchangeable)) is estimated at its "
            f"lower limit -1/{q - 1}: the sum of these effects does not vary across {group}; consider fewer "
            "random effects at this level"
        ]
    if alpha >= tol:
        return []
    if term.cov == "identity" or abs(float(lam[1, 0])) * np.sqrt(q) < tol:
        return [
            f"the variance shared by {effects} across {group} (cov({term.cov})) is estimated at zero: the "
            "fit is that of the model without these random effects; consider dropping them"
        ]
    return [
        f"the common correlation of {effects} across {group} (cov(exchangeable)) is estimated at +1: the "
        "effects are one random effect repeated; consider fewer random effects at this level"
    ]


#: a correlation this close to +-1 is reported as perfect dependence
_PERFECT = 1e-3


def _conditional_sds(cov: np.ndarray, tol: float) -> np.ndarray:
    """SD of each effect given the ones before it (the diagonal of a Cholesky factor of
    ``cov``, defined also where ``cov`` is singular: directions of the earlier effects with
    an SD below ``tol`` are taken as constant)."""
    out = np.empty(len(cov))
    for k in range(len(cov)):
        w, v = np.linalg.eigh(cov[:k, :k])
        keep = w > tol**2
        proj = v[:, keep].T @ cov[:k, k]
        out[k] = np.sqrt(max(cov[k, k] - float(np.sum(proj**2 / w[keep])), 0.0))
    return out


def _components(n: int, pairs: Sequence[tuple[int, int]]) -> int:
    """The number of connected groups of ``n`` effects linked by ``pairs``."""
    root = list(range(n))

    def find(i: int) -> int:
        while root[i] != i:
            i = root[i]
        return i

    for a, b in pairs:
        root[find(a)] = find(b)
    return len({find(i) for i in range(n)})


def boundary_messages(fit: LmmResult, tol: float | None = None) -> list[str]:
    """What is on the boundary of a singular fit, one phrase per component, with what it
    means, and nothing else.  For each term's covariance matrix (in units of the residual
    variance), with :math:`d_k` the SD of effect k given the effects before it (the fit is
    singular when some :math:`d_k` is below ``tol``):

    * an SD below ``tol``: that variance is estimated at zero;
    * else, among the other effects, a correlation within 1e-3 of +-1: the two effects are
      perfectly dependent (one is a multiple of the other);
    * a rank deficiency the +-1 correlations do not account for (e.g. three effects whose
      correlations are all inside (-1, 1) but one of which is a combination of the other two):
      the covariance matrix of the effects is rank-deficient, with its rank.
    """
    from hlm.lmm.optimize import SINGULAR_TOL

    tol = SINGULAR_TOL if tol is None else tol
    struct = fit.structure
    lambdas = struct.lambdas(np.asarray(fit.theta))
    syntax = fit.spec.syntax
    out: list[str] = []
    for term in struct.terms:
        lam = lambdas[term.factor][np.ix_(term.local, term.local)]
        if term.cov != "unstructured":
            out += _structured_boundary(fit, term, lam, tol)
            continue
        if not np.any(np.abs(np.diag(lam)) < tol):
            continue
        cov = lam @ lam.T
        sds = np.sqrt(np.diag(cov))
        group = fit.aggregates.factors[term.factor].name
        zero = [k for k in range(len(sds)) if sds[k] < tol]
        for k in zero:
            col = term.columns[k]
            what = f"the {group} variance" if col in _INTERCEPTS else f"the variance of the {col} slope across {group}"
            out.append(
                f"{what} is estimated at zero: the {group} groups differ no more than the residual variation "
                "(and the other components) already imply, so the fit is that of the model without it; "
                "consider dropping it"
            )
        live = [k for k in range(len(sds)) if k not in zero]
        sub = cov[np.ix_(live, live)]
        deficient = int(np.sum(_conditional_sds(sub, tol) < tol))
        if deficient == 0 and not zero:  # singular by the Cholesky factor: at least one direction
            deficient = 1
        if deficient == 0:
            continue
        slopes = " + ".join(c for c in term.columns if c not in _INTERCEPTS)
        indep = (
            f"cov(independent) at `|| {group}:`" if syntax == "stata" else f"independent effects ({slopes} || {group})"
        )
        corr = sub / np.outer(sds[live], sds[live])
        pairs = [(a, b) for a in range(len(live)) for b in range(a) if abs(corr[a, b]) > 1 - _PERFECT]
        for a, b in pairs:
            ca, cb = term.columns[live[b]], term.columns[live[a]]
            out.append(
                f"the correlation of {ca} and {cb} across {group} is estimated at {corr[a, b]:+.2f}: the two effects "
                f"are perfectly dependent, so the data support fewer random effects than modelled; consider {indep} "
                f"or dropping the {cb} slope"
            )
        if deficient > len(live) - _components(len(live), pairs):
            names = ", ".join(term.columns[k] for k in live)
            rank = len(live) - deficient
            why = ", although no two of them are perfectly correlated" if not pairs and len(live) > 2 else ""
            out.append(
                f"the covariance matrix of {names} across {group} is rank-deficient (rank {rank} of {len(live)}): "
                f"some combination of these effects does not vary between {group} groups{why}, so the data "
                f"support fewer random effects than modelled; consider {indep} or dropping a slope"
            )
    return out
