"""The models of a study: parse their strings, fit one to a simulated frame, collect the
estimates of every parameter that has a true value (see :mod:`hlm.study.truth`).

Model strings:

- a mixed model in lme4 or Stata syntax, ``"perform ~ tutoring + (1|dist_id/school_id)"``,
  ``"perform tutoring || dist_id: || school_id:"`` -> :func:`hlm.fit` (REML by default);
- ``"xtreg fe PANEL"``, ``"xtreg re PANEL"`` (also ``be``, ``pooled``) -> :func:`hlm.xtreg` of
  the design's response on its covariates; ``"xtreg re PANEL: perform ~ tutoring"`` names
  the regression itself;
- ``"ols"`` (the response on the covariates) or a model without random terms
  (``"perform ~ tutoring"``, ``"perform tutoring"``) -> pooled OLS via :func:`hlm.xtreg`;
- ``"pweights(w_row, w_cluster): y ~ x + (1 | school_id)"`` (or Stata's ``[pw=...] ...
  pweight(...)``) -> pseudo-ML with those sampling weights (:mod:`hlm.survey`): the same
  model with and without the prefix compares the weighted and unweighted estimators on a
  design with ``sampling`` (:mod:`hlm.simulate.sampling`).  Their SEs are the cluster-robust ones.
- for a design with a binomial or Poisson outcome (:class:`hlm.simulate.Outcome`): a GLMM, in
  lme4 syntax (``"pass ~ tutoring + (1|school_id)"``) or as a Stata command (``"melogit pass
  tutoring || school_id:"``) -> :func:`hlm.fit` with the outcome's family and link (the study's
  ``family``/``link`` may name them; any other family or link is refused: the design's true values
  are on its own link scale).  Fixed effects and SDs are compared on the link scale (a threshold
  outcome's: the design's divided by residual_sd; see :mod:`hlm.study.truth` for models that omit
  inner levels); SDs have Wald limits on the log scale from the
  fit's Hessian where every random term is a scalar intercept.

Parameter names follow the design, so that models can be compared: fixed effects by the
design's names (``intercept``, ``tutoring``), ``sd[school]`` / ``sd[teacher:tutoring]`` /
``cor[teacher:(Intercept),tutoring]`` for a level's random effects, ``sd[residual]``, and
``icc[school]``; the model's own label is kept in ``term`` (``(Intercept)``, ``sigma_u``).
"""

from __future__ import annotations

import math
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from hlm import api
from hlm.errors import FormulaError, HLMError, OptionError
from hlm.glmm.result import GlmmResult
from hlm.glmm.stata import command_of, read_command
from hlm.lmm.result import LmmResult, term_covariances
from hlm.simulate.design import INTERCEPT, Design
from hlm.spec import parse_model
from hlm.study.truth import INTERCEPT_COLUMN, Truth
from hlm.survey.result import PseudoFit
from hlm.survey.stata import stata_weights
from hlm.variance_share import icc_table, varcomp_table

if TYPE_CHECKING:
    from hlm.panel.results import PanelFit

Kind = Literal["mixed", "xtreg", "ols", "glmm"]
_XTREG = re.compile(r"^\s*xtreg\s+(fe|re|be|pooled)\s+([A-Za-z_][A-Za-z0-9_]*)\s*(?::\s*(.+))?$", re.S)
_OLS = re.compile(r"^\s*ols\s*(?::\s*(.+))?$", re.S)
_PWEIGHTS = re.compile(r"^\s*pweights\(\s*([^)]*)\)\s*:\s*(.+)$", re.S)

BOUNDARY_SD = 1e-4  # a GLMM SD below this is on the boundary (lme4's singular tolerance on theta)

# One parameter estimate: name, kind, model's label, truth, estimate, se, low, high.
ParamRow = tuple[str, str, str, float, float, float, float, float]


