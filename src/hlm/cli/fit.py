"""CLI command: ``hlm fit DATA MODEL [--ml] [--json] [--style stata|lme4] [--plot FILE.png]
[--plot-kind caterpillar|variance|profile] [--reorder] [--weights COLUMN]``.

Nothing is printed or written until the fit (and the plot) succeeded; warnings (reordered
levels, implicitly nested ids, boundary fits) follow the output as ``warning: ...`` lines."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import typer

from hlm.cli.app import app, fail
from hlm.errors import FileError, OptionError

PLOT_KINDS = ("caterpillar", "variance", "profile")  # hlm.report.plots.PLOT_KINDS (not imported: matplotlib)
PLOT_FORMATS = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def _plot_target(plot: str) -> Path:
    """Check ``--plot FILE`` before fitting: a known image type in an existing folder."""
    target = Path(plot)
    if target.suffix.lower() not in PLOT_FORMATS:
        raise OptionError(f"--plot {plot}: unsupported image type '{target.suffix or '(none)'}'; "
                          f"use {', '.join(PLOT_FORMATS)}")
    if not target.parent.is_dir():
        raise FileError(f"cannot write '{plot}': the folder '{target.parent}' does not exist")
    return target


def _save_plot(fig, target: Path) -> None:
    """Save under a temporary name, then rename: the file appears only when complete."""
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        fig.savefig(tmp, dpi=120, format=target.suffix.lower().lstrip(".").replace("jpg", "jpeg"))
        os.replace(tmp, target)
    except OSError as exc:
        raise FileError(f"cannot write '{target}': {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


@app.command("fit")
def fit_command(
    data: str = typer.Argument(..., help="Data file: .csv, .parquet or .dta"),
    model: str = typer.Argument(..., help="lme4 formula 'y ~ x + (1|g)' or Stata syntax 'y x || g:'"),
    ml: bool = typer.Option(False, "--ml", help="Maximum likelihood instead of REML (default: the model's "
                                                "', mle'/', reml' or command, else REML)"),
    as_json: bool = typer.Option(False, "--json", help="Print the fit as JSON"),
    style: str = typer.Option(None, "--style", help="Summary layout: stata or lme4 (default: the model's syntax)"),
    plot: str = typer.Option(None, "--plot", help="Save a plot to FILE.png (see --plot-kind)"),
    plot_kind: str = typer.Option("caterpillar", "--plot-kind",
                                  help="caterpillar (conditional modes), variance (share per level) or "
                                       "profile (profile zeta per parameter)"),
    reorder: bool = typer.Option(False, "--reorder",
                                 help="Fit nested levels listed inner to outer in the corrected order (else an error)"),
    weights: str = typer.Option(None, "--weights",
                                help="Column of PRECISION weights, as lme4's weights= (row variance sigma^2/w); "
                                     "not sampling/survey weights"),
) -> None:
    """Fit a linear mixed model and print its summary."""
    from hlm.checks import option_spelling
    from hlm.lmm import fit

    if style is not None and style not in ("stata", "lme4"):
        raise fail(f"--style must be 'stata' or 'lme4', not '{style}'")
    if plot_kind not in PLOT_KINDS:
        raise fail(f"--plot-kind must be one of {', '.join(PLOT_KINDS)}, not '{plot_kind}'")
    target = _plot_target(plot) if plot else None
    with warnings.catch_warnings(record=True) as caught, option_spelling("--reorder"):
        warnings.simplefilter("always")
        result = fit(model, data, reml=False if ml else None, reorder=reorder, weights=weights)
        text = json.dumps(result.to_dict(), indent=2, allow_nan=True) if as_json else \
            result.summary(style=style or result.spec.syntax)
        if target is not None:
            _save_plot(result.plot(plot_kind), target)
    typer.echo(text)
    for w in caught:
        typer.echo(f"warning: {w.message}", err=True)
