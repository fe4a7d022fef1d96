"""Warehouse engines behind one small interface (DuckDB default, Snowflake in production)."""

from __future__ import annotations

from restate.engines.base import Engine
from restate.settings import Settings


def connect(settings: Settings) -> Engine:
    """Open the engine the settings name."""
    if settings.engine == "duckdb":
        from restate.engines.duckdb import DuckDBEngine

        return DuckDBEngine(settings.warehouse_path)
    raise NotImplementedError(f"engine {settings.engine!r} is not available in this build")


__all__ = ["Engine", "connect"]
