"""The ``hlm`` command: one typer app; each command lives in its own module of this package.

Errors never show a traceback: an :class:`~hlm.errors.HLMError` or a usage error prints
``error: <message>`` on stderr and exits with status 2.  An unexpected internal error
prints one line and exits with status 1 (set ``HLM_DEBUG=1`` to see the traceback).
"""

from __future__ import annotations

import os
import sys

import typer

from hlm.errors import HLMError

app = typer.Typer(
    name="hlm",
    help="Hierarchical linear models from sufficient statistics: lme4 formulas or Stata syntax.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    """``hlm --version``: ``hlm X.Y.Z`` from the installed package's metadata."""
    if value:
        import hlm

        typer.echo(f"hlm {hlm.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Print hlm's version and exit.", is_eager=True, callback=_print_version
    ),
) -> None:
    """Hierarchical linear models: lme4 formulas or Stata syntax, fitted in milliseconds."""


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` to stderr and return the exit (status 2) to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 ok, 2 for any user error)."""
    try:
        result = app(args=argv, standalone_mode=False, prog_name="hlm")
        return int(result) if isinstance(result, int) else 0
    except HLMError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        return 2
    except (BrokenPipeError, KeyboardInterrupt):
        return 2
    except Exception as exc:
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click usage errors
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            if exc.format_message():
                typer.echo(f"error: {exc.format_message()}{hint}", err=True)
            return 2
        if os.environ.get("HLM_DEBUG"):
            raise
        typer.echo(
            f"error: internal error ({type(exc).__name__}: {exc}); please report it (HLM_DEBUG=1 shows the traceback)",
            err=True,
        )
        return 1


def main() -> None:
    """Console entry point."""
    sys.exit(run())
