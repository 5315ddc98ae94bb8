"""CLI command: ``hlm demo`` replays the seed's exploration (see hlm.cli.demo_script)."""

from __future__ import annotations

import typer

from hlm.cli.app import app


@app.command("demo")
def demo_command(
    districts: int = typer.Option(50, "--districts", help="Districts in the seed's design (50 = 80,000 rows)"),
    seed: int = typer.Option(2026, "--seed", help="Random seed of the simulated data"),
    reps: int = typer.Option(40, "--reps", help="Replicates of the small study at the end"),
) -> None:
    """Replay the seed's Stata exploration, correctly, in seconds."""
    from hlm.cli.demo_script import run_demo

    if districts < 2:
        raise typer.BadParameter("needs at least 2 districts", param_hint="--districts")
    run_demo(districts=districts, seed=seed, reps=reps, echo=typer.echo)
