"""R's functions in lme4 formulas, as numpy: the ``r_*`` names :mod:`hlm.spec.rformula` writes.

``poly(x, k)`` (orthogonal, R's algorithm): with t = x - mean(x), the columns are the monic
polynomials p_1..p_k orthogonal over the fitted rows, p_j / ||p_j||.  They are evaluated
by R's three-term recurrence (``predict.poly``) from the frozen state alpha, norm2:

    p_0 = 1,  p_1 = x - alpha_1,  p_{j+1} = (x - alpha_{j+1}) p_j - (norm2_{j+2} / norm2_{j+1}) p_{j-1},
    column j = p_j / sqrt(norm2_{j+2})          (norm2 = (1, n, ||p_1||^2, ..., ||p_k||^2))

The state comes from a QR decomposition of the rows (:func:`poly_state`, as R's ``poly``)
or from the moments sum t^j (:func:`poly_state_from_moments`, for the SQL backends).
``scale(x)`` subtracts the mean and divides by the SD with n - 1 (R's ``scale``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hlm.errors import DataError


def _float(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=float)


def poly_columns(
    x: Any, degree: int, alpha: Sequence[float] = (), norm2: Sequence[float] = ()
) -> dict[str, np.ndarray]:
    """Columns ``"1".."k"`` of ``poly(x, k)``: raw powers without state, else the recurrence."""
    x = _float(x)
    if not len(alpha):
        return {str(j): x**j for j in range(1, degree + 1)}
    z = [np.ones_like(x), x - alpha[0]]
    for i in range(1, degree):
        z.append((x - alpha[i]) * z[i] - (norm2[i + 1] / norm2[i]) * z[i - 1])
    return {str(j): z[j] / np.sqrt(norm2[j + 1]) for j in range(1, degree + 1)}


def _check_degree(degree: int, distinct: int) -> None:
    if degree >= distinct:
        raise DataError(f"poly(): the degree ({degree}) must be less than the number of distinct values ({distinct})")


def poly_state(x: np.ndarray, degree: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(alpha, norm2) of R's ``poly(x, degree)`` over the rows ``x``."""
    x = _float(x)
    _check_degree(degree, len(np.unique(x)))
    xbar = x.mean()
    t = x - xbar
    q, r = np.linalg.qr(np.vander(t, degree + 1, increasing=True))
    z = q * np.diag(r)
    norm2 = (z**2).sum(axis=0)
    alpha = (t[:, None] * z**2).sum(axis=0) / norm2 + xbar
    return tuple(alpha[:degree]), (1.0, *norm2)


def poly_state_from_moments(
    mean: float, moments: Sequence[float], degree: int, distinct: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(alpha, norm2) from ``moments[j] = sum (x - mean)^j``, j = 0..2k (Stieltjes' procedure)."""
    _check_degree(degree, distinct)
    m = np.asarray(moments, dtype=float)

    def inner(a: np.ndarray, b: np.ndarray) -> float:
        return float(sum(a[i] * b[j] * m[i + j] for i in range(len(a)) for j in range(len(b))))

    p_prev, p = np.zeros(1), np.ones(1)
    norms, alpha = [inner(p, p)], []
    for j in range(degree):
        a = inner(np.concatenate([[0.0], p]), p) / norms[j]
        alpha.append(a + mean)
        nxt = np.concatenate([[0.0], p]) - a * np.concatenate([p, [0.0]])
        if j > 0:
            nxt[: len(p_prev)] -= norms[j] / norms[j - 1] * p_prev
        p_prev, p = p, nxt
        norms.append(inner(p, p))
    return tuple(alpha), (1.0, *norms)


def scale_columns(x: Any, centre: float, scale: float) -> np.ndarray:
    return (_float(x) - centre) / scale


def scale_state(x: np.ndarray, center: bool, scale: bool) -> tuple[float, float]:
    """(centre, scale) of R's ``scale(x, center, scale)``: the mean, and the SD with n - 1
    (without centring: the root mean square sqrt(sum x^2 / (n - 1)))."""
    x = _float(x)
    centre = float(x.mean()) if center else 0.0
    if not scale:
        return centre, 1.0
    if len(x) < 2:
        raise DataError("scale() needs at least two rows")
    return centre, float(np.sqrt(((x - centre) ** 2).sum() / (len(x) - 1)))


def _elementwise(fn: Any) -> Any:
    """``fn`` on floats, quietly: a NaN or infinite result is reported by the caller, naming the term."""

    def apply(x: Any) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return fn(_float(x))

    return apply


CONTEXT: dict[str, Any] = {
    "r_num": _float,
    "r_I": _float,
    "r_poly": poly_columns,
    "r_scale": scale_columns,
    **{
        f"r_{name}": _elementwise(getattr(np, name))
        for name in ("log", "exp", "sqrt", "abs", "log1p", "expm1", "log2", "log10")
    },
}
"""The functions the formulas of :mod:`hlm.spec.rformula` call (formulaic's context)."""


def evaluate(code: str, env: dict[str, Any]) -> np.ndarray:
    """A Python expression of :mod:`hlm.spec.rformula` over named columns, as floats."""
    value = eval(code, {"__builtins__": {}}, {**CONTEXT, **env})  # noqa: S307 - hlm's own translated text
    return np.broadcast_to(_float(value), (len(next(iter(env.values()))),) if env else np.shape(value)).copy()
