"""CLI command: fit."""

from hlm.cli.app import app  # noqa: F401
