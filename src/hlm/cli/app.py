"""The ``hlm`` command: one typer app; each command lives in its own module of this package.

Errors never show a traceback: an :class:`~hlm.errors.HLMError` or a usage error prints
``error: <message>`` on stderr and exits with status 2.
"""

from __future__ import annotations

import sys

import click
import typer

from hlm.errors import HLMError

app = typer.Typer(
    name="hlm",
    help="Hierarchical linear models from sufficient statistics: lme4 formulas or Stata syntax.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str) -> "typer.Exit":
    """Print ``error: message`` to stderr and return the exit (status 2) to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 ok, 2 for any user error)."""
    try:
        result = app(args=argv, standalone_mode=False)
        return int(result or 0)
    except HLMError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        typer.echo("error: aborted", err=True)
        return 2
    except click.ClickException as exc:
        hint = ""
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            hint = f" (see '{ctx.command_path} --help')"
        typer.echo(f"error: {exc.format_message()}{hint}", err=True)
        return 2
    except (BrokenPipeError, KeyboardInterrupt):
        return 2


def main() -> None:
    """Console entry point."""
    sys.exit(run())
