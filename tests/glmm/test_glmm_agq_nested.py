"""Adaptive Gauss-Hermite quadrature through nested random intercepts (issue 15) against
independent references: lme4's nAGQ = 25 integral (cbpp, one level), the one-level rule, nested
scipy quadrature of the exact marginal likelihood (two levels), convergence in the number of
points on the seed's 4-level binary design, and the Laplace limit as clusters grow."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize, special

import hlm
from hlm.errors import OptionError
from hlm.glmm.agq import agq_deviance
from hlm.glmm.agq_nested import nested_agq_deviance
from hlm.glmm.family import Family
from hlm.glmm.frame import glmm_frame
from hlm.glmm.optimize import Objective
from support import dataset, reference

CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
LOGIT = Family.of("binomial", None)


def PHI(u: float) -> float:  # noqa: N802 - the standard normal density, without scipy.stats' per-call overhead
    return math.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)


def objective(model: str, data: pd.DataFrame, nagq: int, family: Family = LOGIT) -> Objective:
    return Objective(family, glmm_frame(model, data, family), nagq)


def cbpp() -> pd.DataFrame:
    frame = dataset("cbpp")
    return frame.assign(herd=frame["herd"].astype(str), period=frame["period"].astype(str))


def test_one_level_is_glmer_nagq25_and_the_one_level_rule() -> None:
    """At glmer's nAGQ = 25 estimates the nested rule gives R's per-herd integral (lme4's logLik
    plus the saturated term, README 3); at hlm's nAGQ = 25 optimum it equals agq.py's rule."""
    ref = reference("cbpp__glmm_binomial_agq25")
    exact = ref["checks"]["exact_scalar_ri"]
    obj = objective(CBPP, cbpp(), 25)
    x = np.r_[list(ref["theta"].values()), [f["estimate"] for f in ref["fixef"]]]
    assert -nested_agq_deviance(obj, x) / 2 == pytest.approx(exact["marginal_loglik_exact"], abs=1e-6)
    assert -nested_agq_deviance(obj, x) / 2 == pytest.approx(ref["logLik"] + exact["saturated_loglik"], abs=1e-6)
    fit = hlm.fit(CBPP, cbpp(), family="binomial", nagq=25)
    x = np.asarray(fit.optsummary.theta)
    assert nested_agq_deviance(obj, x) == pytest.approx(agq_deviance(obj, x), abs=1e-9)
    assert -nested_agq_deviance(obj, x) / 2 == pytest.approx(fit.loglik, abs=1e-8)


def two_level_data(seed: int = 3, tops: int = 3, children: int = 2, rows: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = tops * children * rows
    top = np.repeat(np.arange(tops), children * rows)
    child = np.repeat(np.arange(tops * children), rows) % children  # child labels repeat across tops
    x = rng.normal(size=n)
    eta = (
        0.2
        + 0.8 * x
        + rng.normal(scale=0.9, size=tops)[top]
        + rng.normal(scale=1.2, size=tops * children)[np.repeat(np.arange(tops * children), rows)]
    )
    return pd.DataFrame({"a": top, "b": child, "x": x, "y": (rng.uniform(size=n) < special.expit(eta)).astype(int)})


def quad_loglik(data: pd.DataFrame, b0: float, b1: float, sd_a: float, sd_b: float, cdf) -> float:
    """sum over a of log Int phi(v) prod_b Int phi(u) prod_i p(y_i | b0 + b1 x_i + sd_a v + sd_b u) du dv
    by nested adaptive scipy quad, independent of the modes and of Gauss-Hermite."""

    def child(rows: pd.DataFrame, v: float) -> float:
        y, x = rows["y"].to_numpy(), rows["x"].to_numpy()

        def f(u: float) -> float:
            p = cdf(b0 + b1 * x + sd_a * v + sd_b * u)
            return float(np.prod(np.where(y == 1, p, 1 - p))) * PHI(u)

        return integrate.quad(f, -12, 12, epsabs=0, epsrel=1e-9, limit=100)[0]

    total = 0.0
    for _, top in data.groupby("a"):
        kids = [rows for _, rows in top.groupby("b")]

        def g(v: float, kids: list = kids) -> float:
            return float(np.prod([child(rows, v) for rows in kids])) * PHI(v)

        total += np.log(integrate.quad(g, -12, 12, epsabs=0, epsrel=1e-9, limit=100)[0])
    return total


@pytest.mark.parametrize(("link", "cdf"), [("logit", special.expit), ("probit", special.ndtr)])
def test_two_levels_equal_nested_scipy_quadrature(link: str, cdf) -> None:
    """(1 | a/b) on 3 top groups x 2 children x 3 rows: the nested rule with 25 points per level
    is the exact marginal likelihood (scipy quad inside quad) to 1e-6, at fixed parameters and at
    the fit's estimates."""
    data = two_level_data()
    fam = Family.of("binomial", link)
    obj = objective("y ~ x + (1 | a/b)", data, 25, fam)
    x = np.array([1.3, 0.9, 0.2, 0.8])  # frame order: b:a (finest) first, then a
    assert -nested_agq_deviance(obj, x) / 2 == pytest.approx(quad_loglik(data, 0.2, 0.8, 0.9, 1.3, cdf), abs=1e-6)
    bigger = two_level_data(seed=5, tops=5, children=2, rows=4)
    fit = hlm.fit("y ~ x + (1 | a/b)", bigger, family="binomial", link=link, nagq=25)
    sd = dict(zip(fit.varcorr["group"], fit.varcorr["sdcor"]))
    b0, b1 = fit.fixef["(Intercept)"], fit.fixef["x"]
    assert fit.loglik == pytest.approx(quad_loglik(bigger, b0, b1, sd["a"], sd["b:a"], cdf), abs=1e-6)
    assert "Adaptive Gauss-Hermite Quadrature, nAGQ = 25" in fit.summary()
    assert "Integration method: mcaghermite" in fit.summary(style="stata")


