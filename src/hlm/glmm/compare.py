"""What :mod:`hlm.inference.likelihood_ratio` needs to compare GLMMs: the same family, link and
approximation (a Laplace and an adaptive-quadrature log-likelihood are different numbers),
the same rows and response, and each fit's random effects as (grouping columns, effect) pairs
and correlated triples for the nesting check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from hlm.errors import ComparisonError
from hlm.glmm.theta import diagonal_positions

if TYPE_CHECKING:
    from hlm.glmm.result import GlmmResult


def check_comparable(models: Sequence[GlmmResult]) -> None:
    """Raise :class:`ComparisonError` unless the fits can be compared by likelihood ratio."""
    kinds = {(m.family, m.link) for m in models}
    if len(kinds) > 1:
        shown = ", ".join(f"{f} ({lk})" for f, lk in sorted(kinds))
        raise ComparisonError(f"the GLMMs have different families or links ({shown}); compare fits of one family")
    if len({m.nagq for m in models}) > 1:
        raise ComparisonError("the GLMMs use different nagq (Laplace vs adaptive quadrature); refit with the same nagq")
    first = models[0].frame
    for m in models[1:]:
        f = m.frame
        if len(f.y) != len(first.y):
            raise ComparisonError(
                f"the models were fitted to different numbers of observations ({sorted({len(first.y), len(f.y)})}); "
                "compare models fitted to the same rows"
            )
        if not (np.array_equal(f.y, first.y) and np.array_equal(f.n, first.n)):
            raise ComparisonError("the models have different responses or rows; compare models of the same data")


def random_parts(fit: GlmmResult) -> tuple[set, set]:
    """(grouping columns, effect) pairs and (grouping columns, effect, effect) correlated triples."""
    cols, pairs = set(), set()
    for (_, names), columns in zip(fit.frame.term_labels, fit.frame.factor_columns):
        key = frozenset(columns)
        cols |= {(key, c) for c in names}
        pairs |= {(key, *sorted((a, b))) for i, a in enumerate(names) for b in names[i + 1 :]}
    return cols, pairs


def same_fixed(a: GlmmResult, b: GlmmResult) -> bool:
    fa, fb = a.frame, b.frame
    return fa.xnames == fb.xnames and fa.X.shape == fb.X.shape and bool(np.allclose(fa.X, fb.X, rtol=1e-10, atol=0))


def n_sd(fit: GlmmResult) -> int:
    return int(diagonal_positions(fit.frame.dims).sum())
