"""Simulate a Gaussian nested design's sufficient statistics directly: no rows per replicate.

The layout (units, covariates) is drawn once; a replicate draws only what depends on the
response.  For the model's leaf group g (the design's innermost unit) with rows y_g,

    y_g = X_g b + Z_g w_g + e_g,    e_g ~ N(0, s^2 I),

where Z_g holds the model's random-effect columns and w_g (in those columns) sums the design's
random intercepts and slopes of g and its ancestors.  The fit reads X'X, Z_g'Z_g, Z_g'X_g (fixed by
the layout) and Z_g'y_g, X'y, y'y.  With m = Xb + Zw the mean given the random effects,

    Z_g'y_g = Z_g'X_g b + Z_g'Z_g w_g + a_g,         a_g = Z_g'e_g ~ N(0, s^2 Z_g'Z_g),
    X'y     = X'X b + sum_g X_g'Z_g w_g + X'e,       X'e = sum_g X_g'Z_g (Z_g'Z_g)^+ a_g + r,
    y'y     = m'm + 2 m'e + e'e,                     m'e = b'X'e + sum_g w_g'a_g,

with r = X_w'e ~ N(0, s^2 W) for the within-leaf residual cross-product W = X'X -
sum_g X_g'Z_g (Z_g'Z_g)^+ Z_g'X_g, independent of every a_g, and e'e = sum_g a_g'(Z_g'Z_g)^+ a_g +
r'W^+ r + s^2 chi^2 with N - sum_g rank(Z_g'Z_g) - rank(W) degrees of freedom (the split of e
into its projections on the leaf blocks of Z, on X_w and the rest).  Every piece is drawn from
its exact distribution, so a replicate's statistics have exactly the law of those of rows drawn
by :func:`hlm.simulate.simulate` with the same layout -- at O(leaf groups) per replicate.
Where the nested evaluator pools the leaf groups by count (random intercepts), the drawn
statistics carry that pooling too (only the response's column changes), as an SQL backend
delivers it, so the fit does not pool them again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import sparse

from hlm.aggregate.stats import INTERCEPT, Aggregates, LeafClasses
from hlm.lmm.nested import leaf_classes
from hlm.simulate.design import Design


@dataclass(frozen=True)
class _Factor:
    """A batch of symmetric PSD matrices (G, d, d) as B B', B = V diag(sqrt(lambda)) from the
    eigenvectors, the null directions' columns zero (``keep`` marks the others)."""

    root: np.ndarray
    keep: np.ndarray

    @classmethod
    def of(cls, A: np.ndarray) -> _Factor:
        vals, vecs = np.linalg.eigh(A)
        keep = vals > 1e-10 * np.maximum(vals.max(axis=-1, keepdims=True), 1e-300)
        return cls(vecs * np.sqrt(np.where(keep, vals, 0.0))[..., None, :], keep)

    def pinv(self) -> np.ndarray:
        """A^+ = V diag(1/lambda) V' over the kept directions."""
        norms = np.einsum("gij,gij->gj", self.root, self.root)  # lambda_j (|v_j| = 1)
        c = self.root / np.where(self.keep, norms, np.inf)[:, None, :]
        return np.einsum("gij,gkj->gik", c, c)


@dataclass(frozen=True)
class _Pooling:
    """The leaf pooled by count as the nested evaluator pools it (:func:`hlm.lmm.nested.leaf_classes`):
    the template's classes, and 0/1 matrices that sum the leaf groups by class and by (parent,
    class) cell.  Only the response's column of the classes' sums changes between replicates."""

    classes: LeafClasses
    by_class: sparse.csr_matrix  # (classes, G)
    by_cell: sparse.csr_matrix  # (parents x classes, G)

    @classmethod
    def of(cls, agg: Aggregates) -> _Pooling | None:
        classes = leaf_classes(agg)
        if classes is None:
            return None
        counts = agg.factors[agg.chain[0]].counts  # type: ignore[index]
        assert counts is not None  # a leaf that is not pooled yet keeps its groups' counts
        _, which = np.unique(counts, return_inverse=True)
        m, G = len(classes.counts), len(which)
        cell = agg.parents[0] * m + which
        ones, groups = np.ones(G), np.arange(G)
        return cls(
            classes,
            sparse.csr_matrix((ones, (which, groups)), shape=(m, G)),
            sparse.csr_matrix((ones, (cell, groups)), shape=(classes.sums.shape[0] * m, G)),
        )

    def pooled(self, S: np.ndarray) -> LeafClasses:
        """The classes of leaf sums S (G, k) that differ from the template's in the last column."""
        c, k = self.classes, S.shape[1]
        y = np.ascontiguousarray(S[:, k - 1])
        sss, sums = c.sss.copy(), c.sums.copy()
        for i in range(k):
            sss[:, i, k - 1] = sss[:, k - 1, i] = self.by_class @ (S[:, i] * y)
        sums[:, :, k - 1] = (self.by_cell @ y).reshape(sums.shape[:2])
        return LeafClasses(c.counts, c.ngroups, sss, c.children, sums)


