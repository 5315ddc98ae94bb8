"""Command-line interface. Importing the command modules registers their commands, in the
order ``hlm --help`` lists them."""

# isort: off
from hlm.cli import fit as _fit  # noqa: F401
from hlm.cli import panel as _panel  # noqa: F401
from hlm.cli import simulate as _simulate  # noqa: F401
from hlm.cli import diagnose as _diagnose  # noqa: F401
from hlm.cli import demo as _demo  # noqa: F401
from hlm.cli import study as _study  # noqa: F401
from hlm.cli import power as _power  # noqa: F401

# isort: on
from hlm.cli.app import app, main, run

__all__ = ["app", "main", "run"]
