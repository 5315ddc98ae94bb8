"""Stata syntax means what it says in Stata: estimation options and leading commands,
cov(identity) / cov(exchangeable) as Stata's structures (checked against a marginal
likelihood maximised here with numpy + scipy), factor-variable expansion against Stata's
documented columns written out by hand, and Stata's names for factor terms."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

import hlm
from hlm.errors import FormulaError, OptionError
from hlm.modelframe import build_frame
from hlm.spec import parse_model
from support import dataset, reference

LOG2PI = np.log(2 * np.pi)


# ---- estimation options and leading commands --------------------------------------------------
@pytest.mark.parametrize(
    "model,ref",
    [
        ("Reaction Days || Subject: Days, cov(un) mle", "sleepstudy__slope_ML"),
        ("Reaction Days || Subject: Days, cov(unstructured) ml", "sleepstudy__slope_ML"),
        ("Reaction Days, mle || Subject: Days, cov(un)", "sleepstudy__slope_ML"),
        ("mixed Reaction Days || Subject: Days, cov(un)", "sleepstudy__slope_ML"),
        ("mixed Reaction Days || Subject: Days, cov(un) reml", "sleepstudy__slope_REML"),
        ("xtmixed Reaction Days || Subject: Days, cov(un)", "sleepstudy__slope_REML"),
        ("Reaction Days || Subject: Days, cov(un)", "sleepstudy__slope_REML"),
        ("Reaction Days || Subject: Days, cov(un) reml", "sleepstudy__slope_REML"),
    ],
)
def test_estimation_option_and_command_choose_the_criterion(model, ref):
    r = reference(ref)
    fit = hlm.fit(model, dataset("sleepstudy"))
    assert fit.reml == r["REML"]
    assert fit.loglik == pytest.approx(r["logLik"], rel=1e-7)


def test_mle_option_gives_the_ml_loglik_of_the_issue():
    d = dataset("sleepstudy")
    assert hlm.fit("Reaction Days || Subject:, mle", d).loglik == pytest.approx(-897.0393, abs=1e-3)
    assert hlm.fit("Reaction Days || Subject:", d).loglik == pytest.approx(-893.2325, abs=1e-3)


def test_argument_agrees_or_conflicts_with_the_string():
    d = dataset("sleepstudy")
    assert not hlm.fit("Reaction Days || Subject:, mle", d, reml=False).reml
    assert hlm.fit("Reaction Days || Subject:", d, reml=False).reml is False
    with pytest.raises(OptionError, match="asks for ML"):
        hlm.fit("Reaction Days || Subject:, mle", d, reml=True)
    with pytest.raises(OptionError, match="asks for REML"):
        hlm.fit("xtmixed Reaction Days || Subject:", d, reml=False)
    with pytest.raises(OptionError, match="asks for ML"):
        hlm.fit("mixed Reaction Days || Subject:", d, reml=True)


def test_command_default_is_said_in_the_summary():
    fit = hlm.fit("mixed Reaction Days || Subject:", dataset("sleepstudy"))
    text = fit.summary(style="stata")
    assert "Mixed-effects ML regression" in text and "mixed estimates by ML" in text


@pytest.mark.parametrize(
    "text,match",
    [
        ("y x || g:, mle reml", "both mle and reml"),
        ("y x, mle || g:, reml", "both mle and reml"),
        ("y x || g:, mle || h:", "after the last level"),
        ("xtreg y x", "hlm.xtreg"),
        ("melogit y x || g:", "GLMM command: fit it with hlm.fit"),
        ("meqrpoisson y x || g:", "not supported yet"),
    ],
)
def test_misplaced_options_and_other_commands_are_refused(text, match):
    with pytest.raises(FormulaError, match=match):
        parse_model(text)


def test_pasted_do_file_line_fits():
    d = dataset("sleepstudy")
    a = hlm.fit("mixed Reaction Days || Subject:", d)
    b = hlm.fit("Reaction Days || Subject:", d, reml=False)
    assert a.loglik == pytest.approx(b.loglik, rel=1e-12)


def test_xtreg_accepts_its_command_word_and_refuses_mixed():
    g = dataset("Grunfeld")
    a = hlm.xtreg("xtreg inv value capital", g, panel="firm", estimator="fe")
    b = hlm.xtreg("inv value capital", g, panel="firm", estimator="fe")
    assert np.allclose(a.params, b.params)
    with pytest.raises(FormulaError, match="hlm.fit"):
        hlm.xtreg("mixed inv value capital", g, panel="firm")


def test_xtreg_year_dummies_have_stata_names():
    g = dataset("Grunfeld")
    res = hlm.xtreg("inv value capital i.year", g, panel="firm", estimator="fe")
    years = sorted(g["year"].unique())
    assert [t for t in res.terms if t.endswith(".year")] == [f"{y}.year" for y in years[1:]]
    assert f"{years[1]}.year" in res.summary()


# ---- cov(identity) and cov(exchangeable) against an independent marginal likelihood ------------
def _deviance(y, X, Z, groups, Sigma, sigma2, reml):
    """-2 log L (ML) or the REML criterion with beta at its GLS value, from dense V_g."""
    p = X.shape[1]
    logdet, XtVX, XtVy, yVy = 0.0, np.zeros((p, p)), np.zeros(p), 0.0
    for g in np.unique(groups):
        m = groups == g
        Zg = Z[m]
        V = sigma2 * np.eye(m.sum()) + Zg @ Sigma @ Zg.T
        Vi = np.linalg.inv(V)
        logdet += np.linalg.slogdet(V)[1]
        XtVX += X[m].T @ Vi @ X[m]
        XtVy += X[m].T @ Vi @ y[m]
        yVy += y[m] @ Vi @ y[m]
    beta = np.linalg.solve(XtVX, XtVy)
    quad = yVy - XtVy @ beta
    n = len(y)
    if reml:
        return logdet + np.linalg.slogdet(XtVX)[1] + quad + (n - p) * LOG2PI
    return logdet + quad + n * LOG2PI


def _identity(u, q):
    return np.exp(2 * u[0]) * np.eye(q), np.exp(2 * u[1])


def _exchangeable(u, q):
    s2, r = np.exp(2 * u[0]), -1 / (q - 1) + (1 + 1 / (q - 1)) / (1 + np.exp(-u[1]))
    return s2 * ((1 - r) * np.eye(q) + r * np.ones((q, q))), np.exp(2 * u[2])


def _independent_optimum(y, X, Z, groups, structure, start, reml):
    q = Z.shape[1]

    def f(u):
        Sigma, s2 = structure(u, q)
        return _deviance(y, X, Z, groups, Sigma, s2, reml)

    best = optimize.minimize(
        f, start, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000, "maxfev": 20000}
    )
    best = optimize.minimize(f, best.x, method="BFGS", options={"gtol": 1e-8})
    return best.fun, structure(best.x, q)


def _sleep_arrays():
    d = dataset("sleepstudy")
    y = d["Reaction"].to_numpy(float)
    X = np.column_stack([np.ones(len(d)), d["Days"]])
    return d, y, X, X.copy(), d["Subject"].to_numpy()


@pytest.mark.parametrize("reml", [False, True])
def test_cov_identity_is_one_shared_variance(reml):
    d, y, X, Z, groups = _sleep_arrays()
    fit = hlm.fit("Reaction Days || Subject: Days, cov(identity)", d, reml=reml)
    dev, (Sigma, s2) = _independent_optimum(y, X, Z, groups, _identity, [np.log(8.0), np.log(27.0)], reml)
    assert -2 * fit.loglik == pytest.approx(dev, rel=1e-8)
    vc = fit.varcorr
    sds = vc.loc[vc["group"] == "Subject", "sdcor"].to_numpy()
    assert sds[0] == pytest.approx(np.sqrt(Sigma[0, 0]), rel=1e-4) and sds[0] == sds[1]
    assert sds[2] == 0.0  # the two effects are independent
    assert fit.sigma == pytest.approx(np.sqrt(s2), rel=1e-4)
    assert fit.structure.ntheta == 1
    # the level's variance at Days = 2 is s^2 (1 + 2^2), with a delta-method interval around it
    icc = fit.icc(at={"Days": 2.0}).set_index("level")
    assert icc.loc["Subject", "variance"] == pytest.approx(5 * Sigma[0, 0], rel=1e-3)
    assert icc.loc["Subject", "variance_low"] < icc.loc["Subject", "variance"] < icc.loc["Subject", "variance_high"]
    # the shared variance is not what independent SDs give: the structure is really imposed
    free = hlm.fit("Reaction Days || Subject: Days, cov(independent)", d, reml=reml)
    assert free.loglik > fit.loglik + 1.0


def test_cov_exchangeable_on_sleepstudy():
    d, y, X, Z, groups = _sleep_arrays()
    fit = hlm.fit("Reaction Days || Subject: Days, cov(exchangeable) mle", d)
    dev, (Sigma, s2) = _independent_optimum(y, X, Z, groups, _exchangeable, [np.log(7.0), 1.0, np.log(28.0)], False)
    assert -2 * fit.loglik == pytest.approx(dev, rel=1e-8)
    vc = fit.varcorr.set_index(["group", "var1", "var2"], drop=False)
    rows = fit.varcorr[fit.varcorr["group"] == "Subject"]
    assert rows["vcov"].iloc[0] == pytest.approx(Sigma[0, 0], rel=1e-3) == rows["vcov"].iloc[1]
    assert rows["vcov"].iloc[2] == pytest.approx(Sigma[0, 1], rel=1e-3)
    assert fit.sigma == pytest.approx(np.sqrt(s2), rel=1e-4)
    assert len(vc) == 4 and fit.structure.ntheta == 2


def test_cov_exchangeable_with_three_effects_and_negative_correlation():
    rng = np.random.default_rng(11)
    G, m, q = 60, 8, 3
    r, s = -0.35, 1.5
    Sigma = s**2 * ((1 - r) * np.eye(q) + r * np.ones((q, q)))
    groups = np.repeat(np.arange(G), m)
    x1, x2 = rng.normal(size=G * m), rng.normal(size=G * m)
    Z = np.column_stack([np.ones(G * m), x1, x2])
    b = rng.multivariate_normal(np.zeros(q), Sigma, size=G)
    y = 1.0 + 0.5 * x1 - 0.3 * x2 + (Z * b[groups]).sum(axis=1) + rng.normal(size=G * m)
    frame = pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": groups})
    fit = hlm.fit("y x1 x2 || g: x1 x2, cov(exchangeable) mle", frame)
    dev, (S, s2) = _independent_optimum(y, Z, Z, groups, _exchangeable, [np.log(1.5), 0.0, 0.0], False)
    assert -2 * fit.loglik == pytest.approx(dev, rel=1e-8)
    cov = fit.varcorr[(fit.varcorr["group"] == "g") & fit.varcorr["var2"].notna()]["vcov"].to_numpy()
    assert np.allclose(cov, S[0, 1], rtol=1e-3) and S[0, 1] < 0
    vc = fit.varcomp()
    assert list(vc["kind"]) == ["sd", "cor", "sigma"]
    assert vc["estimate"].iloc[1] == pytest.approx(S[0, 1] / S[0, 0], rel=1e-3)
    assert vc["std_error"].notna().all()


def test_structured_terms_in_the_stata_table_and_kenward_roger_refused():
    fit = hlm.fit("Reaction Days || Subject: Days, cov(exchangeable)", dataset("sleepstudy"))
    text = fit.summary(style="stata")
    assert "Subject: Exchangeable" in text and "sd(Days _cons)" in text and "corr(Days _cons)" in text
    with pytest.raises(OptionError, match="Kenward-Roger"):
        fit.tidy(ddf="kenward-roger")
    ident = hlm.fit("Reaction Days || Subject: Days, cov(id)", dataset("sleepstudy"))
    assert "Subject: Identity" in ident.summary(style="stata")


@pytest.mark.parametrize(
    "word,kind",
    [
        ("un", "unstructured"),
        ("ind", None),
        ("id", "identity"),
        ("ex", "exchangeable"),
        ("exchangeable", "exchangeable"),
    ],
)
def test_cov_abbreviations(word, kind):
    spec = parse_model(f"y x || g: x z, cov({word})")
    if kind is None:
        assert len(spec.random) == 3
    else:
        assert [t.cov for t in spec.random] == [kind]


# ---- factor variables as Stata expands them ------------------------------------------------------
def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 48
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "z": rng.normal(size=n),
            "a": np.tile([1, 2, 3], 16),
            "b": np.repeat([4, 7], 24),
            "g": np.repeat(np.arange(8), 6),
        }
    )


def _design(model: str, d: pd.DataFrame) -> dict[str, np.ndarray]:
    frame = build_frame(parse_model(model), d)
    return {name: frame.X[:, j] for j, name in enumerate(frame.xnames)}


def _ind(v, level):
    return (v == level).astype(float)


# Stata's documented expansions ([U] 11.4.3 Factor variables), columns written out by hand
EXPANSIONS = {
    "y c.x##c.x || g:": lambda d: {"_cons": 1.0, "x": d.x, "c.x#c.x": d.x**2},
    "y c.x#c.x || g:": lambda d: {"_cons": 1.0, "c.x#c.x": d.x**2},
    "y c.x#c.x#c.x || g:": lambda d: {"_cons": 1.0, "c.x#c.x#c.x": d.x**3},
    "y c.x##c.z || g:": lambda d: {"_cons": 1.0, "x": d.x, "z": d.z, "c.x#c.z": d.x * d.z},
    "y i.a || g:": lambda d: {"_cons": 1.0, "2.a": _ind(d.a, 2), "3.a": _ind(d.a, 3)},
    "y ib2.a || g:": lambda d: {"_cons": 1.0, "1.a": _ind(d.a, 1), "3.a": _ind(d.a, 3)},
    "y ib(first).a || g:": lambda d: {"_cons": 1.0, "2.a": _ind(d.a, 2), "3.a": _ind(d.a, 3)},
    "y ibn.a, noconstant || g:": lambda d: {"1.a": _ind(d.a, 1), "2.a": _ind(d.a, 2), "3.a": _ind(d.a, 3)},
    "y i.a#c.x, noconstant || g:": lambda d: {
        "1.a#c.x": _ind(d.a, 1) * d.x,
        "2.a#c.x": _ind(d.a, 2) * d.x,
        "3.a#c.x": _ind(d.a, 3) * d.x,
    },
    "y i.a#c.x || g:": lambda d: {
        "_cons": 1.0,
        "1.a#c.x": _ind(d.a, 1) * d.x,
        "2.a#c.x": _ind(d.a, 2) * d.x,
        "3.a#c.x": _ind(d.a, 3) * d.x,
    },
    "y i.a##c.x || g:": lambda d: {
        "_cons": 1.0,
        "2.a": _ind(d.a, 2),
        "3.a": _ind(d.a, 3),
        "x": d.x,
        "2.a#c.x": _ind(d.a, 2) * d.x,
        "3.a#c.x": _ind(d.a, 3) * d.x,
    },
    "y i.a##i.b || g:": lambda d: {
        "_cons": 1.0,
        "2.a": _ind(d.a, 2),
        "3.a": _ind(d.a, 3),
        "7.b": _ind(d.b, 7),
        "2.a#7.b": _ind(d.a, 2) * _ind(d.b, 7),
        "3.a#7.b": _ind(d.a, 3) * _ind(d.b, 7),
    },
    "y a##b || g:": lambda d: {
        "_cons": 1.0,
        "2.a": _ind(d.a, 2),
        "3.a": _ind(d.a, 3),
        "7.b": _ind(d.b, 7),
        "2.a#7.b": _ind(d.a, 2) * _ind(d.b, 7),
        "3.a#7.b": _ind(d.a, 3) * _ind(d.b, 7),
    },
    "y i.a i.b i.a#i.b || g:": lambda d: {
        "_cons": 1.0,
        "2.a": _ind(d.a, 2),
        "3.a": _ind(d.a, 3),
        "7.b": _ind(d.b, 7),
        "2.a#7.b": _ind(d.a, 2) * _ind(d.b, 7),
        "3.a#7.b": _ind(d.a, 3) * _ind(d.b, 7),
    },
}


@pytest.mark.parametrize("model", list(EXPANSIONS))
def test_factor_variables_expand_as_stata(model):
    d = _frame()
    got = _design(model, d)
    want = EXPANSIONS[model](d)
    assert set(got) == set(want)
    for name, col in want.items():
        assert np.allclose(got[name], np.broadcast_to(np.asarray(col, dtype=float), len(d))), name


@pytest.mark.parametrize(
    "model,match",
    [
        ("y i.a#i.b || g:", "needs its main effects"),
        ("y i.a, noconstant || g:", "ibn.a"),
        ("y ibn.a || g:", "needs noconstant"),
        ("y ib(last).a || g:", "not supported"),
        ("y i.a#i.a || g:", "itself"),
    ],
)
def test_factor_forms_hlm_cannot_code_as_stata_are_refused(model, match):
    with pytest.raises(FormulaError, match=match):
        parse_model(model)


def test_squared_term_is_fitted_not_dropped():
    d = dataset("sleepstudy")
    fit = hlm.fit("Reaction c.Days##c.Days || Subject:", d)
    assert list(fit.fixef.index) == ["_cons", "Days", "c.Days#c.Days"]
    X = np.column_stack([np.ones(len(d)), d.Days, d.Days**2])
    lme4 = hlm.fit("Reaction ~ Days + I(Days**2) + (1 | Subject)", d)
    assert np.allclose(fit.fixef.to_numpy(), lme4.fixef.to_numpy(), rtol=1e-6)
    assert X.shape[1] == len(fit.fixef)


def test_value_labels_from_a_dta_file_name_the_terms(tmp_path):
    rng = np.random.default_rng(5)
    n = 120
    arm = pd.Categorical(rng.choice(["placebo", "low", "high"], size=n), categories=["placebo", "low", "high"])
    frame = pd.DataFrame({"y": rng.normal(size=n), "arm": arm, "g": np.repeat(np.arange(12), 10)})
    path = tmp_path / "trial.dta"
    frame.to_stata(path, write_index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hlm.fit("y i.arm || g:", pd.read_stata(path))
    assert list(fit.fixef.index) == ["_cons", "arm=low", "arm=high"]
    numeric = frame.assign(arm=frame["arm"].cat.codes + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coded = hlm.fit("y i.arm || g:", numeric)
    assert list(coded.fixef.index) == ["_cons", "2.arm", "3.arm"]
    assert np.allclose(fit.fixef.to_numpy(), coded.fixef.to_numpy())


def test_continuous_column_as_factor_is_refused_as_in_stata():
    d = _frame()
    with pytest.raises(hlm.errors.DataError, match="noninteger"):
        hlm.fit("y i.x || g:", d)
    with pytest.raises(FormulaError, match="main effects"):
        hlm.fit("y x z x#z || g:", d)  # unprefixed variables in # are factors: write c.x#c.z


def test_exchangeable_boundary_is_explained():
    rng = np.random.default_rng(0)
    G, m = 40, 6
    g = np.repeat(np.arange(G), m)
    x = rng.normal(size=G * m)
    u = rng.normal(size=G)  # one effect shared by the intercept and the slope: r = +1
    y = 2.0 * u[g] + 2.0 * u[g] * x + rng.normal(size=G * m)
    frame = pd.DataFrame({"y": y, "x": x, "g": g})
    with pytest.warns(hlm.errors.SingularFitWarning, match=r"estimated at \+1"):
        fit = hlm.fit("y x || g: x, cov(exchangeable)", frame)
    assert fit.singular and fit.varcomp()["estimate"].iloc[1] == pytest.approx(1.0)


@pytest.mark.parametrize("model", ["y ib2.a##c.x || g:", "y ibn.a, noconstant || g:", "y ib3.a c.x#c.x || g: x"])
def test_base_levels_in_the_sql_backend_match_memory(model, tmp_path):
    d = _frame()
    path = tmp_path / "d.parquet"
    d.to_parquet(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mem, sql = hlm.fit(model, d), hlm.fit(model, str(path))
    assert list(sql.fixef.index) == list(mem.fixef.index)
    assert np.allclose(sql.fixef.to_numpy(), mem.fixef.to_numpy(), rtol=1e-8)
    assert sql.loglik == pytest.approx(mem.loglik, rel=1e-10)


def test_command_errors_are_one_line():
    for text in ("xtreg y x", "melogit y x || g:"):
        with pytest.raises(FormulaError) as err:
            parse_model(text)
        assert "\n" not in str(err.value)


def test_exchangeable_lower_limit_is_a_boundary():
    rng = np.random.default_rng(0)
    G, m = 60, 8
    g = np.repeat(np.arange(G), m)
    x = rng.normal(size=G * m)
    u = rng.normal(size=G)  # intercept u, slope -u: correlation -1 = -1/(q-1) for q = 2
    y = 2.0 * u[g] - 2.0 * u[g] * x + rng.normal(size=G * m)
    with pytest.warns(hlm.errors.SingularFitWarning, match="lower limit"):
        fit = hlm.fit("y x || g: x, cov(exchangeable)", pd.DataFrame({"y": y, "x": x, "g": g}))
    assert fit.singular
    vc = fit.varcomp()
    assert vc["estimate"].iloc[1] == pytest.approx(-1.0, abs=1e-6) and np.isnan(vc["std_error"].iloc[1])


def test_exchangeable_correlation_intervals_stay_in_its_range():
    rng = np.random.default_rng(4)
    G, m, q, r = 30, 6, 3, -0.45
    Sigma = (1 - r) * np.eye(q) + r * np.ones((q, q))
    groups = np.repeat(np.arange(G), m)
    x1, x2 = rng.normal(size=G * m), rng.normal(size=G * m)
    Z = np.column_stack([np.ones(G * m), x1, x2])
    y = 1.0 + (Z * rng.multivariate_normal(np.zeros(q), Sigma, size=G)[groups]).sum(axis=1) + rng.normal(size=G * m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": groups})
        fit = hlm.fit("y x1 x2 || g: x1 x2, cov(exchangeable) mle", frame)
    for table in (fit.varcomp(), fit.confint(method="profile")):
        cor = table[table["kind"] == "cor"].iloc[0]
        assert -0.5 <= cor["conf_low"] < cor["estimate"] < cor["conf_high"] <= 1.0


def test_seed_commands_fit_the_demo_models():
    from hlm.cli.demo_script import RIGHT, seed_design
    from hlm.simulate import simulate

    frame = simulate(seed_design(3), seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        demo = hlm.fit(RIGHT, frame)  # what the demo prints: REML, as the seed's xtmixed
        seed = hlm.fit(f"xtmixed {RIGHT}", frame)
        stata13 = hlm.fit(f"mixed {RIGHT}", frame)
        ml = hlm.fit(RIGHT, frame, reml=False)
    assert demo.reml and seed.reml and not stata13.reml
    assert seed.loglik == pytest.approx(demo.loglik, rel=1e-12)
    assert stata13.loglik == pytest.approx(ml.loglik, rel=1e-12)
