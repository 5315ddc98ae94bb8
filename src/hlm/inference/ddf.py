"""Tests of the fixed effects: z (Stata), Satterthwaite t (lmerTest), Kenward-Roger t (pbkrtest),
and the Wald chi2 of all slopes (Stata's header).

Satterthwaite (lmerTest's ``contest1D``).  For a contrast l, v(phi) = l' C(phi) l with
C = sigma^2 Q_XX^{-1}(theta) and phi = (theta, sigma).  With A = 2 H^{-1}, H the Hessian of
the fit's criterion D(theta, sigma) = dof log(2 pi sigma^2) + a(theta) + b(theta)/sigma^2
(see :mod:`hlm.lmm.params`; only the theta-derivatives of a, b and Q_XX^{-1} are
numerical):

    D_tt = a'' + b''/s^2,  D_ts = -2 b'/s^3,  D_ss = -2 dof/s^2 + 6 b/s^4,
    df = 2 v^2 / (g' A g),   g = dv/dphi = (s^2 l' dQ_XX^{-1}/dtheta l, 2 s l'Q_XX^{-1} l).

Kenward-Roger (pbkrtest's ``vcovAdj`` and ``Lb_ddf``) in the linear parametrisation
Sigma = sum_i psi_i G_i + sigma^2 I, G_i = Z_f (I (x) E_rc) Z_f' for each variance and
covariance of each term.  Every n x n quantity is reduced to q x q ones through
Sigma^{-1} = sigma^{-2}(I - B M^{-1} B'), B = Z Lambda, M = I + Lambda'Z'Z Lambda, so only Z'Z,
Z'X, X'X and n are needed (the aggregates; no rows):

    Phi = (X'S^{-1}X)^{-1},  P_i = -X'S^{-1}G_iS^{-1}X,  Q_ij = X'S^{-1}G_iS^{-1}G_jS^{-1}X,
    I_ij = tr(S^{-1}G_iS^{-1}G_j) - 2 tr(Phi Q_ij) + tr(Phi P_i Phi P_j),   W = 2 I^{-1},
    Phi_A = Phi + 2 Phi [sum_ij W_ij (Q_ij - P_i Phi P_j)] Phi,

and the df of l'beta from A1, A2 (Kenward & Roger 1997, eqs. as in pbkrtest).  Z'Z is
formed densely (q = total number of random effects), so Kenward-Roger is limited to
``KR_MAX_Q`` random effects; use Satterthwaite for larger models.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from hlm.aggregate.stats import pooled_message
from hlm.errors import OptionError
from hlm.lmm.params import Criterion
from hlm.lmm.result import LmmResult

DDF = Literal["none", "satterthwaite", "kenward-roger"]
KR_MAX_Q = 4000
DDF_COLUMNS = ["term", "estimate", "std_error", "df", "statistic", "p_value", "conf_low", "conf_high"]


# ---- Satterthwaite -------------------------------------------------------------------------
def satterthwaite_parts(fit: LmmResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(C, J, A): vcov(beta), its Jacobian (n_phi, p, p) w.r.t. phi = (theta, sigma), and
    A = 2 H^{-1} (Moore-Penrose over positive eigenvalues, as lmerTest)."""
    crit = Criterion(fit.devfun)
    s, p = fit.sigma, fit.aggregates.p
    d = fit.theta_derivatives
    f0, grad, hess = d.value, d.grad, d.hess
    m = len(grad)
    b0 = f0[1]
    H = np.zeros((m + 1, m + 1))
    H[:m, :m] = hess[:, :, 0] + hess[:, :, 1] / s**2
    H[:m, m] = H[m, :m] = -2.0 * grad[:, 1] / s**3
    H[m, m] = -2.0 * crit.dof / s**2 + 6.0 * b0 / s**4
    vals, vecs = np.linalg.eigh(H)
    pos = vals > 1e-8
    A = 2.0 * (vecs[:, pos] / vals[pos]) @ vecs[:, pos].T
    qinv = f0[2:].reshape(p, p)
    J = np.empty((m + 1, p, p))
    J[:m] = s**2 * grad[:, 2:].reshape(m, p, p)
    J[m] = 2.0 * s * qinv
    return s**2 * qinv, J, A


