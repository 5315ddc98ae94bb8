"""``hlm power DESIGN.toml``: power of a mixed model's test by simulation (:func:`hlm.power.simulate`).

    hlm power examples/seed.toml --model "perform ~ tutoring + (1|dist_id/school_id/teach_id/student_id)" \\
        --term tutoring --effect 1 --vary levels.district.n=5,10,20,40 --reps 2000 --plot curve.png
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer

from hlm.cli.study import parse_grid
from hlm.errors import OptionError

if TYPE_CHECKING:
    from hlm.power.simulation import Test


def simulated(
    design: str,
    vary: list[str],
    test: str,
    jobs: int | None,
    plot: Path | None,
    report: Path | None,
    *,
    what: tuple[str | None, str | None, float | None],
    alpha: float,
    reps: int,
    seed: int,
) -> None:
    """Simulate, print the power table, and write the plot and report asked for; ``what`` is the
    model, the term and the effect (None: the design's)."""
    from hlm.power.simulation import TESTS, simulate

    model, term, effect = what
    if model is None or term is None:
        raise OptionError("a design file needs --model (the mixed model) and --term (the fixed effect to test)")
    grid = parse_grid(vary, flag="--vary") if vary else None
    if plot is not None and not grid:
        raise OptionError("--plot draws a power curve: give --vary KEY=V1,V2,...")
    if test not in TESTS:
        raise OptionError(f"--test must be one of {', '.join(TESTS)}, got '{test}'")
    result = simulate(
        design,
        model,
        term,
        effect=effect,
        reps=reps,
        seed=seed,
        test=cast("Test", test),
        alpha=alpha,
        vary=grid,
        n_jobs=jobs,
    )
    typer.echo(str(result))
    if plot is not None:
        result.plot(plot)
        typer.echo(f"wrote {plot}")
    if report is not None:
        typer.echo(f"wrote {result.report(report)}")
