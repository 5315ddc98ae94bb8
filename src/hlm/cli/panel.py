"""CLI commands: ``hlm xtreg`` and ``hlm hausman`` (see hlm.cli.app for error handling).
Without an estimator option ``hlm xtreg`` fits random effects, as Stata's ``xtreg`` does.

``hlm xtreg DATA MODEL -i PANELVAR [--re|--fe|--be|--pooled] [--sa] [--vce robust|cluster VAR] [--json]``
``hlm hausman DATA MODEL -i PANELVAR [--sigmamore] [--json]``
"""

from __future__ import annotations

import json
import warnings
from typing import TYPE_CHECKING

import typer

from hlm.cli.app import app
from hlm.errors import HLMWarning, OptionError

if TYPE_CHECKING:
    from hlm.panel.model import VCE, Estimator


def _estimator(fe: bool, re: bool, be: bool, pooled: bool) -> Estimator:
    options: tuple[tuple[Estimator, bool], ...] = (
        ("fe", fe),
        ("re", re),
        ("be", be),
        ("pooled", pooled),
    )
    chosen = [name for name, on in options if on]
    if len(chosen) > 1:
        raise OptionError(f"choose one estimator, not {' and '.join('--' + c for c in chosen)}")
    return chosen[0] if chosen else "re"  # Stata's xtreg without an estimator option


def _vce(vce: list[str] | None) -> tuple[VCE, str | None]:
    if not vce:
        return "conventional", None
    kind = vce[0].lower()
    if kind in ("conventional", "ols"):
        return "conventional", None
    if kind == "robust":
        if len(vce) > 1:
            raise OptionError("--vce robust takes no variable; use --vce cluster VAR")
        return "robust", None
    if kind in ("cluster", "cl"):
        if len(vce) != 2:
            raise OptionError("--vce cluster needs a variable: --vce cluster VAR")
        return "cluster", vce[1]
    raise OptionError(f"unknown --vce '{vce[0]}'; use robust or cluster VAR")


@app.command("xtreg", context_settings={"allow_extra_args": True, "ignore_unknown_options": False})
def xtreg_command(
    ctx: typer.Context,
    data: str = typer.Argument(..., help="Data file (.csv, .parquet, .dta)."),
    model: str = typer.Argument(..., help="'y x1 x2' (Stata) or 'y ~ x1 + x2' (formula)."),
    panel: str = typer.Option(..., "-i", "--panel", help="Panel variable (Stata's i())."),
    fe: bool = typer.Option(False, "--fe", help="Fixed effects (within)."),
    re: bool = typer.Option(False, "--re", help="Random effects (GLS, Swamy-Arora), the default as in Stata."),
    be: bool = typer.Option(False, "--be", help="Between effects."),
    pooled: bool = typer.Option(False, "--pooled", help="Pooled OLS."),
    sa: bool = typer.Option(False, "--sa", help="Baltagi-Chang variance components (random effects only)."),
    vce: str | None = typer.Option(None, "--vce", help="robust, or cluster (followed by VAR)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of the table."),
) -> None:
    """Linear panel regression with Stata xtreg's numbers."""
    from hlm.panel import xtreg

    if ctx.args and not vce:
        raise OptionError(f"unexpected argument {' '.join(ctx.args)!r}; quote the model: 'y x1 x2'")
    vce_kind, cluster = _vce((vce.split() if vce else []) + list(ctx.args))
    estimator = _estimator(fe, re, be, pooled)
    if sa and estimator != "re":
        raise OptionError("--sa (Baltagi-Chang variance components) applies to --re only")
    if estimator == "be" and vce_kind != "conventional":
        raise OptionError("--be has no robust or cluster-robust standard errors (as in Stata); drop --vce")
    fit = xtreg(
        model,
        data,
        panel=panel,
        estimator=estimator,
        vce=vce_kind,
        cluster=cluster,
        sa=sa,
    )
    typer.echo(json.dumps(fit.to_dict(), indent=2) if as_json else fit.summary())


@app.command("hausman")
def hausman_command(
    data: str = typer.Argument(..., help="Data file (.csv, .parquet, .dta)."),
    model: str = typer.Argument(..., help="'y x1 x2' (Stata) or 'y ~ x1 + x2' (formula)."),
    panel: str = typer.Option(..., "-i", "--panel", help="Panel variable."),
    sa: bool = typer.Option(False, "--sa", help="Random effects with Baltagi-Chang components."),
    sigmamore: bool = typer.Option(False, "--sigmamore", help="Use the efficient fit's disturbance variance."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of the table."),
) -> None:
    """Hausman test of fixed against random effects (xtreg fe vs xtreg re)."""
    from hlm.panel import hausman, xtreg

    fe_fit = xtreg(model, data, panel=panel, estimator="fe")
    re_fit = xtreg(model, data, panel=panel, estimator="re", sa=sa)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HLMWarning)  # the note is printed with the result
        result = hausman(fe_fit, re_fit, sigmamore=sigmamore)
    typer.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.summary())