def satterthwaite_df(fit: LmmResult, L: np.ndarray | None = None) -> np.ndarray:
    """Satterthwaite df of each row of L (default: each fixed effect)."""
    C, J, A = satterthwaite_parts(fit)
    L = np.eye(C.shape[0]) if L is None else np.atleast_2d(np.asarray(L, dtype=float))
    v = np.einsum("ij,jk,ik->i", L, C, L)
    g = np.einsum("ij,mjk,ik->im", L, J, L)
    return 2.0 * v**2 / np.einsum("im,mn,in->i", g, A, g)


# ---- Kenward-Roger -------------------------------------------------------------------------
def _random_design(fit: LmmResult) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int, int]]]:
    """Dense Z'Z (q, q), Z'K (q, k) and per factor (f, offset, G_f, q_f), factors largest first."""
    agg, struct = fit.aggregates, fit.structure
    qf = [len(c) for c in struct.factor_cols]
    if not fit.devfun.crossed_factors and agg.chain is not None:
        order = list(agg.chain)
        leaf = agg.factors[order[0]]
        if (msg := pooled_message(agg)) is not None:
            raise OptionError(
                f"Kenward-Roger needs every group's random-effects design, but {msg}; use ddf='satterthwaite'"
            )
        assert leaf.ztk is not None and leaf.ztz is not None  # not pooled, so the groups' arrays are kept
        anc = [np.arange(leaf.nlevels)]
        for par in agg.parents:
            anc.append(par[anc[-1]])
        sizes = [agg.factors[f].nlevels * qf[f] for f in order]
        offs = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
        q = int(sum(sizes))
        if q > KR_MAX_Q:
            raise OptionError(f"Kenward-Roger needs a dense {q} x {q} matrix; use ddf='satterthwaite'")
        rows, cols, vals = [], [], []
        ztk = np.zeros((q, agg.ktk.shape[0]))
        for a, f in enumerate(order):
            Jf = list(struct.factor_cols[f])
            for i in range(qf[f]):
                np.add.at(ztk, offs[a] + anc[a] * qf[f] + i, leaf.ztk[:, Jf[i], :])
            for b, h in enumerate(order):
                Jh = list(struct.factor_cols[h])
                for i in range(qf[f]):
                    for j in range(qf[h]):
                        rows.append(offs[a] + anc[a] * qf[f] + i)
                        cols.append(offs[b] + anc[b] * qf[h] + j)
                        vals.append(leaf.ztz[:, Jf[i], Jh[j]])
        ztz = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(q, q)
        ).toarray()
    else:
        system = fit.devfun.crossed
        assert system is not None  # the crossed evaluator (or a non-nested structure) builds it
        order = list(system.order)
        offs = np.concatenate([[0], np.cumsum(system.sizes)[:-1]]).astype(int)
        q = int(sum(system.sizes))
        if q > KR_MAX_Q:
            raise OptionError(f"Kenward-Roger needs a dense {q} x {q} matrix; use ddf='satterthwaite'")
        ztz, ztk = system.ztz.toarray(), np.asarray(system.ztk)
    blocks = [(int(offs[a]), agg.factors[f].nlevels, qf[f]) for a, f in enumerate(order)]
    return ztz, ztk, [(f, *blk) for f, blk in zip(order, blocks)]


def _lambda_dense(fit: LmmResult, blocks: list[tuple[int, int, int, int]]) -> np.ndarray:
    lambdas = fit.structure.lambdas(np.asarray(fit.theta, dtype=float))
    return sp.block_diag([sp.kron(sp.identity(G), sp.csr_matrix(lambdas[f])) for f, _, G, _ in blocks]).toarray()


