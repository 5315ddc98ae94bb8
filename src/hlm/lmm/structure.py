"""Random-effects structure: terms, their factors, and theta -> Lambda.

As in lme4, b = Lambda u with u ~ N(0, sigma^2 I), so a term's covariance is
sigma^2 Lambda_t Lambda_t'.  Its q x q block Lambda_t is linear in the term's part of theta:

* unstructured: lower triangular, its entries column by column (lme4's theta);
* identity (Stata's ``cov(identity)``): Lambda_t = t I, Sigma = sigma^2 t^2 I;
* exchangeable: Lambda_t = alpha I + beta J (J all ones), so Lambda Lambda' =
  alpha^2 I + (2 alpha beta + q beta^2) J, which covers every exchangeable positive
  semi-definite matrix a I + b J (a >= 0, a + q b >= 0) with alpha >= 0.

Parameters on a diagonal (t, alpha, lme4's diagonal entries) are bounded below by 0.
Terms are ordered by decreasing number of levels of their factor (stable), which fixes
lme4's theta order.  Terms on the same grouping factor are merged into one block-diagonal
Lambda_f per factor, acting on the factor's columns J_f (indices into the Z column pool).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hlm.aggregate.stats import Aggregates
from hlm.errors import IdentifiabilityError
from hlm.spec.terms import CovKind


@dataclass(frozen=True)
class TermInfo:
    """One random-effects term as lme4 reports it."""

    group: str  # display name for VarCorr (``Subject.1`` for a second term on Subject)
    factor: int
    columns: tuple[str, ...]
    local: tuple[int, ...]  # positions within the factor's J_f
    cov: CovKind = "unstructured"


@dataclass(frozen=True)
class Structure:
    """Map from theta to the per-factor relative covariance factors Lambda_f."""

    terms: tuple[TermInfo, ...]
    factor_cols: tuple[tuple[int, ...], ...]  # per factor: pool indices J_f
    theta_pos: tuple[tuple[int, int, int], ...]  # per theta: (factor, row, col), a diagonal one for bounded theta
    lower: np.ndarray
    theta_names: tuple[str, ...]
    entries: tuple[tuple[int, int, int, int], ...]  # (theta, factor, row, col): every entry theta adds to

    @property
    def structured(self) -> bool:
        """Whether a term has a structured (identity or exchangeable) covariance."""
        return any(t.cov != "unstructured" for t in self.terms)

    @property
    def ntheta(self) -> int:
        return len(self.theta_pos)

    def theta0(self) -> np.ndarray:
        """lme4's starting values: identity Lambda."""
        return np.where(np.isfinite(self.lower), 1.0, 0.0)

    def exchangeable_sums(self, theta: np.ndarray) -> np.ndarray:
        """alpha + q beta of every exchangeable term: Lambda's eigenvalue along the vector of
        ones (its other eigenvalue is alpha), zero when the common correlation is -1/(q-1)."""
        lambdas = self.lambdas(theta)
        return np.array(
            [
                float(lambdas[t.factor][t.local[0], :][list(t.local)].sum())
                for t in self.terms
                if t.cov == "exchangeable"
            ]
        )

    def lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        """Lambda_f for every factor."""
        out = [np.zeros((len(c), len(c))) for c in self.factor_cols]
        for k, f, r, c in self.entries:
            out[f][r, c] += theta[k]
        return out


def _term_theta(
    cov: CovKind, local: tuple[int, ...], group: str, colnames: tuple[str, ...]
) -> list[tuple[tuple[int, int], float, str, list[tuple[int, int]]]]:
    """Per theta of one term: its representative (row, col), lower bound, name and the
    (row, col) entries of Lambda_f it adds to (see the module docstring)."""
    q = len(local)
    if cov == "unstructured" or q == 1:
        return [
            (
                (local[i], local[j]),
                0.0 if i == j else -np.inf,
                f"{group}.{colnames[i]}" if i == j else f"{group}.{colnames[i]}.{colnames[j]}",
                [(local[i], local[j])],
            )
            for j in range(q)
            for i in range(j, q)
        ]  # column-major lower triangle
    label = f"{group}.{'|'.join(colnames)}"
    diagonal = [(r, r) for r in local]
    if cov == "identity":
        return [((local[0], local[0]), 0.0, label, diagonal)]
    return [
        ((local[0], local[0]), 0.0, label, diagonal),
        ((local[1], local[0]), -np.inf, f"{label}.exchangeable", [(r, c) for r in local for c in local]),
    ]


def build_structure(agg: Aggregates, term_names: tuple[str, ...], covs: tuple[CovKind, ...] | None = None) -> Structure:
    """Order the terms as lme4 does and lay out theta (``covs``: each term's covariance kind,
    unstructured when not given)."""
    unstructured: CovKind = "unstructured"
    kinds = covs or (unstructured,) * len(term_names)
    nlev = [f.nlevels for f in agg.factors]
    order = sorted(range(len(term_names)), key=lambda t: -nlev[agg.term_factor[t]])
    factor_cols: list[list[int]] = [[] for _ in agg.factors]
    terms: list[TermInfo] = []
    theta_pos: list[tuple[int, int, int]] = []
    entries: list[tuple[int, int, int, int]] = []
    lower: list[float] = []
    names: list[str] = []
    seen: dict[str, int] = {}
    for t in order:
        f = agg.term_factor[t]
        cols = agg.term_columns[t]
        for c in cols:
            if c in factor_cols[f]:
                raise IdentifiabilityError(
                    f"'{agg.pool[c]}' appears twice as a random effect of '{term_names[t]}'; "
                    "list each random effect of a grouping factor once"
                )
        start = len(factor_cols[f])
        factor_cols[f].extend(cols)
        local = tuple(range(start, start + len(cols)))
        base = term_names[t]
        count = seen.get(base, 0)
        seen[base] = count + 1
        group = base if count == 0 else f"{base}.{count}"
        colnames = tuple(agg.pool[c] for c in cols)
        cov = kinds[t] if len(cols) > 1 else "unstructured"
        terms.append(TermInfo(group, f, colnames, local, cov))
        for (r, c), low, name, cells in _term_theta(cov, local, group, colnames):
            entries.extend((len(theta_pos), f, rr, cc) for rr, cc in cells)
            theta_pos.append((f, r, c))
            lower.append(low)
            names.append(name)
    return Structure(
        tuple(terms),
        tuple(tuple(c) for c in factor_cols),
        tuple(theta_pos),
        np.array(lower),
        tuple(names),
        tuple(entries),
    )
