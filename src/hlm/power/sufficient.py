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
Where the nested evaluator pools the leaf groups by count (random intercepts,
:class:`~hlm.aggregate.stats.LeafClasses`), the fit reads of the leaf only, per count class c,
sums over its groups of S_g S_g' (S_g = 1'K_g) and, per (parent, class), sums of S_g; these are
drawn without the groups.  With t_g = 1'y_g = x_g'b + c a_g + v_g (x_g = X_g'1, a_g the sum of the
ancestors' effects, v_g = c u_g + 1'e_g ~ N(0, tau_c^2 = c^2 s_u^2 + c s^2) iid within the class),
split the groups of class c into cells j on which the model's parent and every ancestor are
constant (n_j groups, x-sums X_j): the fit needs of v only T_j = sum_j v_g, eta_c = sum_g
(x_g - X_j/n_j) v_g ~ N(0, tau_c^2 R_c) (independent of the T_j; R_c the within-cell Gram) and
|v|^2 = sum_j T_j^2/n_j + eta'R_c^+ eta + tau_c^2 chi^2(G_c - J_c - rank R_c).  The rows' within-leaf
part enters X'y and y'y through r and the last chi^2 above.  A replicate then costs O(cells).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import sparse

from hlm.aggregate.stats import INTERCEPT, Aggregates, FactorStats, LeafClasses
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
class _PooledDraw:
    """The pooled leaf's statistics drawn without its groups (module docstring, last paragraph):
    per refined cell j (leaf groups of one model parent, one design ancestor and one count c) its
    n_j groups, their column sums of X ``cell_x`` (J, p) and its units at the design's upper levels;
    per class c the factor of R_c (the Gram of X's leaf sums centred within cells) and the chi^2
    degrees of freedom G_c - J_c - rank R_c.  Sparse 0/1 matrices sum cells by class and by
    (model parent, class) cell of :class:`LeafClasses`."""

    classes: LeafClasses  # the template's: only the response's column changes
    size: np.ndarray  # (J,) leaf groups per cell
    count: np.ndarray  # (J,) the cell's leaf count c
    cell_x: np.ndarray  # (J, p)
    units: tuple[np.ndarray, ...]  # per design level above the leaf: each cell's unit
    by_class: sparse.csr_matrix  # (classes, J)
    by_parent: sparse.csr_matrix  # (parents x classes, J)
    centred: _Factor  # of R_c, (classes, p, p)
    chi2_df: np.ndarray  # (classes,)

    @classmethod
    def of(cls, agg: Aggregates, ancestors: tuple[np.ndarray, ...]) -> _PooledDraw | None:
        classes = leaf_classes(agg)
        if classes is None or agg.weights is not None:
            return None
        leaf = agg.factors[agg.chain[0]]  # type: ignore[index]
        assert leaf.counts is not None and leaf.ztk is not None  # the template's leaf is not pooled yet
        p, m = agg.p, len(classes.counts)
        which = np.searchsorted(classes.counts, leaf.counts)
        keys = np.column_stack([agg.parents[0], which, *ancestors[:-1]])
        first, cell = np.unique(keys, axis=0, return_index=True, return_inverse=True)[1:]
        cell = cell.reshape(-1)
        J = len(first)
        zx = leaf.ztk[:, 0, :p]
        size = np.bincount(cell, minlength=J).astype(float)
        cell_x = np.stack([np.bincount(cell, weights=zx[:, i], minlength=J) for i in range(p)], axis=1)
        within = zx - (cell_x / size[:, None])[cell]
        R = np.zeros((m, p, p))
        np.add.at(R, which, within[:, :, None] * within[:, None, :])
        centred = _Factor.of((R + R.transpose(0, 2, 1)) / 2.0)
        cells_per_class = np.bincount(which[first], minlength=m)
        ones = np.ones(J)
        parent_cell = agg.parents[0][first] * m + which[first]
        return cls(
            classes,
            size,
            classes.counts[which[first]],
            cell_x,
            tuple(anc[first] for anc in ancestors[:-1]),
            sparse.csr_matrix((ones, (which[first], np.arange(J))), shape=(m, J)),
            sparse.csr_matrix((ones, (parent_cell, np.arange(J))), shape=(classes.sums.shape[0] * m, J)),
            centred,
            (classes.ngroups - cells_per_class - centred.keep.sum(axis=1)).astype(np.int64),
        )

    def draw(self, sk: Skeleton, rng: np.random.Generator) -> tuple[LeafClasses, np.ndarray]:
        """The leaf's classes and K'K of one replicate.  With v_g = n_g u_g + 1'e_g (the leaf's
        own effect and its mean residual), iid N(0, tau_c^2 = c^2 s_u^2 + c s^2) within class c:
        the cell sums T_j = sum v_g, eta_c = Xc_c'v (Xc centred within cells, N(0, tau_c^2 R_c)),
        |v|^2 = sum T_j^2/n_j + eta'R^+eta + tau^2 chi^2 over class c; everything else is fixed."""
        b, s, p = sk.beta, sk.sigma, len(sk.beta)
        c = self.classes
        var = [float((F**2).sum()) for F, _, _ in sk.effects]
        anc = np.zeros(len(self.size))
        for v, units, (_, _, n) in zip(var[:-1], self.units, sk.effects[:-1]):
            anc += (np.sqrt(v) * rng.standard_normal(n))[units]
        tau2 = c.counts**2 * var[-1] + c.counts * s**2  # per class
        tau_cell = np.sqrt(self.by_class.T @ tau2)
        T = tau_cell * np.sqrt(self.size) * rng.standard_normal(len(self.size))
        xi = rng.standard_normal((len(c.counts), p)) * self.centred.keep
        chi2 = np.where(self.chi2_df > 0, rng.chisquare(np.maximum(self.chi2_df, 1)), 0.0)
        sqrt_tau = np.sqrt(tau2)
        xv = self.by_class @ (self.cell_x / self.size[:, None] * T[:, None])
        xv += sqrt_tau[:, None] * np.einsum("cij,cj->ci", self.centred.root, xi)
        vv = self.by_class @ (T**2 / self.size) + tau2 * ((xi**2).sum(axis=1) + chi2)
        a1 = self.by_class @ (anc[:, None] * self.cell_x)  # sum_j anc_j n_j xbar_j per class
        a2 = self.by_class @ (self.size * anc**2)
        a3 = self.by_class @ (anc * T)
        gram = c.sss[:, :p, :p]
        gb = gram @ b
        sss, sums = c.sss.copy(), c.sums.copy()
        sss[:, :p, p] = sss[:, p, :p] = gb + c.counts[:, None] * a1 + xv
        sss[:, p, p] = gb @ b + 2.0 * c.counts * (a1 @ b) + c.counts**2 * a2 + 2.0 * (xv @ b + c.counts * a3) + vv
        y = self.cell_x @ b + self.count * self.size * anc + T
        sums[:, :, p] = (self.by_parent @ y).reshape(sums.shape[:2])
        rz = rng.standard_normal(p) * sk.within_root.keep[0]
        r = s * (sk.within_root.root[0] @ rz)
        wb = sk.within_root.root[0].T @ b  # b'Wb = |root'b|^2
        ktk = sk.template.ktk.copy()
        ktk[:p, p] = ktk[p, :p] = ktk[:p, :p] @ b + a1.sum(axis=0) + (xv / c.counts[:, None]).sum(axis=0) + r
        ee = s**2 * (float(rz @ rz) + (rng.chisquare(sk.chi2_df) if sk.chi2_df > 0 else 0.0))
        ktk[p, p] = float((sss[:, p, p] / c.counts).sum()) + float(wb @ wb) + 2.0 * float(b @ r) + ee
        return LeafClasses(c.counts, c.ngroups, sss, c.children, sums), ktk


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
    pooled: _PooledDraw | None  # the leaf pooled by count: drawn by cell, delivered pooled as an SQL backend would

    def draw(self, rng: np.random.Generator) -> Aggregates:
        """One replicate's aggregates (see the module docstring).  Per leaf group only
        elementwise products and sums over z (no per-group matrix calls): O(G z^2); a pooled
        leaf: O(cells)."""
        agg, s, b = self.template, self.sigma, self.beta
        leaf_index = agg.chain[0]  # type: ignore[index]
        leaf = agg.factors[leaf_index]
        factors = list(agg.factors)
        if self.pooled is not None:
            classes, ktk = self.pooled.draw(self, rng)
            factors[leaf_index] = FactorStats(leaf.name, leaf.columns, (), None, pooled=classes)
            return replace(agg, ktk=ktk, factors=tuple(factors))
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
        ztk = leaf.ztk.copy()  # type: ignore[union-attr]
        ztk[:, :, p] = zxb + ztzw + a
        factors[leaf_index] = replace(leaf, ztk=ztk)
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
        _PooledDraw.of(agg, tuple(ancestors)),
    )
