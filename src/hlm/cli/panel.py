"""CLI commands: panel (see hlm.cli.app for error handling)."""

from hlm.cli.app import app  # noqa: F401
