"""GLMM input checks: one-line errors for data a family cannot take, and refusals of what is
not built; plus the response codings (bool, two-level factor) and offsets against theory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hlm
from hlm.errors import ColumnError, DataError, FormulaError, OptionError


def frame(seed: int = 1, n: int = 400, groups: int = 20) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), n // groups)
    x = rng.normal(size=n)
    b = rng.normal(scale=0.7, size=groups)[g]
    t = rng.uniform(0.5, 3.0, size=n)
    return pd.DataFrame(
        {
            "g": g,
            "x": x,
            "t": t,
            "y": (rng.uniform(size=n) < 1 / (1 + np.exp(-(0.3 + 0.8 * x + b)))).astype(int),
            "c": rng.poisson(t * np.exp(0.2 + 0.5 * x + b)),
        }
    )


@pytest.mark.parametrize(
    ("change", "family", "message"),
    [
        ({"y": 2}, "binomial", "must be 0/1"),
        ({"y": 0.5}, "binomial", "proportions need trials"),
        ({"c": -1}, "poisson", "negative values"),
        ({"c": 1.5}, "poisson", "non-integer"),
    ],
)
def test_bad_responses_are_one_line_errors(change: dict, family: str, message: str) -> None:
    col, value = next(iter(change.items()))
    data = frame().astype({col: float})
    data.loc[3, col] = value
    with pytest.raises(DataError, match=message) as info:
        hlm.fit(f"{col} ~ x + (1 | g)", data, family=family)
    assert "\n" not in str(info.value)


def test_non_positive_exposure() -> None:
    data = frame()
    data.loc[5, "t"] = 0.0
    with pytest.raises(DataError, match="offset"):
        hlm.fit("c ~ x + offset(log(t)) + (1 | g)", data, family="poisson")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"family": "binomial", "reml": True}, OptionError, "ML"),
        ({"family": "binomial", "link": "log"}, OptionError, "link 'log'"),
        ({"family": "gamma"}, OptionError, "family must be"),
        ({"family": "binomial", "backend": "duckdb"}, OptionError, "DuckDB backend takes a path"),
        ({"nagq": 7}, OptionError, "GLMMs"),
        ({"family": "binomial", "nagq": -1}, OptionError, "nagq must be"),
        ({"family": "binomial", "reorder": True}, OptionError, "reorder="),
    ],
)
def test_refusals(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        hlm.fit("y ~ x + (1 | g)", frame(), **kwargs)


def test_sql_names_a_missing_column() -> None:
    with pytest.raises(ColumnError, match="column 'x'"):
        hlm.fit("y ~ x + (1 | g)", sql="SELECT 1 AS y, 2 AS z, 3 AS g", family="binomial")


def test_vector_random_effects_match_an_independent_laplace() -> None:
    """(x | g): the log-likelihood at the estimates is the per-group Laplace approximation computed
    in b-space (Newton on b with Sigma, det Sigma and det(Z'WZ + Sigma^-1)), and the conditional
    modes and SDs are that Newton's; the correlated model is at least as likely as the uncorrelated one."""
    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(40), 25)
    x = rng.normal(size=g.size)
    b = rng.multivariate_normal([0, 0], [[0.8, 0.3], [0.3, 0.5]], size=40)
    eta = -0.2 + 0.7 * x + b[g, 0] + b[g, 1] * x
    data = pd.DataFrame({"g": g, "x": x, "y": (rng.uniform(size=g.size) < 1 / (1 + np.exp(-eta))).astype(int)})
    fit = hlm.fit("y ~ x + (x | g)", data, family="binomial")
    vc = fit.varcorr
    sd0, sd1, corr = vc["sdcor"].to_numpy()
    sigma = np.array([[sd0**2, corr * sd0 * sd1], [corr * sd0 * sd1, sd1**2]])
    prec = np.linalg.inv(sigma)
    total, modes, sds = 0.0, [], []
    for j in range(40):
        rows = g == j
        Z, y = np.column_stack([np.ones(rows.sum()), x[rows]]), data.y.to_numpy()[rows]
        fixed = fit.fixef["(Intercept)"] + fit.fixef["x"] * x[rows]
        bj = np.zeros(2)
        for _ in range(100):
            mu = 1 / (1 + np.exp(-(fixed + Z @ bj)))
            H = Z.T @ ((mu * (1 - mu))[:, None] * Z) + prec
            step = np.linalg.solve(H, Z.T @ (y - mu) - prec @ bj)
            bj = bj + step
            if np.abs(step).max() < 1e-13:
                break
        e = fixed + Z @ bj
        mu = 1 / (1 + np.exp(-e))
        H = Z.T @ ((mu * (1 - mu))[:, None] * Z) + prec
        ll = np.sum(y * e - np.log1p(np.exp(e)))
        total += ll - 0.5 * bj @ prec @ bj - 0.5 * np.linalg.slogdet(sigma)[1] - 0.5 * np.linalg.slogdet(H)[1]
        modes.append(bj)
        sds.append(np.sqrt(np.diag(np.linalg.inv(H))))
    assert fit.loglik == pytest.approx(total, abs=1e-6)
    re = fit.ranef()
    assert re["estimate"].to_numpy() == pytest.approx(np.concatenate(modes), abs=1e-6)
    assert re["std_error"].to_numpy() == pytest.approx(np.concatenate(sds), abs=1e-6)
    assert list(vc["var2"].fillna("")) == ["", "", "x"]
    uncorrelated = hlm.fit("y ~ x + (1 | g) + (0 + x | g)", data, family="binomial")
    assert fit.loglik >= uncorrelated.loglik - 1e-6
    assert fit.converged and not fit.singular


def test_agq_needs_one_term() -> None:
    data = frame().assign(h=lambda d: d.index % 7)
    with pytest.raises(OptionError, match="nested random intercepts"):  # crossed: no nested quadrature
        hlm.fit("y ~ x + (1 | g) + (1 | h)", data, family="binomial", nagq=5)


def test_bool_and_factor_responses_code_the_first_level_zero() -> None:
    data = frame()
    base = hlm.fit("y ~ x + (1 | g)", data, family="binomial")
    as_bool = hlm.fit("y ~ x + (1 | g)", data.assign(y=data.y.astype(bool)), family="binomial")
    labels = pd.Categorical(np.where(data.y == 1, "pass", "fail"), categories=["fail", "pass"])
    as_factor = hlm.fit("y ~ x + (1 | g)", data.assign(y=labels), family="binomial")
    for other in (as_bool, as_factor):
        assert other.loglik == pytest.approx(base.loglik, abs=1e-8)
        assert other.fixef.to_numpy() == pytest.approx(base.fixef.to_numpy(), abs=1e-6)


def test_offset_argument_equals_formula_offset_and_binary_cbind_equals_01() -> None:
    """offset= is offset() in the formula; a 0/1 response equals cbind(y, 1 - y) (log choose = 0)."""
    data = frame().assign(lt=lambda d: np.log(d.t))
    in_formula = hlm.fit("c ~ x + offset(log(t)) + (1 | g)", data, family="poisson")
    argument = hlm.fit("c ~ x + (1 | g)", data, family="poisson", offset="lt")
    assert argument.loglik == pytest.approx(in_formula.loglik, abs=1e-8)
    assert argument.fixef.to_numpy() == pytest.approx(in_formula.fixef.to_numpy(), abs=1e-6)
    binary = hlm.fit("y ~ x + (1 | g)", data, family="binomial")
    trials = hlm.fit("cbind(y, 1 - y) ~ x + (1 | g)", data, family="binomial")
    assert trials.loglik == pytest.approx(binary.loglik, abs=1e-8)


def test_poisson_loglik_is_full_at_theta_zero_limit() -> None:
    """With no group variation the Laplace value is the GLM's full log-likelihood (-log y! included)."""
    from scipy import special

    data = frame()
    data["g"] = np.arange(len(data)) % 2  # two groups: a tiny, possibly zero, variance
    fit = hlm.fit("c ~ x + (1 | g)", data, family="poisson")
    eta = fit.fixef["(Intercept)"] + fit.fixef["x"] * data.x + fit.ranef()["estimate"].to_numpy()[data.g]
    direct = float(np.sum(data.c * eta - np.exp(eta) - special.gammaln(data.c + 1)))
    assert fit.loglik < direct + 1e-9  # the Laplace marginal lies below the conditional value...
    assert fit.loglik > direct - 5.0  # ...by the penalty and log-determinant only


def test_formula_error_on_bad_cbind() -> None:
    with pytest.raises((DataError, FormulaError), match="cbind"):
        hlm.fit("cbind(y) ~ x + (1 | g)", frame(), family="binomial")


def test_stata_commands_fit_the_lme4_model() -> None:
    """mepoisson with exposure(), meglm with family()/link() and offset(), melogit/meprobit are
    the lme4 models they spell (Stata names: _cons), integrated as Stata does: Laplace with the
    ``laplace`` option, else adaptive quadrature with intpoints() points (7 by default)."""
    data = frame().assign(lt=lambda d: np.log(d.t))
    lme4 = hlm.fit("c ~ x + offset(log(t)) + (1 | g)", data, family="poisson")
    for model in (
        "mepoisson c x, exposure(t) irr laplace || g:",
        "meglm c x, family(poisson) offset(lt) laplace || g:",
    ):
        stata = hlm.fit(model, data)
        assert stata.loglik == pytest.approx(lme4.loglik, abs=1e-8)
        assert stata.fixef.to_numpy() == pytest.approx(lme4.fixef.to_numpy(), abs=1e-6)
        assert list(stata.fixef.index) == ["_cons", "x"]
        assert stata.spec.text == model
    probit = hlm.fit("y ~ x + (1 | g)", data, family="binomial", link="probit")
    for model in ("meprobit y x, laplace || g:", "meglm y x, family(bernoulli) link(probit) intmethod(laplace) || g:"):
        assert hlm.fit(model, data).loglik == pytest.approx(probit.loglik, abs=1e-8)
    assert hlm.fit("melogit y x, or || g:", data).loglik == pytest.approx(
        hlm.fit("y ~ x + (1 | g)", data, family="binomial", nagq=7).loglik, abs=1e-8
    )
    assert hlm.fit("melogit y x, intpoints(12) || g:", data).nagq == 12
    assert hlm.fit("melogit y x, laplace || g:", data).loglik == pytest.approx(
        hlm.fit("y ~ x + (1 | g)", data, family="binomial").loglik, abs=1e-8
    )


def test_stata_options_after_the_last_level() -> None:
    """Stata writes the command's options after the last level (``|| g:, or laplace``); a level's
    own options stay with it.  Stata's default 7 points are mode-curvature nodes here (said in
    a note), intmethod(mcaghermite) is exactly that, mvaghermite is refused."""
    data = frame()
    laplace = hlm.fit("y ~ x + (1 | g)", data, family="binomial")
    end = hlm.fit("melogit y x || g:, laplace or", data)
    assert end.nagq == 1 and end.loglik == pytest.approx(laplace.loglik, abs=1e-8)
    assert "Odds ratio" in end.summary(style="stata") or "Odds Ratio" in end.summary(style="stata")
    assert hlm.fit("melogit y x || g:, intpoints(9)", data).nagq == 9
    default = hlm.fit("melogit y x || g:", data)
    assert default.nagq == 7 and any("mcaghermite" in n for n in default.notes)
    assert hlm.fit("melogit y x || g:, intmethod(mcaghermite)", data).loglik == pytest.approx(default.loglik, abs=1e-10)
    assert "Integration method: mcaghermite" in default.summary(style="stata")
    with pytest.raises(OptionError, match="mode and curvature"):
        hlm.fit("melogit y x || g:, intmethod(mvaghermite)", data)


def test_stata_command_conflicts() -> None:
    data = frame()
    with pytest.raises(OptionError, match="contradicts"):
        hlm.fit("melogit y x || g:", data, family="poisson")
    with pytest.raises(FormulaError, match="meglm options"):
        hlm.fit("melogit y x, link(probit) || g:", data)
    with pytest.raises(OptionError, match="contradicts nagq=5"):
        hlm.fit("melogit y x, intpoints(9) || g:", data, nagq=5)
    with pytest.raises(OptionError, match="intmethod"):
        hlm.fit("melogit y x, intmethod(ghermite) || g:", data)
    with pytest.raises(OptionError, match="not both"):
        hlm.fit("melogit y x, laplace intpoints(9) || g:", data)
    with pytest.raises(OptionError, match="the laplace option"):  # Stata's default quadrature: random slopes refused
        hlm.fit("melogit y x || g: x", data)
    with pytest.raises(DataError, match="exposure"):
        hlm.fit("mepoisson c x, exposure(x) || g:", data)


@pytest.mark.parametrize("kind", ["variance", "profile"])
def test_linear_only_plots_are_refused(kind: str) -> None:
    fit = hlm.fit("y ~ x + (1 | g)", frame(), family="binomial")
    with pytest.raises(OptionError, match="is for linear fits"):
        fit.plot(kind)


def test_lrtest_refuses_mixing_glmm_and_lmm_or_families() -> None:
    """GLMMs compare with GLMMs of one family, link, nagq and data (issue 15), never with linear fits."""
    from hlm.errors import ComparisonError

    data = frame()
    m0 = hlm.fit("y ~ 1 + (1 | g)", data, family="binomial")
    with pytest.raises(ComparisonError, match="linear mixed model"):
        hlm.lrtest(m0, hlm.fit("y ~ x + (1 | g)", data))
    with pytest.raises(ComparisonError, match="families or links"):
        hlm.lrtest(m0, hlm.fit("y ~ x + (1 | g)", data, family="binomial", link="probit"))
    with pytest.raises(ComparisonError, match="nagq"):
        hlm.lrtest(m0, hlm.fit("y ~ x + (1 | g)", data, family="binomial", nagq=5))
    with pytest.raises(ComparisonError, match="same data"):
        hlm.lrtest(m0, hlm.fit("y ~ x + (1 | g)", frame(seed=2), family="binomial"))


@pytest.mark.parametrize(("family", "link", "column"), [("binomial", "probit", "y"), ("poisson", "log", "c")])
def test_agq_equals_numerical_integration(family: str, link: str, column: str) -> None:
    """nagq=15: the log-likelihood at the estimates is the per-group integral over b ~ N(0, sd^2)
    computed by scipy's quad, independently of the quadrature and of PIRLS."""
    from scipy import integrate, special, stats

    data = frame(seed=4, n=120, groups=12)
    fit = hlm.fit(f"{column} ~ x + (1 | g)", data, family=family, link=link, nagq=15)
    b0, b1 = fit.fixef["(Intercept)"], fit.fixef["x"]
    sd = float(fit.varcorr["sdcor"].iloc[0])
    total = 0.0
    for _, rows in data.groupby("g"):
        y, x = rows[column].to_numpy(), rows["x"].to_numpy()

        def density(b: float, y: np.ndarray = y, x: np.ndarray = x) -> float:
            eta = b0 + b1 * x + b
            if family == "binomial":
                p = stats.norm.cdf(eta)
                ll = np.sum(y * np.log(p) + (1 - y) * np.log1p(-p))
            else:
                ll = np.sum(y * eta - np.exp(eta) - special.gammaln(y + 1))
            return float(np.exp(ll) * stats.norm.pdf(b, scale=sd))

        total += np.log(integrate.quad(density, -10 * sd, 10 * sd, epsabs=0, epsrel=1e-12, limit=200)[0])
    assert fit.loglik == pytest.approx(total, abs=1e-6)