@dataclass(frozen=True)
class Skeleton:
    """What stays fixed across replicates: the template aggregates (the response's statistics
    are replaced per replicate), the design's effects in the model's columns, and the factors of
    the noise's covariance."""

    template: Aggregates
    beta: np.ndarray  # (p,) the design's fixed effects in the model's X columns
    sigma: float
    ancestors: tuple[np.ndarray, ...]  # per design level: the unit of each leaf group
    effects: tuple[tuple[np.ndarray, np.ndarray, int], ...]  # per level: factor F (q', q), pool columns (q',), units
    zx: np.ndarray  # (G z, p) Z_g'X_g, the groups' rows stacked
    ztz: np.ndarray  # (G, z, z)
    leaf_root: _Factor  # of Z_g'Z_g
    transfer: np.ndarray  # (G z, p) (Z_g'Z_g)^+ Z_g'X_g, stacked
    within_root: _Factor  # of W
    chi2_df: int
    pooling: _Pooling | None  # the leaf's classes, delivered pooled as an SQL backend would

    def draw(self, rng: np.random.Generator) -> Aggregates:
        """One replicate's aggregates (see the module docstring).  Per leaf group only
        elementwise products and sums over z (no per-group matrix calls): O(G z^2)."""
        agg, s, b = self.template, self.sigma, self.beta
        G, z = self.ztz.shape[0], self.ztz.shape[1]
        w = np.zeros((G, z))
        for anc, (F, cols, units) in zip(self.ancestors, self.effects):
            w[:, cols] += np.take(rng.standard_normal((units, F.shape[1])) @ F.T, anc, axis=0)
        zs = rng.standard_normal((G, z)) * self.leaf_root.keep  # null directions carry nothing
        a = s * (self.leaf_root.root * zs[:, None, :]).sum(axis=2)
        rz = rng.standard_normal(len(b)) * self.within_root.keep[0]
        chi2 = rng.chisquare(self.chi2_df) if self.chi2_df > 0 else 0.0
        p = len(b)
        xtx = agg.ktk[:p, :p]
        zxb = (self.zx @ b).reshape(G, z)
        ztzw = (self.ztz * w[:, None, :]).sum(axis=2)
        xzw = w.reshape(-1) @ self.zx  # sum_g X_g'Z_g w_g
        xe = a.reshape(-1) @ self.transfer + s * (self.within_root.root[0] @ rz)
        mm = b @ xtx @ b + 2.0 * b @ xzw + float(np.vdot(w, ztzw))
        me = b @ xe + float(np.vdot(w, a))
        ee = s**2 * (float(np.vdot(zs, zs)) + float(rz @ rz) + chi2)
        ktk = agg.ktk.copy()
        ktk[:p, p] = ktk[p, :p] = xtx @ b + xzw + xe
        ktk[p, p] = mm + 2.0 * me + ee
        leaf_index = agg.chain[0]  # type: ignore[index]
        leaf = agg.factors[leaf_index]
        ztk = leaf.ztk.copy()  # type: ignore[union-attr]
        ztk[:, :, p] = zxb + ztzw + a
        factors = list(agg.factors)
        pooled = None if self.pooling is None else self.pooling.pooled(ztk[:, 0, :])
        factors[leaf_index] = replace(leaf, ztk=ztk, pooled=pooled)
        return replace(agg, ktk=ktk, factors=tuple(factors))


