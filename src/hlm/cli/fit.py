"""CLI command: ``hlm fit DATA MODEL [--ml] [--json] [--style stata|lme4] [--plot FILE.png]
[--plot-kind caterpillar|variance|profile] [--reorder] [--weights COLUMN]
[--pweights W1,W2 [--cond-weights] [--pwscale size]] [--force]
[--family binomial|poisson|negative_binomial] [--link LINK] [--nagq K] [--or | --irr]``.

Nothing is printed or written until the fit (and the plot) succeeded; warnings (reordered
levels, implicitly nested ids, boundary fits) follow the output as ``warning: ...`` lines."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Literal, cast

import typer

from hlm.cli.app import app, fail
from hlm.errors import OptionError
from hlm.models import FittedModel
from hlm.outputs import force_spelling, output_file

PLOT_KINDS = ("caterpillar", "variance", "profile")  # hlm.report.plots.PLOT_KINDS (not imported: matplotlib)
PLOT_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg", ".jpg": "jpeg", ".jpeg": "jpeg"}


def _plot_target(plot: str, force: bool) -> Path:
    """Check ``--plot FILE`` before fitting: a known image type, a writable folder, and an
    existing file only with ``--force``."""
    if Path(plot).suffix.lower() not in PLOT_FORMATS:
        raise OptionError(
            f"--plot {plot}: unsupported image type '{Path(plot).suffix or '(none)'}'; use {', '.join(PLOT_FORMATS)}"
        )
    return output_file(plot, PLOT_FORMATS, overwrite=force)[0]


NAGQ_HELP = "GLMM: 1 Laplace (default); >1 adaptive Gauss-Hermite points (a (1|g) term or nested intercepts); 0 nAGQ=0"


@app.command("fit")
def fit_command(
    data: str = typer.Argument(..., help="Data file: .csv, .parquet or .dta"),
    model: str = typer.Argument(..., help="lme4 formula 'y ~ x + (1|g)' or Stata syntax 'y x || g:'"),
    ml: bool = typer.Option(
        False,
        "--ml",
        help="Maximum likelihood instead of REML (default: the model's ', mle'/', reml' or command, else REML)",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the fit as JSON"),
    style: str = typer.Option(None, "--style", help="Summary layout: stata or lme4 (default: the model's syntax)"),
    plot: str = typer.Option(None, "--plot", help="Save a plot to FILE.png (see --plot-kind)"),
    plot_kind: str = typer.Option(
        "caterpillar",
        "--plot-kind",
        help="caterpillar (conditional modes), variance (share per level) or profile (profile zeta per parameter)",
    ),
    reorder: bool = typer.Option(
        False, "--reorder", help="Fit nested levels listed inner to outer in the corrected order (else an error)"
    ),
    weights: str = typer.Option(
        None,
        "--weights",
        help="Column of PRECISION weights, as lme4's weights= (row variance sigma^2/w); not sampling/survey weights",
    ),
    pweights: str = typer.Option(
        None,
        "--pweights",
        help="SAMPLING weight columns, one per level, observations first (w_student,w_school): pseudo-ML, robust SEs",
    ),
    cond_weights: bool = typer.Option(
        False, "--cond-weights", help="The --pweights columns below the top are conditional (as Stata's)"
    ),
    pwscale: str = typer.Option(
        None, "--pwscale", help="Stata's pwscale of the level-1 weights: size, effective or gk"
    ),
    force: bool = typer.Option(False, "--force", help="Replace the --plot file if it exists (else an error)"),
    family: str = typer.Option(
        "gaussian", "--family", help="gaussian (linear), binomial, poisson or negative_binomial (a GLMM, by ML)"
    ),
    link: str = typer.Option(None, "--link", help="GLMM link: logit, probit, cloglog (binomial) or log"),
    nagq: int | None = typer.Option(None, "--nagq", help=NAGQ_HELP),
    odds_ratios: bool = typer.Option(False, "--or", help="GLMM (logit): odds ratios in Stata's table (as Stata's or)"),
    irr: bool = typer.Option(False, "--irr", help="GLMM (Poisson, nbinom): incidence-rate ratios in Stata's table"),
) -> None:
    """Fit a linear (or, with --family, a generalized linear) mixed model and print its summary."""
    from hlm.glmm.stata import command_of
    from hlm.lmm.checks import option_spelling

    if style is not None and style not in ("stata", "lme4"):
        raise fail(f"--style must be 'stata' or 'lme4', not '{style}'")
    if plot_kind not in PLOT_KINDS:
        raise fail(f"--plot-kind must be one of {', '.join(PLOT_KINDS)}, not '{plot_kind}'")
    with force_spelling("--force"):
        target = _plot_target(plot, force) if plot else None
    with warnings.catch_warnings(record=True) as caught, option_spelling("--reorder"), force_spelling("--force"):
        warnings.simplefilter("always")
        glmm = family != "gaussian" or link is not None or nagq is not None or command_of(model) is not None
        if glmm and (reorder or ml):
            raise OptionError("--reorder and --ml are for linear models; a GLMM is fitted by ML")
        if glmm and plot and plot_kind != "caterpillar":
            raise OptionError(f"--plot-kind {plot_kind} is for linear models; a GLMM has the caterpillar plot")
        if (odds_ratios or irr) and not glmm:
            raise OptionError("--or and --irr are for GLMMs (melogit / mepoisson / menbreg or --family)")
        if pweights is not None and plot:
            raise fail("--plot is not available with --pweights")
        result = _fit(model, data, ml, reorder, weights, pweights, cond_weights, pwscale, glmm, family, link, nagq)
        text = _render(result, as_json, style, odds_ratios, irr)
        if target is not None:
            from hlm.api import Fit
            from hlm.glmm.result import GlmmResult
            from hlm.outputs import save_figure

            assert isinstance(result, (Fit, GlmmResult))  # --plot is refused with --pweights above
            kind = cast(Literal["caterpillar", "variance", "profile"], plot_kind)
            save_figure(result.plot(kind), target, overwrite=force)
    typer.echo(text)
    for w in caught:
        typer.echo(f"warning: {w.message}", err=True)


def _render(result: FittedModel, as_json: bool, style: str | None, odds_ratios: bool, irr: bool) -> str:
    """The JSON or the summary (Stata's layout with --or / --irr unless --style says otherwise)."""
    if as_json:
        return json.dumps(result.to_dict(), indent=2, allow_nan=True)
    layout = cast(Literal["lme4", "stata"], style or ("stata" if odds_ratios or irr else result.spec.syntax))
    if odds_ratios or irr:
        from hlm.glmm.result import GlmmResult

        assert isinstance(result, GlmmResult)  # --or / --irr are refused for linear models
        return result.summary(style=layout, odds_ratios=odds_ratios, irr=irr)
    return result.summary(style=layout)


def _fit(
    model: str,
    data: str,
    ml: bool,
    reorder: bool,
    weights: str | None,
    pweights: str | None,
    cond_weights: bool,
    pwscale: str | None,
    glmm: bool,
    family: str,
    link: str | None,
    nagq: int | None,
) -> FittedModel:
    """The fit the options ask for: pseudo-ML with --pweights, a GLMM, or a linear mixed model."""
    from hlm.api import fit

    if pweights is not None:
        scale: Any = pwscale  # checked by hlm.survey.weights
        if glmm:  # the weighted logit
            return fit(
                model,
                data,
                family=family,
                link=link,
                nagq=nagq,
                pweights=pweights.split(","),
                cond_weights=cond_weights,
                pwscale=scale,
            )
        reml = False if ml else None
        return fit(
            model,
            data,
            reml=reml,
            weights=weights,
            pweights=pweights.split(","),
            cond_weights=cond_weights,
            pwscale=scale,
        )
    if glmm:
        return fit(model, data, family=family, link=link, nagq=nagq, weights=weights)
    return fit(model, data, reml=False if ml else None, reorder=reorder, weights=weights)
