"""Compiled kernels of the general engine against independent numpy computations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from hlm.lmm.crossed import schur_pairs
from hlm.lmm.kernels import SchurGram, fixed_solve, one_level, product_pairs


@pytest.mark.parametrize("sparse_b22", [False, True])
def test_schur_gram_equals_the_weighted_product(sparse_b22: bool):
    """Lower triangle of I + D (B22 - B21 diag(w) B21') D, w given per count class, from the
    compiled pass and from the stored pairs, against the sparse product; B22 given dense or
    sparse (as the engine passes it)."""
    rng = np.random.default_rng(0)
    b21 = sp.random(50, 80, density=0.3, random_state=1, format="csr")
    b21.data = np.round(b21.data * 5) + 1
    counts = rng.integers(1, 6, 80).astype(float)
    b22 = sp.random(50, 50, density=0.2, random_state=2).toarray()
    b22 = b22 + b22.T + np.diag(rng.integers(5, 9, 50))
    given = sp.csr_matrix(b22) if sparse_b22 else b22
    gram, pairs = SchurGram.of(b21, counts, given), schur_pairs(b21, counts, given)
    np.testing.assert_array_equal(gram.classes, pairs.classes)
    w, lam = rng.random(len(gram.classes)), rng.random(50) + 0.5
    product = (b21 @ sp.diags(w[np.searchsorted(gram.classes, counts)]) @ b21.T).toarray()
    full = np.eye(50) + lam[:, None] * (b22 - product) * lam[None, :]
    np.testing.assert_allclose(np.tril(gram.schur(w, lam)), np.tril(full), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.tril(pairs.schur(w, lam)), np.tril(full), rtol=1e-12, atol=1e-12)
    k = np.diff(b21.tocsc().indptr)
    assert product_pairs(b21) == int((k * (k + 1) // 2).sum())


def test_fixed_solve_is_the_cholesky_solution():
    rng = np.random.default_rng(1)
    K = rng.normal(size=(40, 4))
    Q = K.T @ K
    beta, logdet = fixed_solve(Q)
    np.testing.assert_allclose(beta, np.linalg.solve(Q[:3, :3], Q[:3, 3]), rtol=1e-12)
    assert logdet == pytest.approx(np.linalg.slogdet(Q[:3, :3])[1], rel=1e-12)
    with pytest.raises(np.linalg.LinAlgError):
        fixed_solve(np.zeros((3, 3)))


def test_one_level_kernel_equals_the_dense_computation():
    """log|I + Lambda'Z'Z Lambda| and K'H^{-1}K for one factor with two effects (sleepstudy's
    shape) from the compiled pass and from the whole dense Z of simulated rows."""
    import pandas as pd

    from hlm.lmm.objective import DevianceFunction
    from hlm.lmm.pipeline import aggregate
    from hlm.lmm.structure import build_structure
    from hlm.spec import parse_model

    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(12), 7)
    x = rng.normal(size=len(g))
    frame = pd.DataFrame({"y": rng.normal(size=len(g)) + x, "x": x, "g": g})
    spec = parse_model("y ~ x + (x | g)")
    agg, _ = aggregate(spec, frame)
    struct = build_structure(agg, ("g",))
    single = one_level(agg, struct)
    assert DevianceFunction.build(agg, struct, True).single is not None
    theta = np.array([0.8, -0.3, 0.5])
    lam = struct.lambdas(theta)[0]
    Z = np.zeros((len(g), 24))
    Z[np.arange(len(g)), 2 * g] = 1.0
    Z[np.arange(len(g)), 2 * g + 1] = x
    ZL = Z @ np.kron(np.eye(12), lam)
    K = np.column_stack([np.ones(len(g)), x, frame["y"]])
    A = ZL.T @ ZL + np.eye(24)
    logdet, Q = single.terms(struct.lambdas(theta))
    assert logdet == pytest.approx(np.linalg.slogdet(A)[1], rel=1e-12)
    np.testing.assert_allclose(Q, K.T @ K - (ZL.T @ K).T @ np.linalg.solve(A, ZL.T @ K), rtol=1e-10)


def test_nested_vector_levels_equal_the_dense_computation():
    """(x | school/cls): the compiled two-level recursion against the whole dense Z."""
    import pandas as pd

    from hlm.lmm.nested import nested_terms
    from hlm.lmm.pipeline import aggregate
    from hlm.lmm.structure import build_structure
    from hlm.spec import parse_model

    rng = np.random.default_rng(3)
    school = np.repeat(np.arange(6), 12)
    cls = school * 3 + np.tile(np.repeat(np.arange(3), 4), 6)
    x = rng.normal(size=len(school))
    frame = pd.DataFrame({"y": rng.normal(size=len(x)) + x, "x": x, "school": school, "cls": cls % 3})
    spec = parse_model("y ~ x + (x | school/cls)")
    agg, _ = aggregate(spec, frame)
    struct = build_structure(agg, tuple(t.name for t in spec.random))
    theta = np.array([0.7, 0.2, 0.4, 0.9, -0.3, 0.6])
    lambdas = struct.lambdas(theta)
    blocks = []
    for f, fac in enumerate(agg.factors):
        codes = cls if fac.nlevels == 18 else school
        G = fac.nlevels
        Z = np.zeros((len(x), 2 * G))
        Z[np.arange(len(x)), 2 * codes] = 1.0
        Z[np.arange(len(x)), 2 * codes + 1] = x
        blocks.append(Z @ np.kron(np.eye(G), lambdas[f]))
    ZL = np.hstack(blocks)
    K = np.column_stack([np.ones(len(x)), x, frame["y"]])
    A = ZL.T @ ZL + np.eye(ZL.shape[1])
    logdet, Q = nested_terms(agg, struct, lambdas)
    assert logdet == pytest.approx(np.linalg.slogdet(A)[1], rel=1e-12)
    np.testing.assert_allclose(Q, K.T @ K - (ZL.T @ K).T @ np.linalg.solve(A, ZL.T @ K), rtol=1e-10)
