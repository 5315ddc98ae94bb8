"""Random-effects structure: terms, their factors, and theta -> Lambda.

As in lme4, b = Lambda u with u ~ N(0, sigma^2 I).  Each random term with q columns has
a lower-triangular q x q block of Lambda whose entries, taken column by column, are that
term's part of theta; diagonal entries are bounded below by 0.  Terms are ordered by
decreasing number of levels of their factor (stable), which fixes lme4's theta order.
Terms on the same grouping factor are merged into one block-diagonal Lambda_f per factor,
acting on the factor's columns J_f (indices into the Z column pool).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hlm.aggregate.stats import Aggregates
from hlm.errors import IdentifiabilityError


@dataclass(frozen=True)
class TermInfo:
    """One random-effects term as lme4 reports it."""

    group: str  # display name for VarCorr (``Subject.1`` for a second term on Subject)
    factor: int
    columns: tuple[str, ...]
    local: tuple[int, ...]  # positions within the factor's J_f


@dataclass(frozen=True)
class Structure:
    """Map from theta to the per-factor relative covariance factors Lambda_f."""

    terms: tuple[TermInfo, ...]
    factor_cols: tuple[tuple[int, ...], ...]  # per factor: pool indices J_f
    theta_pos: tuple[tuple[int, int, int], ...]  # per theta: (factor, row, col) in Lambda_f
    lower: np.ndarray
    theta_names: tuple[str, ...]

    @property
    def ntheta(self) -> int:
        return len(self.theta_pos)

    def theta0(self) -> np.ndarray:
        """lme4's starting values: identity Lambda."""
        return np.where(np.isfinite(self.lower), 1.0, 0.0)

    def lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        """Lambda_f for every factor."""
        out = [np.zeros((len(c), len(c))) for c in self.factor_cols]
        for value, (f, r, c) in zip(theta, self.theta_pos):
            out[f][r, c] = value
        return out


def build_structure(agg: Aggregates, term_names: tuple[str, ...]) -> Structure:
    """Order the terms as lme4 does and lay out theta."""
    nlev = [f.nlevels for f in agg.factors]
    order = sorted(range(len(term_names)), key=lambda t: -nlev[agg.term_factor[t]])
    factor_cols: list[list[int]] = [[] for _ in agg.factors]
    terms: list[TermInfo] = []
    theta_pos: list[tuple[int, int, int]] = []
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
        terms.append(TermInfo(group, f, colnames, local))
        for j in range(len(cols)):  # column-major lower triangle
            for i in range(j, len(cols)):
                theta_pos.append((f, local[i], local[j]))
                lower.append(0.0 if i == j else -np.inf)
                names.append(f"{group}.{colnames[i]}" if i == j else f"{group}.{colnames[i]}.{colnames[j]}")
    return Structure(tuple(terms), tuple(tuple(c) for c in factor_cols), tuple(theta_pos),
                     np.array(lower), tuple(names))
