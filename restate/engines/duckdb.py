"""DuckDB engine: the embedded default, one file, one writing process."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
from fsspec import AbstractFileSystem

from restate.engines.base import Engine


class WarehouseBusyError(RuntimeError):
    """Another process holds the DuckDB file's write lock."""


class DuckDBEngine(Engine):
    name = "duckdb"
    # raw.events carries the processing time typed (values that do not parse count as missing).

    def __init__(
        self, path: Path, wait_s: float = 30.0, filesystem: AbstractFileSystem | None = None
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.con = duckdb.connect(str(path))
                break
            except duckdb.IOException as exc:
                # DuckDB allows one writing process per file: wait for the lock.
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise WarehouseBusyError(
                        f"{path} is locked by another process (a load or restatement "
                        f"is running); retry when it ends"
                    ) from exc
                time.sleep(0.5)
        self.con.execute("set enable_progress_bar = false")
        if filesystem is not None and filesystem.protocol[0] not in self.con.list_filesystems():
            # s3:// landing: DuckDB's httpfs cannot be installed offline, fsspec (s3fs) can.
            self.con.register_filesystem(filesystem)

    def sibling(self) -> DuckDBEngine:
        # A cursor is its own connection to the same database instance (thread-safe).
        other = DuckDBEngine.__new__(DuckDBEngine)
        other.__dict__.update(self.__dict__)
        other.con = self.con.cursor()
        other._after_commit = None  # the sibling starts outside any transaction
        other._shared = False  # and is its owner's to close
        return other

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        self.con.execute(sql, params).fetchall()

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        return self.con.execute(sql, params).fetchall()

    def query_dicts(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        cur = self.con.execute(sql, params)
        names = [d[0].lower() for d in cur.description or []]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def begin(self) -> None:
        self.con.execute("begin transaction")

    def commit(self) -> None:
        self.con.execute("commit")

    def rollback(self) -> None:
        self.con.execute("rollback")

    def is_write_conflict(self, exc: BaseException) -> bool:
        # Optimistic concurrency: a row another open transaction changed ("Conflict on update").
        return isinstance(exc, duckdb.TransactionException)

    def close(self) -> None:
        self.con.close()

    def relation_exists(self, schema: str, name: str) -> bool:
        rows = self.query(
            "select 1 from information_schema.tables where table_schema = ? and table_name = ?",
            [schema, name],
        )
        return bool(rows)

    def columns(self, schema: str, name: str) -> list[str]:
        rows = self.query(
            "select column_name from information_schema.columns "
            "where table_schema = ? and table_name = ? order by ordinal_position",
            [schema, name],
        )
        return [r[0] for r in rows]
