"""CLI command: ``hlm fit DATA MODEL [--ml] [--json]``."""

from __future__ import annotations

import json
import warnings

import typer

from hlm.cli.app import app


@app.command("fit")
def fit_command(
    data: str = typer.Argument(..., help="Data file: .csv, .parquet or .dta"),
    model: str = typer.Argument(..., help="lme4 formula 'y ~ x + (1|g)' or Stata syntax 'y x || g:'"),
    ml: bool = typer.Option(False, "--ml", help="Maximum likelihood instead of REML"),
    as_json: bool = typer.Option(False, "--json", help="Print the fit as JSON"),
) -> None:
    """Fit a linear mixed model and print its summary."""
    from hlm.lmm import fit

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit(model, data, reml=not ml)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, allow_nan=True))
    else:
        typer.echo(result.summary())
    for w in caught:
        typer.echo(f"warning: {w.message}", err=True)