SEED_4LEVEL = "pass ~ tutoring + (1 | dist_id/school_id/teach_id/student_id)"


def test_seed_four_levels_converge_in_the_points() -> None:
    """The seed's 4-level binary model.  At glmer's Laplace estimates (student SD 0.98) 7, 15 and
    30 points per level agree to 1e-4 (15 and 30 to 1e-6), all far above the Laplace value, which
    the two binary rows per student make poor.  At the 15-point maximum (student SD 1.41) 15 and
    30 points agree to 1e-4 but 7 points are 1.3e-2 off: the students' two-row integrals, each
    3e-6 to 6e-5 off at 7 points against scipy's quad (either sign, 4,000 of them), not the rule's
    adaptation (re-centring at the posterior mean and SD does no better)."""
    ref = reference("seed_D5__glmm_nested4_binary_laplace")
    x = np.r_[list(ref["theta"].values()), [f["estimate"] for f in ref["fixef"]]]
    data = dataset("seed_D5")
    values = {K: -nested_agq_deviance(objective(SEED_4LEVEL, data, K), x) / 2 for K in (7, 15, 30)}
    assert values[15] == pytest.approx(values[30], abs=1e-6)
    assert values[7] == pytest.approx(values[30], abs=1e-4)
    laplace = -objective(SEED_4LEVEL, data, 1).modes(x).deviance / 2
    assert laplace == pytest.approx(ref["checks"]["glmmTMB"]["laplace_exact_at_lme4_estimates"]["logLik"], abs=1e-4)
    assert values[30] - laplace > 30
    optimum = np.array([1.407834, 1.170414, 0.848216, 0.817199, 0.367320, 0.519044])  # hlm.fit(nagq=15)
    values = {K: -nested_agq_deviance(objective(SEED_4LEVEL, data, K), optimum) / 2 for K in (7, 15, 30)}
    assert values[15] == pytest.approx(values[30], abs=1e-4)
    assert 1e-2 < values[7] - values[30] < 2e-2


def test_approaches_laplace_as_clusters_grow() -> None:
    """(1 | a/b) logit at the generating parameters: |AGQ - Laplace| shrinks as the leaves grow
    (the Laplace error is O(1 / cluster size) per cluster)."""
    rng = np.random.default_rng(11)
    gaps = []
    for size in (2, 8, 32, 128):
        top = np.repeat(np.arange(8), 4 * size)
        leaf = np.repeat(np.arange(32), size)
        x = rng.normal(size=len(top))
        eta = -0.3 + 0.5 * x + rng.normal(scale=0.8, size=8)[top] + rng.normal(scale=1.0, size=32)[leaf]
        data = pd.DataFrame({"a": top, "b": leaf % 4, "x": x, "y": (rng.uniform(size=len(x)) < special.expit(eta))})
        obj = objective("y ~ x + (1 | a/b)", data.assign(y=data["y"].astype(int)), 15)
        point = np.array([1.0, 0.8, -0.3, 0.5])
        gaps.append(abs(nested_agq_deviance(obj, point) - obj.modes(point).deviance) / 2)
    assert all(later < earlier for earlier, later in zip(gaps, gaps[1:]))
    assert gaps[-1] < gaps[0] / 4


def test_nested_agq_refuses_slopes_and_crossed_terms() -> None:
    data = two_level_data(tops=6, children=3, rows=4).assign(h=lambda d: np.arange(len(d)) % 5)
    with pytest.raises(OptionError, match="nested random intercepts"):
        hlm.fit("y ~ x + (1 | a) + (1 | h)", data, family="binomial", nagq=5)
    with pytest.raises(OptionError, match="nested scalar random intercepts"):
        hlm.fit("y ~ x + (x | a)", data, family="binomial", nagq=5)