@dataclass(frozen=True)
class StudyModel:
    """One model of a study, resolved against a design."""

    label: str  # the string as given
    kind: Kind
    model: str  # what hlm.fit / hlm.xtreg receives
    estimator: str | None = None  # xtreg's
    panel: str | None = None  # xtreg's panel variable
    pweights: tuple[str, ...] | None = None  # sampling weights: pseudo-ML (() when the Stata string names them)
    family: str | None = None  # a GLMM's
    link: str | None = None

    @classmethod
    def parse(cls, text: str, design: Design, *, family: str | None = None, link: str | None = None) -> StudyModel:
        """The model ``text`` against ``design``; ``family``/``link`` (GLMMs) must be the outcome's."""
        if not isinstance(text, str) or not text.strip():
            raise FormulaError(f"a study model must be a non-empty string, got {text!r}")
        outcome = design.outcome
        if (family, link) != (None, None) and (family or outcome.family, link or outcome.link) != (
            outcome.family,
            outcome.link,
        ):
            raise OptionError(
                f"the design's outcome is {outcome.family} ({outcome.link}); the study's family/link must be "
                "the same (its true values are on that link scale)"
            )
        if command_of(text) is not None or outcome.family != "gaussian":
            return cls._glmm(text, design)
        default = _default_regression(design)
        m = _XTREG.match(text)
        weighted = _PWEIGHTS.match(text)
        if weighted:
            columns = tuple(c.strip() for c in weighted.group(1).split(",") if c.strip())
            out = cls(text, "mixed", weighted.group(2).strip(), pweights=columns)
        elif stata_weights(text) is not None:
            out = cls(text, "mixed", text, pweights=())
        elif m:
            est, panel, formula = m.group(1), m.group(2), m.group(3)
            out = cls(text, "xtreg", (formula or default).strip(), est, panel)
        elif text.strip().startswith("xtreg"):
            raise FormulaError(
                f"cannot read '{text}': write 'xtreg fe PANEL' or 'xtreg re PANEL' "
                "(optionally ': y ~ x'), e.g. 'xtreg fe student_id'"
            )
        elif _OLS.match(text):
            formula = _OLS.match(text).group(1)  # type: ignore[union-attr]
            out = cls(text, "ols", (formula or default).strip(), "pooled", design.levels[-1].id)
        else:
            spec = parse_model(text)
            if spec.random:
                out = cls(text, "mixed", text)
            else:
                out = cls(text, "ols", text, "pooled", design.levels[-1].id)
        out.check_columns(design)
        return out

    @classmethod
    def _glmm(cls, text: str, design: Design) -> StudyModel:
        outcome = design.outcome
        if outcome.family == "gaussian":
            raise OptionError(
                f"model '{text}' is a GLMM but the design's outcome is Gaussian; give the design an "
                "[outcome] family (e.g. family = 'binomial', link = 'logit')"
            )
        if command_of(text) is not None:
            read = read_command(text)
            if (read.family, read.link) != (outcome.family, outcome.link):
                raise OptionError(
                    f"model '{text}' fits {read.family} ({read.link}) but the design's outcome is "
                    f"{outcome.family} ({outcome.link}); its true values are on that link scale"
                )
            model = read.model
        elif _XTREG.match(text) or _OLS.match(text) or not parse_model(text).random:
            raise OptionError(
                f"model '{text}': the design's outcome is {outcome.family}; a study fits GLMMs to it "
                "(a model with random terms, lme4 or Stata syntax)"
            )
        else:
            model = text
        out = cls(text, "glmm", model, family=outcome.family, link=outcome.link)
        out.check_columns(design)
        return out

    def check_columns(self, design: Design) -> None:
        """Raise a FormulaError when the model uses a column the design does not simulate."""
        from hlm.modelframe import used_columns

        spec = parse_model(self.model)
        have = design_columns(design)
        declared = stata_weights(self.model)
        if declared is not None:
            spec = parse_model(declared.model)
        weights = list(self.pweights or ()) + (declared.pweights if declared is not None else [])
        need = used_columns(spec) + ([self.panel] if self.panel else []) + weights
        missing = [c for c in need if c not in have]
        if missing:
            raise FormulaError(
                f"model '{self.label}' uses {', '.join(repr(c) for c in missing)}, which the design "
                f"does not simulate; its columns are {', '.join(have)}"
            )


