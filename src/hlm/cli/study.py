"""CLI command: study (see hlm.cli.app for error handling).

    hlm study DESIGN.toml --model "perform ~ tutoring + (1|dist_id/school_id/teach_id/student_id)"
              --model "xtreg fe student_id" --reps 500 [--seed N]
              [--grid levels.district.n=5,10,50] [--set key=value] [--jobs N] [--ml]
              [--no-intervals] [--json] [--report FILE.html] [--csv FILE.csv] [--force]

Prints the summary (text, or JSON with ``--json``) to stdout; the progress bar goes to
stderr.  ``--csv`` writes the replicates (one row per replicate, model and parameter),
``--report`` the self-contained HTML report; both are checked before the study runs, and
an existing file is replaced only with ``--force``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import typer

from hlm.cli.app import app, fail
from hlm.errors import OptionError
from hlm.outputs import force_spelling, output_file


def parse_grid(texts: list[str], flag: str = "--grid") -> dict[str, list[Any]]:
    """``["levels.district.n=5,10,50", ...]`` -> ``{"levels.district.n": [5, 10, 50]}`` (``flag``
    names the option in errors)."""
    from hlm.simulate import parse_value

    grid: dict[str, list[Any]] = {}
    for text in texts:
        key, sep, values = text.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise OptionError(f"{flag} needs KEY=V1,V2,..., e.g. {flag} levels.district.n=5,10,50; got '{text}'")
        if key in grid:
            raise OptionError(f"{flag} names '{key}' twice; give its values once, separated by commas")
        grid[key] = [parse_value(v.strip()) for v in _split(values)]
    return grid


def _split(values: str) -> list[str]:
    """Split on commas outside parentheses (``Poisson(5, min=1),8``)."""
    out, depth, cur = [], 0, ""
    for ch in values:
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    out.append(cur)
    if any(not v.strip() for v in out):
        raise OptionError(f"--grid has an empty value in '{values}'")
    return out


@app.command("study")
def study_command(
    design: Path = typer.Argument(..., help="Design file (TOML), e.g. examples/seed.toml."),
    model: list[str] = typer.Option(
        ...,
        "--model",
        "-m",
        help=(
            "A model to fit to every replicate (repeatable): a mixed model in lme4 or Stata syntax, "
            "'xtreg fe PANEL', 'xtreg re PANEL', or 'ols'."
        ),
    ),
    reps: int = typer.Option(..., "--reps", "-r", help="Replicates per design point."),
    seed: int = typer.Option(0, "--seed", help="The study's seed (a whole number >= 0)."),
    grid: list[str] | None = typer.Option(
        None,
        "--grid",
        help=("Repeat over design values, e.g. --grid levels.district.n=5,10,50 (repeatable: every combination)."),
    ),
    set_: list[str] | None = typer.Option(
        None, "--set", help="Override a design value, e.g. --set levels.district.n=50 (repeatable)."
    ),
    jobs: int | None = typer.Option(None, "--jobs", "-j", help="Worker processes (default: the number of CPUs)."),
    ml: bool = typer.Option(False, "--ml", help="Fit the mixed models by maximum likelihood instead of REML."),
    no_intervals: bool = typer.Option(
        False,
        "--no-intervals",
        help=("Skip the SEs and CIs of the variance components and ICCs (about halves the time per fit)."),
    ),
    as_json: bool = typer.Option(False, "--json", help="Print settings, fit summary and summary as JSON."),
    report: Path | None = typer.Option(None, "--report", help="Write a self-contained HTML report to FILE.html."),
    csv: Path | None = typer.Option(
        None, "--csv", help="Write the replicates (one row per replicate, model and parameter) to FILE.csv."
    ),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", help="Progress bar on stderr (default: when stderr is a terminal)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace existing --report / --csv files (else an error)."),
) -> None:
    """Simulate a design many times, fit models, and report bias, RMSE and CI coverage."""
    from hlm.simulate import Design, parse_assignment
    from hlm.study import study

    if reps < 1:
        raise fail(f"--reps must be at least 1, got {reps}")
    if seed < 0:
        raise fail(f"--seed must be >= 0, got {seed}")
    if jobs is not None and jobs < 1:
        raise fail(f"--jobs must be at least 1, got {jobs}")
    for path, ext in ((report, (".html", ".htm")), (csv, (".csv",))):
        if path is not None and path.suffix.lower() not in ext:
            raise fail(f"'{path}' should end in {' or '.join(ext)}")
        if path is not None:
            with force_spelling("--force"):
                output_file(path, dict.fromkeys(ext, ext[0]), overwrite=force)
    d = Design.from_toml(design)
    for text in set_ or []:
        key, value = parse_assignment(text)
        d = d.set(key, value)
    result = study(
        d,
        list(model),
        reps,
        seed,
        parse_grid(list(grid or [])),
        n_jobs=jobs,
        reml=False if ml else None,
        intervals=not no_intervals,
        progress=progress,
    )
    _write_all(((csv, result.to_csv), (report, result.report)))
    if as_json:
        typer.echo(result.to_json())
    else:
        typer.echo(str(result))
        for path, what in ((csv, "replicates"), (report, "report")):
            if path is not None:
                typer.echo(f"wrote the {what} to {path}")


def _write_all(outputs: Sequence[tuple[Path | None, Callable[[Path], Any]]]) -> None:
    """Write every requested file under a temporary name and rename them only when all
    succeeded, so a failure leaves no output file behind."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, write in outputs:
            if path is not None:
                tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
                staged.append((tmp, path))
                write(tmp)
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