def design_name(column: str) -> str:
    """The design's name of a fixed-effect column: ``intercept`` for lme4's and Stata's intercepts."""
    return "intercept" if column in ("(Intercept)", "_cons") else column


def sufficient_reason(design: Design, agg: Aggregates) -> str | None:
    """Why the model's statistics cannot be drawn without rows for this design, or None."""
    if agg.chain is None:
        return "the model's grouping factors are not nested"
    if agg.weights is not None:
        return "the model has precision weights"
    leaf = agg.factors[agg.chain[0]]
    if leaf.pooled is not None or leaf.ztz is None or leaf.ztk is None:
        return "the leaf groups are not held in memory"
    innermost = design.levels[-1].id_column
    if innermost not in leaf.columns:
        return f"the model's innermost grouping factor '{leaf.name}' is not the design's innermost level ({innermost})"
    for name, beta in design.fixed.items():
        if beta != 0.0 and name not in [design_name(x) for x in agg.xnames]:
            return f"the design's fixed effect of '{name}' is not a column of the model's fixed part"
    for lv in design.levels:
        for name in (INTERCEPT, *lv.slopes):
            sd = lv.sd if name == INTERCEPT else lv.slopes[name]
            if sd > 0 and name not in agg.pool:
                return f"the design's random {name} at level {lv.name} is not among the model's random-effect columns"
    return None


def build_skeleton(design: Design, agg: Aggregates, frame: pd.DataFrame) -> Skeleton:
    """The fixed parts of the replicates of ``design`` fitted by the model behind ``agg`` (the
    aggregates of ``frame``, one simulated data set); :func:`sufficient_reason` must be None."""
    p = agg.p
    leaf = agg.factors[agg.chain[0]]  # type: ignore[index]
    assert leaf.ztz is not None and leaf.ztk is not None
    ztz, zx = leaf.ztz, np.ascontiguousarray(leaf.ztk[:, :, :p])
    beta = np.array([design.fixed.get(design_name(x), 0.0) for x in agg.xnames])
    # the innermost unit of every leaf group, then each level's unit of that innermost unit
    inner_id = leaf.keys[leaf.columns.index(design.levels[-1].id_column)].astype(np.int64)
    firsts = frame.drop_duplicates(design.levels[-1].id_column)
    by_inner = {lv.id_column: np.empty(len(firsts), dtype=np.int64) for lv in design.levels}
    order = firsts[design.levels[-1].id_column].to_numpy(np.int64) - 1
    for lv in design.levels:
        by_inner[lv.id_column][order] = firsts[lv.id_column].to_numpy(np.int64) - 1
    ancestors: list[np.ndarray] = []
    effects: list[tuple[np.ndarray, np.ndarray, int]] = []
    for lv in design.levels:
        anc = by_inner[lv.id_column][inner_id - 1]
        cols = np.array([agg.pool.index(n) if n in agg.pool else -1 for n in (INTERCEPT, *lv.slopes)])
        # a random column the model lacks has SD 0 (sufficient_reason): its effects are left out
        effects.append((lv.covariance_factor()[cols >= 0], cols[cols >= 0], int(anc.max()) + 1))
        ancestors.append(anc)
    leaf_root = _Factor.of(ztz)
    transfer = np.einsum("gzi,gzk->gki", zx, leaf_root.pinv())  # (Z_g'Z_g)^+ Z_g'X_g
    W = agg.ktk[:p, :p] - np.einsum("gki,gkj->ij", transfer, zx)
    within_root = _Factor.of(((W + W.T) / 2.0)[None])
    chi2_df = agg.nobs - int(leaf_root.keep.sum()) - int(within_root.keep.sum())
    return Skeleton(
        agg,
        beta,
        design.residual_sd,
        tuple(ancestors),
        tuple(effects),
        zx.reshape(-1, p),
        ztz,
        leaf_root,
        transfer.reshape(-1, p),
        within_root,
        chi2_df,
        _Pooling.of(agg) if agg.weights is None else None,
    )