def design_columns(design: Design) -> list[str]:
    """The columns :func:`hlm.simulate.simulate` writes (global ids)."""
    cols = [str(lv.id) for lv in design.levels]
    if design.observations.name:
        cols.append(design.observations.name)
    weights = list(design.sampling.columns) if design.sampling is not None else []
    return cols + [c.name for c in design.covariates] + [design.response] + weights


def _default_regression(design: Design) -> str:
    """``response ~ covariates`` (and any other variable with a fixed effect)."""
    xs = [c.name for c in design.covariates]
    xs += [k for k in design.fixed if k != INTERCEPT and k not in xs]
    return f"{design.response} ~ {' + '.join(xs) if xs else '1'}"


@dataclass(frozen=True)
class FitOutcome:
    """What one fit of one model to one replicate gave."""

    converged: bool
    singular: bool
    seconds: float  # the fit itself
    seconds_ci: float  # SEs and CIs of the variance components and ICCs
    error: str | None
    rows: list[ParamRow]


def fit_model(
    model: StudyModel,
    frame: pd.DataFrame,
    truth: Truth,
    *,
    reml: bool | None = None,
    intervals: bool = True,
    level: float = 0.95,
) -> FitOutcome:
    """Fit ``model`` to ``frame``; estimates, SEs and CIs of every parameter with a truth.

    Errors of the fit are returned (``error``), not raised, so that a study goes on.
    """
    z = float(stats.norm.ppf(0.5 + level / 2))
    t0 = time.perf_counter()
    mixed: api.Fit | None = None
    glmm: GlmmResult | None = None
    panel: PanelFit | None = None
    pseudo: PseudoFit | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if model.pweights is not None:
                pseudo = _fit_weighted(model, frame)
            elif model.kind == "glmm":
                fitted = api.fit(model.label, frame, family=str(model.family), link=model.link)
                assert isinstance(fitted, GlmmResult)  # a family other than gaussian
                glmm = fitted
            elif model.kind == "mixed":
                mixed = api.fit(model.model, frame, reml=reml)
            else:
                from hlm.panel import xtreg

                panel = xtreg(model.model, frame, panel=model.panel, estimator=model.estimator)  # type: ignore[arg-type]
    except (HLMError, ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
        return FitOutcome(False, False, time.perf_counter() - t0, 0.0, _one_line(exc), [])
    seconds = time.perf_counter() - t0
    if pseudo is not None:
        converged = not pseudo.optimizer.startswith("failure")
        return FitOutcome(converged, False, seconds, 0.0, None, _pseudo_rows(pseudo, truth, z))
    if glmm is not None:
        t1 = time.perf_counter()
        rows = glmm_rows(glmm, truth, z=z, intervals=intervals)
        return FitOutcome(bool(glmm.converged), bool(glmm.singular), seconds, time.perf_counter() - t1, None, rows)
    if mixed is not None:
        t1 = time.perf_counter()
        rows, err = _mixed_rows(mixed, truth, intervals=intervals, level=level, z=z)
        return FitOutcome(bool(mixed.converged), bool(mixed.singular), seconds, time.perf_counter() - t1, err, rows)
    assert panel is not None  # model.kind is "mixed" or a panel estimator
    return FitOutcome(True, False, seconds, 0.0, None, _panel_rows(model, panel, truth, z))


def _fit_weighted(model: StudyModel, frame: pd.DataFrame) -> PseudoFit:
    if model.pweights:
        return api.fit(model.model, frame, pweights=list(model.pweights))
    fit = api.fit(model.model, frame)  # a Stata string that declares its weights
    assert isinstance(fit, PseudoFit)
    return fit


def _pseudo_rows(fit: PseudoFit, truth: Truth, z: float) -> list[ParamRow]:
    """Fixed effects with their cluster-robust SEs; SDs and the residual SD as estimates only."""
    rows = _fixed_rows(fit.xnames, fit.beta, fit.se.to_numpy(), truth, z)
    index = {name: truth.level_index(name) for name in fit.ngroups}
    modelled = [i for i in index.values() if i is not None]
    nan = float("nan")
    for r in fit.varcorr.itertuples(index=False):
        if r.group == "Residual":
            rows.append(("sd[residual]", "residual", "sigma", truth.residual_sd(modelled), fit.sigma, nan, nan, nan))
        elif _missing(r.var2) and index.get(str(r.group)) is not None:
            li = index[str(r.group)]
            lname = truth.level_name(li)  # type: ignore[arg-type]
            name = f"sd[{lname}]" if r.var1 == INTERCEPT_COLUMN else f"sd[{lname}:{r.var1}]"
            sd = math.sqrt(max(_num(r.vcov), 0.0))
            rows.append((name, "sd", f"sd({r.var1}|{r.group})", truth.sd(modelled, li, str(r.var1)), sd, nan, nan, nan))  # type: ignore[arg-type]
    return _ordered(rows, truth)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _fixed_rows(terms: Sequence[str], est: np.ndarray, se: np.ndarray, truth: Truth, z: float) -> list[ParamRow]:
    rows = []
    for term, e, s in zip(terms, est, se):
        t = truth.fixed_truth(term)
        if t is None:
            continue
        name = INTERCEPT if term in ("(Intercept)", "_cons") else term
        rows.append((name, "fixed", term, t, float(e), float(s), float(e - z * s), float(e + z * s)))
    return rows


def _intervals(
    fit: LmmResult, level: float
) -> tuple[dict[tuple, tuple[float, float, float]], dict[str, tuple[float, float]], str | None]:
    """Wald SEs and limits of the variance components and the ICCs' limits, keyed as the
    rows are; empty with the reason when they cannot be computed."""
    ci: dict[tuple, tuple[float, float, float]] = {}
    icc_ci: dict[str, tuple[float, float]] = {}
    try:
        vc = fit.varcomp_info
        for r in varcomp_table(fit, vc, level=level).itertuples(index=False):
            key = (r.level, None if _missing(r.var1) else r.var1, None if _missing(r.var2) else r.var2)
            ci[key] = (_num(r.std_error), _num(r.conf_low), _num(r.conf_high))
        if fit.aggregates.chain is not None:
            for r in icc_table(fit, vc=vc, level=level).itertuples(index=False):
                icc_ci[str(r.level)] = (_num(r.icc_low), _num(r.icc_high))
    except (HLMError, ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
        return {}, {}, f"intervals: {_one_line(exc)}"
    return ci, icc_ci, None


def _mixed_rows(
    fit: LmmResult, truth: Truth, *, intervals: bool, level: float, z: float
) -> tuple[list[ParamRow], str | None]:
    """Rows of a mixed-model fit.  Estimates come straight from the fit's arrays (pandas
    frames cost more than the rest of the extraction); intervals from
    :attr:`hlm.lmm.result.LmmResult.varcomp_info` (one numerical Hessian shared by the SDs and
    the ICCs)."""
    prof = fit.profiled
    beta = np.asarray(prof.beta, dtype=float)
    se = np.sqrt(np.diag(prof.sigma2 * np.asarray(prof.qxx_inv)))
    rows = _fixed_rows(fit.aggregates.xnames, beta, se, truth, z)
    factor_names = [f.name for f in fit.aggregates.factors]
    index = {name: truth.level_index(name) for name in factor_names}
    modelled = [i for i in index.values() if i is not None]
    sigma = math.sqrt(prof.sigma2)
    nan = float("nan")

    comps: list[tuple[str, str | None, str | None, float]] = []  # factor, var1, var2, sd or cor
    intercept_var = dict.fromkeys(factor_names, 0.0)
    for term, cov in zip(fit.structure.terms, term_covariances(fit.structure, fit.theta, sigma)):
        fname = factor_names[term.factor]
        sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        for i, col in enumerate(term.columns):
            comps.append((fname, col, None, float(sd[i])))
            if col == INTERCEPT_COLUMN:
                intercept_var[fname] += float(cov[i, i])
        for i in range(len(term.columns)):
            for j in range(i + 1, len(term.columns)):
                r = float(cov[i, j] / (sd[i] * sd[j])) if sd[i] > 0 and sd[j] > 0 else nan
                comps.append((fname, term.columns[i], term.columns[j], r))
    comps.append(("Residual", None, None, sigma))

    ci, icc_ci, err = _intervals(fit, level) if intervals else ({}, {}, None)

    for fname, v1, v2, est in comps:
        s, lo, hi = ci.get((fname, v1, v2), (nan, nan, nan))
        if fname == "Residual":
            rows.append(("sd[residual]", "residual", "sigma", truth.residual_sd(modelled), est, s, lo, hi))
            continue
        li = index.get(fname)
        if li is None:
            continue
        lname = truth.level_name(li)
        if v2 is None:
            name = f"sd[{lname}]" if v1 == INTERCEPT_COLUMN else f"sd[{lname}:{v1}]"
            rows.append((name, "sd", f"sd({v1}|{fname})", truth.sd(modelled, li, str(v1)), est, s, lo, hi))
        else:
            rows.append(
                (
                    f"cor[{lname}:{v1},{v2}]",
                    "cor",
                    f"cor({v1},{v2}|{fname})",
                    truth.cor(modelled, li, str(v1), v2),
                    est,
                    s,
                    lo,
                    hi,
                )
            )

    chain = fit.aggregates.chain  # nested factors, innermost first: ICCs are defined
    if chain is not None:
        names = [factor_names[f] for f in chain]
        total = sum(intercept_var.values()) + prof.sigma2
        for k, fname in enumerate(names):
            li = index.get(fname)
            if li is None or total <= 0:
                continue
            est = sum(intercept_var[n] for n in names[k:]) / total
            lo, hi = icc_ci.get(fname, (nan, nan))
            rows.append(
                (f"icc[{truth.level_name(li)}]", "icc", f"icc({fname})", truth.icc(modelled, li), est, nan, lo, hi)
            )
    return _ordered(rows, truth), err


def glmm_rows(fit: GlmmResult, truth: Truth, *, z: float, intervals: bool) -> list[ParamRow]:
    """Rows of a GLMM fit on the link scale: fixed effects with Wald limits; the SDs of random
    intercepts and slopes (with log-scale Wald limits from the Hessian of -2 loglik over (theta,
    beta) when every random term is a scalar, where theta is the SD, none at the boundary); the latent-scale ICCs of
    nested binary models, level variances over their sum plus the latent residual's (pi^2/3 for
    logit, 1 for probit, pi^2/6 for cloglog)."""
    vc = fit.varcorr
    nan = float("nan")
    index = {g: truth.level_index(g) for g in vc["group"]}
    modelled = [i for i in index.values() if i is not None]
    scale = truth.glmm_scale(modelled)
    fixed = _fixed_rows(list(fit.fixef.index), fit.fixef.to_numpy(), fit.se.to_numpy(), truth, z)
    rows = [(r[0], r[1], r[2], r[3] * scale, *r[4:]) for r in fixed]
    scalar = bool(len(vc) == vc["group"].nunique() and (vc["var1"] == INTERCEPT_COLUMN).all())
    se_sd = np.full(len(vc), nan)
    if intervals and scalar:
        k = len(vc)
        with np.errstate(all="ignore"):
            try:
                se_sd = np.sqrt(np.diag(2.0 * np.linalg.inv(fit.hessian)[:k, :k]))
            except np.linalg.LinAlgError:
                pass  # a singular Hessian: no limits
    intercept_var: dict[int, float] = {}
    columns = zip(vc["group"], vc["var1"], vc["var2"], vc["vcov"].to_numpy(float), vc["sdcor"].to_numpy(float))
    for j, (group, var1, var2, var, est) in enumerate(columns):
        li = index[group]
        if li is None or not _missing(var2):
            continue  # correlations of GLMM terms are not compared
        lname, s = truth.level_name(li), float(se_sd[j])
        lo, hi = nan, nan
        if est >= BOUNDARY_SD and s > 0:  # none at the boundary, where the log scale has no Wald interval
            with np.errstate(over="ignore"):
                lo, hi = float(est * np.exp(-z * s / est)), float(est * np.exp(z * s / est))
        name = f"sd[{lname}]" if var1 == INTERCEPT_COLUMN else f"sd[{lname}:{var1}]"
        sd_truth = truth.sd(modelled, li, str(var1)) * scale
        rows.append((name, "sd", f"sd({var1}|{group})", sd_truth, float(est), s, lo, hi))
        if var1 == INTERCEPT_COLUMN:
            intercept_var[li] = intercept_var.get(li, 0.0) + float(var)
    total = sum(intercept_var.values()) + truth.residual_var
    if scalar and math.isfinite(truth.residual_var) and math.isfinite(scale):
        for li in sorted(intercept_var):
            est = sum(v for m, v in intercept_var.items() if m <= li) / total
            name = truth.level_name(li)
            rows.append((f"icc[{name}]", "icc", f"icc({name})", truth.icc(modelled, li), est, nan, nan, nan))
    return _ordered(rows, truth)


_KIND_ORDER = {"fixed": 0, "sd": 1, "cor": 2, "residual": 3, "icc": 4}


def _ordered(rows: list[ParamRow], truth: Truth) -> list[ParamRow]:
    """Fixed effects (model order), then SDs, correlations, residual, ICCs, levels outermost first."""
    names = [lv.name for lv in truth.levels]

    def level_of(name: str) -> int:
        inner = name[name.find("[") + 1 :].split(":")[0].rstrip("]")
        return names.index(inner) if inner in names else len(names)

    return [
        r
        for _, r in sorted(
            enumerate(rows),
            key=lambda kr: (_KIND_ORDER[kr[1][1]], 0 if kr[1][1] == "fixed" else level_of(kr[1][0]), kr[0]),
        )
    ]


def _panel_rows(model: StudyModel, fit: PanelFit, truth: Truth, z: float) -> list[ParamRow]:
    tidy = fit.tidy()
    rows = _fixed_rows(tidy["term"].tolist(), tidy["estimate"].to_numpy(), tidy["std_error"].to_numpy(), truth, z)
    nan = float("nan")
    d = fit.to_dict()
    if model.estimator == "pooled":
        if d.get("sigma") is not None:
            rows.append(("sd[residual]", "residual", "sigma", truth.residual_sd([]), float(d["sigma"]), nan, nan, nan))
        return rows
    li = truth.level_index(model.panel)
    if li is None:
        return rows
    lname = truth.level_name(li)
    for key, name, kind, value in (
        ("sigma_u", f"sd[{lname}]", "sd", truth.sd([li], li)),
        ("sigma_e", "sd[residual]", "residual", truth.residual_sd([li])),
        ("rho", f"icc[{lname}]", "icc", truth.icc([li], li)),
    ):
        if d.get(key) is not None and math.isfinite(float(d[key])):
            rows.append((name, kind, key, value, float(d[key]), nan, nan, nan))
    return rows


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _num(x: Any) -> float:
    return float("nan") if _missing(x) else float(x)
