"""CLI commands: diagnose (see hlm.cli.app for error handling)."""

from __future__ import annotations

import json

import typer

from hlm.cli.app import app


@app.command("nesting")
def nesting_command(
    data: str = typer.Argument(..., help="Data file: .csv, .parquet or .dta."),
    variables: list[str] = typer.Argument(..., help="Grouping variables, in any order."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """How grouping variables nest: per pair nested / implicitly nested / crossed / the same,
    groups per level, and the tree order (outermost first) with its Stata and lme4 syntax."""
    from hlm.diagnose import nesting

    report = nesting(data, variables)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        typer.echo(report.summary())