SEED_3LEVEL = "pass ~ tutoring + (1 | dist_id/school_id/teach_id)"


def test_seed_three_levels_converge_in_the_points() -> None:
    """The seed's binary design with districts / schools / teachers: at a fixed point 15 and 30
    points per level agree to 1e-6 and 7 points to 1e-4."""
    data = dataset("seed_D5")
    point = np.array([1.1, 0.75, 0.72, 0.33, 0.46])  # teacher, school, district SDs; beta
    values = {K: -nested_agq_deviance(objective(SEED_3LEVEL, data, K), point) / 2 for K in (7, 15, 30)}
    assert values[15] == pytest.approx(values[30], abs=1e-6)
    assert values[7] == pytest.approx(values[30], abs=1e-4)


@pytest.mark.slow
def test_seed_three_level_optima_converge_in_the_points() -> None:
    """Fitted with 7, 15 and 30 points per level: the maxima agree to 1e-4 (15 and 30 to 1e-6),
    all above the Laplace maximum."""
    data = dataset("seed_D5")
    fits = {K: hlm.fit(SEED_3LEVEL, data, family="binomial", nagq=K) for K in (1, 7, 15, 30)}
    assert fits[15].loglik == pytest.approx(fits[30].loglik, abs=1e-6)
    assert fits[7].loglik == pytest.approx(fits[30].loglik, abs=1e-4)
    assert fits[30].loglik > fits[1].loglik + 1
    assert all(fit.converged for fit in fits.values())


def direct_rule(data: pd.DataFrame, keys: list[str], b: tuple[float, float], sds: list[float], K: int) -> float:
    """The fully adaptive nested rule evaluated by plain recursion (no series): each group's K
    points centred at its integrand's mode given c (scipy's bounded minimiser) and scaled by the
    integrand's curvature there (central differences), keys and sds finest level first."""
    z, wk = np.polynomial.hermite_e.hermegauss(K)
    logw = np.log(wk) + z**2 / 2

    def tree(rows: pd.DataFrame, level: int) -> object:  # a leaf's (y, x), else its children's trees
        if level == 0:
            return rows["y"].to_numpy(), rows["x"].to_numpy()
        return [tree(kid, level - 1) for _, kid in rows.groupby(keys[level - 1])]

    def log_h(node: object, level: int, c: float) -> float:
        def f(u: float) -> float:
            if level == 0:
                y, x = node
                p = special.expit(b[0] + b[1] * x + c + sds[0] * u)
                inner = float(np.sum(np.where(y == 1, np.log(p), np.log1p(-p))))
            else:
                inner = sum(log_h(kid, level - 1, c + sds[level] * u) for kid in node)
            return inner - u * u / 2

        u = optimize.minimize_scalar(lambda v: -f(v), bounds=(-8, 8), method="bounded", options={"xatol": 1e-9}).x
        step = 1e-3
        s = 1 / math.sqrt(-(f(u + step) - 2 * f(u) + f(u - step)) / step**2)
        return (
            math.log(s)
            - 0.5 * math.log(2 * math.pi)
            + special.logsumexp([lw + f(u + s * zk) for lw, zk in zip(logw, z)])
        )

    top = len(keys) - 1
    return sum(log_h(tree(rows, top), top, 0.0) for _, rows in data.groupby(keys[-1]))


def test_series_recursion_is_the_direct_rule() -> None:
    """Three levels (a/b/c, 2 x 2 x 2 groups of 3 rows): the bottom-up Chebyshev recursion gives
    the plain nested recursion of the same fully adaptive rule to 1e-8, at 5 points."""
    rng = np.random.default_rng(7)
    n = 24
    leaf = np.repeat(np.arange(8), 3)
    x = rng.normal(size=n)
    eta = 0.3 + 0.7 * x + rng.normal(scale=1.0, size=8)[leaf] + rng.normal(scale=0.8, size=4)[leaf // 2]
    data = pd.DataFrame(
        {"a": leaf // 4, "b": (leaf // 2) % 2, "c": leaf % 2, "x": x, "y": (rng.uniform(size=n) < special.expit(eta))}
    ).assign(y=lambda d: d["y"].astype(int))
    point = np.array([1.2, 0.8, 0.6, 0.3, 0.7])  # c:b:a, b:a, a SDs; beta
    nested = -nested_agq_deviance(objective("y ~ x + (1 | a/b/c)", data, 5), point) / 2
    levels = data.assign(b=data["a"] * 2 + data["b"], c=data["a"] * 4 + data["b"] * 2 + data["c"])
    assert nested == pytest.approx(direct_rule(levels, ["c", "b", "a"], (0.3, 0.7), [1.2, 0.8, 0.6], 5), abs=1e-8)
