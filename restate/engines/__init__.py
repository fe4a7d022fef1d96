"""Warehouse engines behind one small interface (DuckDB default, Snowflake in production)."""

from __future__ import annotations

from typing import Any

from restate.engines.base import Engine
from restate.settings import Settings


def connect(settings: Settings, **query_tag: Any) -> Engine:
    """Open the engine the settings name; `query_tag` fields label its statements (Snowflake)."""
    engine: Engine
    if settings.engine == "duckdb":
        from restate.engines.duckdb import DuckDBEngine
        from restate.object_store import landing_filesystem

        engine = DuckDBEngine(settings.warehouse_path, filesystem=landing_filesystem(settings))
    else:
        from restate.credentials import snowflake_connect_kwargs
        from restate.engines.snowflake import SnowflakeEngine

        engine = SnowflakeEngine(
            snowflake_connect_kwargs(settings),
            landing_table=settings.snowflake_landing_table,
            query_tag={"app": "restate", **query_tag},
        )
    engine.settings = settings
    return engine


__all__ = ["Engine", "connect"]
