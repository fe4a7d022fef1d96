"""The `restate` command line (typer + rich)."""

from interfaces.cli.commands import app

__all__ = ["app"]
