"""Warehouse engines behind one small interface (DuckDB default, Snowflake in production).

`connect(settings)` opens a session. Inside `session_scope()` (one per CLI command) every
`connect` for the same warehouse on the same thread shares one session: the scope opens
it on first use and closes it when the scope ends; a `with connect(...)` block inside
the scope only borrows it. Other threads (chunk workers, Prefect task threads) open their
own, because one session is not safe to share between threads. `release_sessions()`
hands the warehouse back mid-scope (DuckDB: one writing process per file) so another
process's load can write between a long command's steps; the next `connect` reopens.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from restate.engines.base import Engine
from restate.settings import Settings


def open_engine(settings: Settings, **query_tag: Any) -> Engine:
    """A new session on the engine the settings name; `query_tag` labels its statements."""
    engine: Engine
    if settings.engine == "duckdb":
        from restate.engines.duckdb import DuckDBEngine
        from restate.engines.object_store import landing_filesystem

        engine = DuckDBEngine(
            settings.warehouse_path,
            filesystem=landing_filesystem(settings),
            memory_limit=settings.duckdb_memory_limit,
            threads=settings.duckdb_threads,
        )
    else:
        from restate.engines.credentials import snowflake_connect_kwargs
        from restate.engines.snowflake import SnowflakeEngine

        engine = SnowflakeEngine(
            snowflake_connect_kwargs(settings),
            landing_table=settings.snowflake_landing_table,
            query_tag={"app": "restate", **query_tag},
        )
    engine.settings = settings
    return engine


def session_key(settings: Settings) -> tuple[str, ...]:
    """Which warehouse (and installation) a session is for."""
    if settings.engine == "duckdb":
        target: tuple[str, ...] = (str(settings.warehouse_path),)
    else:
        target = tuple(
            str(getattr(settings, f"snowflake_{k}"))
            for k in ("account", "host", "port", "user", "role", "database", "warehouse")
        )
    return (settings.engine, *target, str(settings.data_dir), settings.meta_schema)


class _Scope:
    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.sessions: dict[tuple[str, ...], Engine] = {}

    def close(self) -> None:
        sessions, self.sessions = self.sessions, {}
        for engine in sessions.values():
            engine._shared = False
            engine.close()


_scope: ContextVar[_Scope | None] = ContextVar("restate_session_scope", default=None)


@contextmanager
def session_scope() -> Iterator[None]:
    """Share one warehouse session per warehouse among the `connect` calls in this block."""
    if _scope.get() is not None:  # nested: the outer scope already shares
        yield
        return
    scope = _Scope()
    token = _scope.set(scope)
    try:
        yield
    finally:
        _scope.reset(token)
        scope.close()


def release_sessions() -> None:
    """Close the scope's sessions now (the next `connect` reopens): the warehouse is free
    for another process until then. Refused inside an open transaction."""
    scope = _scope.get()
    if scope is None:
        return
    if any(e.in_transaction for e in scope.sessions.values()):
        raise RuntimeError("cannot release the warehouse session inside a transaction")
    scope.close()


def connect(settings: Settings, **query_tag: Any) -> Engine:
    """A session on the settings' warehouse: the scope's shared one, or a new one."""
    scope = _scope.get()
    if scope is None or scope.thread != threading.get_ident():
        return open_engine(settings, **query_tag)
    key = session_key(settings)
    engine = scope.sessions.get(key)
    if engine is None:
        engine = scope.sessions[key] = open_engine(settings, **query_tag)
        engine._shared = True
    elif query_tag:
        engine.set_query_tag(**query_tag)
    return engine


__all__ = ["Engine", "connect", "open_engine", "release_sessions", "session_scope"]
