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


def let_waiting_writers_in(settings: Settings) -> float:
    """Between two chunks, with every handle on the DuckDB file closed: let a process that
    waits for the file (a 15-minute load) in before the next chunk reopens it. Returns
    the seconds yielded (0 on engines with concurrent writers)."""
    if settings.engine != "duckdb":
        return 0.0
    from restate.engines.duckdb import yield_to_waiting_writers

    return yield_to_waiting_writers(settings.warehouse_path, settings.duckdb_yield_s)
