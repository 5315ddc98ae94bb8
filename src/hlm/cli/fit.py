"""CLI command: ``hlm fit DATA MODEL [--ml] [--json] [--style stata|lme4] [--plot FILE.png]``."""

from __future__ import annotations

import json
import warnings

import typer

from hlm.cli.app import app, fail


@app.command("fit")
def fit_command(
    data: str = typer.Argument(..., help="Data file: .csv, .parquet or .dta"),
    model: str = typer.Argument(..., help="lme4 formula 'y ~ x + (1|g)' or Stata syntax 'y x || g:'"),
    ml: bool = typer.Option(False, "--ml", help="Maximum likelihood instead of REML"),
    as_json: bool = typer.Option(False, "--json", help="Print the fit as JSON"),
    style: str = typer.Option(None, "--style", help="Summary layout: stata or lme4 (default: the model's syntax)"),
    plot: str = typer.Option(None, "--plot", help="Save a plot to FILE.png (see --plot-kind)"),
    plot_kind: str = typer.Option("caterpillar", "--plot-kind", help="caterpillar (conditional modes) or variance (share per level)"),
) -> None:
    """Fit a linear mixed model and print its summary."""
    from hlm.lmm import fit

    if style is not None and style not in ("stata", "lme4"):
        raise fail(f"--style must be 'stata' or 'lme4', not '{style}'")
    if plot_kind not in ("caterpillar", "variance"):
        raise fail(f"--plot-kind must be 'caterpillar' or 'variance', not '{plot_kind}'")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit(model, data, reml=not ml)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, allow_nan=True))
    else:
        typer.echo(result.summary(style=style or result.spec.syntax))
    if plot:
        result.plot(plot_kind, file=plot)
    for w in caught:
        typer.echo(f"warning: {w.message}", err=True)