def _kr_parameters(fit: LmmResult, blocks: list[tuple[int, int, int, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per variance/covariance parameter of each term: the index pairs (rows, cols) of D_i,
    D_i = I_G (x) E_rc on the term's columns within its factor's block."""
    where = {f: (off, G, qf) for f, off, G, qf in blocks}
    out = []
    for term in fit.structure.terms:
        off, G, qf = where[term.factor]
        base = off + np.arange(G) * qf
        for j in range(len(term.local)):
            for i in range(j, len(term.local)):
                out.append((base + term.local[i], base + term.local[j]))
    return out


def _apply_d(d: tuple[np.ndarray, np.ndarray], A: np.ndarray) -> np.ndarray:
    """D A for D = sum_g (e_r e_c' + e_c e_r') (or e_r e_r' when r = c)."""
    r, c = d
    out = np.zeros_like(A)
    out[r] = A[c]
    if not np.array_equal(r, c):
        out[c] = A[r]
    return out


def kenward_roger_parts(fit: LmmResult) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray]:
    """(Phi, Phi_A, [P_i], W) as pbkrtest's ``vcovAdj`` (see the module docstring)."""
    if fit.structure.structured:  # its D_i are one per covariance entry, not per shared parameter
        raise OptionError(
            "Kenward-Roger is not implemented for cov(identity) or cov(exchangeable) terms; use ddf='satterthwaite'"
        )
    ztz, ztk, blocks = _random_design(fit)
    q = ztz.shape[0]
    if q > KR_MAX_Q:
        raise OptionError(f"Kenward-Roger needs a dense {q} x {q} matrix; use ddf='satterthwaite'")
    agg = fit.aggregates
    p, n = agg.p, agg.nobs
    s2 = fit.sigma**2
    ztx = ztk[:, :p]
    xtx = agg.ktk[:p, :p]
    Lam = _lambda_dense(fit, blocks)
    Psi = Lam.T @ ztz @ Lam
    R = np.linalg.inv(np.eye(q) + Psi)
    # U'W^k V = U'B (R Psi)^{k-1} R B'V with B'Z = Lam'Z'Z, B'X = Lam'Z'X
    BZ, BX = Lam.T @ ztz, Lam.T @ ztx
    RPsi = R @ Psi

    def w_pow(Bu: np.ndarray, Bv: np.ndarray, k: int) -> np.ndarray:
        mid = R
        for _ in range(k - 1):
            mid = RPsi @ mid
        return Bu.T @ mid @ Bv

    def quad(UU: np.ndarray, Bu: np.ndarray, Bv: np.ndarray, m: int) -> np.ndarray:
        """U'(I - W)^m V."""
        coef = {1: (1, -1), 2: (1, -2, 1), 3: (1, -3, 3, -1)}[m]
        out = coef[0] * UU
        for k in range(1, m + 1):
            out = out + coef[k] * w_pow(Bu, Bv, k)
        return out

    Szz = quad(ztz, BZ, BZ, 1) / s2
    Szx = quad(ztx, BZ, BX, 1) / s2
    Sxx = quad(xtx, BX, BX, 1) / s2
    S2zz = quad(ztz, BZ, BZ, 2) / s2**2
    S2zx = quad(ztx, BZ, BX, 2) / s2**2
    S2xx = quad(xtx, BX, BX, 2) / s2**2
    S3xx = quad(xtx, BX, BX, 3) / s2**3
    trW = np.trace(RPsi)
    tr_s2 = (n - 2.0 * trW + np.trace(RPsi @ RPsi)) / s2**2
    Phi = np.linalg.inv(Sxx)
    ds = _kr_parameters(fit, blocks)
    m = len(ds) + 1  # + residual
    DSzx = [_apply_d(d, Szx) for d in ds]
    DSzz = [_apply_d(d, Szz) for d in ds]
    P = [-Szx.T @ D for D in DSzx] + [-S2xx]
    Q: dict[tuple[int, int], np.ndarray] = {}
    K = np.empty((m, m))
    for i in range(m):
        for j in range(i, m):
            if j < m - 1:  # both random-effect parameters
                Q[i, j] = Szx.T @ _apply_d(ds[i], Szz @ DSzx[j])
                K[i, j] = np.sum(DSzz[i] * DSzz[j].T)
            elif i < m - 1:  # random-effect i, residual j
                Q[i, j] = DSzx[i].T @ S2zx
                K[i, j] = np.trace(_apply_d(ds[i], S2zz))
            else:
                Q[i, j] = S3xx
                K[i, j] = tr_s2
            K[j, i] = K[i, j]
    IE = np.empty((m, m))
    for i in range(m):
        for j in range(i, m):
            IE[i, j] = IE[j, i] = K[i, j] - 2.0 * np.sum(Phi * Q[i, j]) + np.sum((Phi @ P[i]) * (P[j] @ Phi))
    W = 2.0 * (np.linalg.inv(IE) if np.min(np.abs(np.linalg.eigvalsh(IE))) > 1e-10 else np.linalg.pinv(IE))
    U = np.zeros((p, p))
    for i in range(m):
        for j in range(i, m):
            term = W[i, j] * (Q[i, j] - P[i] @ Phi @ P[j])
            U += term if i == j else term + term.T
    return Phi, Phi + 2.0 * Phi @ U @ Phi, P, W


def kenward_roger_df(fit: LmmResult, L: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Kenward-Roger df and adjusted variance of each row of L (default: each fixed effect)."""
    Phi, PhiA, P, W = kenward_roger_parts(fit)
    L = np.eye(Phi.shape[0]) if L is None else np.atleast_2d(np.asarray(L, dtype=float))
    dfs, var = [], []
    for l in L:
        l = l[None, :]
        Theta = l.T @ np.linalg.solve(l @ Phi @ l.T, l)
        u = [Theta @ Phi @ Pi @ Phi for Pi in P]
        A1 = A2 = 0.0
        for i in range(len(P)):
            for j in range(i, len(P)):
                e = 1.0 if i == j else 2.0
                A1 += e * W[i, j] * np.trace(u[i]) * np.trace(u[j])
                A2 += e * W[i, j] * np.sum(u[i] * u[j].T)
        dfs.append(_kr_ddf(A1, A2, 1))
        var.append(float((l @ PhiA @ l.T)[0, 0]))
    return np.array(dfs), np.array(var)


def _kr_ddf(A1: float, A2: float, q: int) -> float:
    B = (A1 + 6.0 * A2) / (2.0 * q)
    g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
    den = 3.0 * q + 2.0 * (1.0 - g)
    c1, c2, c3 = g / den, (q - g) / den, (q + 2 - g) / den
    V0 = 1.0 + c1 * B
    V1 = 1.0 - c2 * B
    V2 = 1.0 - c3 * B
    V0 = 0.0 if abs(V0) < 1e-10 else V0
    x, y = 1.0 - A2 / q, V1
    ratio = 1.0 if abs(x) < 1e-14 and abs(y) < 1e-14 else x / y
    rho = ratio**2 * V0 / V2 / q
    return 4.0 + (q + 2) / (q * rho - 1.0)


# ---- tables --------------------------------------------------------------------------------
def fixed_effects_table(fit: LmmResult, *, ddf: DDF = "none", level: float = 0.95) -> pd.DataFrame:
    """Fixed effects with z tests (``ddf="none"``, Stata) or t tests on Satterthwaite or
    Kenward-Roger df (with the KR-adjusted standard errors).  Columns: term, estimate,
    std_error, df (inf for z), statistic, p_value, conf_low, conf_high."""
    est = fit.fixef.to_numpy()
    se = fit.se.to_numpy()
    if ddf in ("none", None):
        df = np.full(len(est), np.inf)
    elif ddf == "satterthwaite":
        df = satterthwaite_df(fit)
    elif ddf in ("kenward-roger", "kr"):
        df, var = kenward_roger_df(fit)
        se = np.sqrt(var)
    else:
        raise OptionError(f"unknown ddf {ddf!r}; use 'none', 'satterthwaite' or 'kenward-roger'")
    with np.errstate(divide="ignore", invalid="ignore"):
        t = est / se
    crit = stats.t.ppf(0.5 + level / 2.0, df)
    return pd.DataFrame(
        {
            "term": list(fit.aggregates.xnames),
            "estimate": est,
            "std_error": se,
            "df": df,
            "statistic": t,
            "p_value": 2.0 * stats.t.sf(np.abs(t), df),
            "conf_low": est - crit * se,
            "conf_high": est + crit * se,
        },
        columns=DDF_COLUMNS,
    )


def wald_slopes(fit: LmmResult) -> tuple[float, int, float]:
    """Stata's header test that all fixed slopes (every term but the intercept) are zero:
    chi2 = b_s' V_s^{-1} b_s on (number of slopes) df; returns (chi2, df, p)."""
    names = list(fit.aggregates.xnames)
    keep = [i for i, nm in enumerate(names) if nm not in ("(Intercept)", "_cons")]
    if not keep:
        return float("nan"), 0, float("nan")
    b = fit.fixef.to_numpy()[keep]
    V = fit.vcov.to_numpy()[np.ix_(keep, keep)]
    chi2 = float(b @ np.linalg.solve(V, b))
    return chi2, len(keep), float(stats.chi2.sf(chi2, len(keep)))
