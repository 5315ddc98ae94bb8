"""CLI command: simulate (see hlm.cli.app for error handling).

    hlm simulate DESIGN.toml --seed N -o FILE [--set levels.district.n=50 ...]
                 [--ids global|within|both] [--effects] [--rows-per-file N] [--force]

FILE's extension picks the format (.csv, .parquet, .dta).  With ``--rows-per-file``
FILE is a new folder of Parquet files written one block at a time (for data larger than
memory).  An existing FILE (or non-empty folder) is replaced only with ``--force``; the
output is checked before simulating.  Nothing is written when the command fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer

from hlm.cli.app import app, fail  # noqa: F401
from hlm.errors import OptionError
from hlm.outputs import force_spelling, output_file, output_folder

if TYPE_CHECKING:
    from hlm.simulate.draw import IdForm


@app.command("simulate")
def simulate_command(
    design: Path = typer.Argument(..., help="Design file (TOML), e.g. examples/seed.toml."),
    seed: int = typer.Option(
        ..., "--seed", help="Random seed (a whole number >= 0); the same seed gives the same file."
    ),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Output file: .csv, .parquet or .dta (a folder with --rows-per-file)."
    ),
    set_: list[str] | None = typer.Option(
        None, "--set", help="Override a design value, e.g. --set levels.district.n=50 (repeatable)."
    ),
    ids: str = typer.Option(
        "global", "--ids", help="Id columns: global (1..N), within (1..n inside each parent, Stata's form) or both."
    ),
    effects: bool = typer.Option(
        False, "--effects", help="Also write the true random effects (u_<level>) and residuals."
    ),
    rows_per_file: int | None = typer.Option(
        None, "--rows-per-file", help="Write a folder of Parquet files of about this many rows each."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing output file (or folder of Parquet files)."),
) -> None:
    """Simulate a multilevel data set from a design file."""
    from hlm.simulate import Design, parse_assignment, simulate, simulate_to_parquet, write_frame
    from hlm.simulate.run import WRITERS

    if ids not in ("global", "within", "both"):
        raise OptionError(f"--ids must be global, within or both, got '{ids}'")
    id_form = cast("IdForm", ids)  # checked just above
    if seed < 0:
        raise OptionError(f"--seed must be >= 0, got {seed}")
    if rows_per_file is None and output.suffix.lower() not in WRITERS:
        raise OptionError(
            f"-o {output}: unsupported extension '{output.suffix or '(none)'}'; use .csv, .parquet or .dta"
        )
    if rows_per_file is not None and output.suffix.lower() not in ("", ".parquet"):
        raise OptionError(f"with --rows-per-file, -o names a folder of Parquet files, not '{output}'")
    if rows_per_file is not None and rows_per_file < 1:
        raise OptionError(f"--rows-per-file must be a whole number >= 1, got {rows_per_file}")
    with force_spelling("--force"):
        if rows_per_file is not None:
            output_folder(output, overwrite=force)
        else:
            output_file(output, WRITERS, overwrite=force)
    d = Design.from_toml(design)
    for text in set_ or []:
        key, value = parse_assignment(text)
        d = d.set(key, value)
    if rows_per_file is not None:
        files = simulate_to_parquet(
            d,
            output,
            seed=seed,
            chunk_rows=rows_per_file,
            ids=id_form,
            effects=effects,
            overwrite=force,
        )
        typer.echo(f"wrote {len(files)} Parquet file(s) to {output}/")
        return
    frame = simulate(d, seed=seed, ids=id_form, effects=effects)
    write_frame(frame, output, overwrite=force)
    units = ""
    if ids != "within" and len(frame):  # global ids run 1..N, so the last row holds N (a sample: count them)
        count = (lambda c: frame[c].nunique()) if d.sampling is not None else (lambda c: frame[c].iloc[-1])
        units = " (" + ", ".join(f"{int(count(lv.id)):,} {lv.id}" for lv in d.levels) + ")"
    typer.echo(f"wrote {len(frame):,} rows{units} to {output}")
