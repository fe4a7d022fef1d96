"""Chunks spread over processes (Prefect task workers): hand the warehouse file back."""

from __future__ import annotations

from restate.settings import Settings


def release_warehouse(settings: Settings) -> None:
    """Close the DuckDB handle dbt-duckdb keeps open after an invocation.

    DuckDB allows one writing process per file, and dbt-duckdb keeps its connection
    open in the process that ran dbt (measured: another process gets "Conflicting lock"
    until it closes). A task worker that ran one chunk would otherwise lock the other
    workers and the flow out of the warehouse for good. The next invocation reopens it.
    Callers run one dbt invocation at a time per process (DuckDB chunk concurrency is 1).
    """
    if settings.engine != "duckdb":
        return
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        env = DuckDBConnectionManager._ENV
        if env is not None:
            env.close()
            DuckDBConnectionManager._ENV = None
