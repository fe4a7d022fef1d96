"""DuckDB engine: the embedded default, one file, one writing process."""

from __future__ import annotations

import fcntl
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
from fsspec import AbstractFileSystem

from restate.engines.base import Engine

log = logging.getLogger(__name__)


class WarehouseBusyError(RuntimeError):
    """Another process holds the DuckDB file's write lock."""


class DuckDBEngine(Engine):
    name = "duckdb"
    # raw.events carries the processing time typed (values that do not parse count as missing).

    def __init__(
        self,
        path: Path,
        wait_s: float = 30.0,
        filesystem: AbstractFileSystem | None = None,
        memory_limit: str | None = None,
        threads: int | None = None,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        if _let_in_at is not None and time.monotonic() - _let_in_at < AFTER_YIELD_WAIT_S:
            # This process just let another one go first: wait for it to finish.
            wait_s = max(wait_s, AFTER_YIELD_WAIT_S)
        deadline = time.monotonic() + wait_s
        waiting: _Waiter | None = None
        busy_at: tuple[float, float] | None = None  # (monotonic, wall clock) of the first refusal
        try:
            while True:
                try:
                    self.con = duckdb.connect(str(path))
                    break
                except duckdb.IOException as exc:
                    # DuckDB allows one writing process per file: wait for the lock, and say
                    # so, so that a restatement lets this process in between two chunks.
                    if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                        raise WarehouseBusyError(
                            f"{path} is locked by another process (a load or restatement "
                            f"is running); retry when it ends"
                        ) from exc
                    if busy_at is None:
                        busy_at = (time.monotonic(), time.time())
                        waiting = _announce_waiter(path)
                        log.info("waiting for %s: %s", path, exc)
                    time.sleep(0.1)
        finally:
            if waiting is not None:
                waiting.done()
            if busy_at is not None:  # recorded whether it got in or gave up
                waited = time.monotonic() - busy_at[0]
                _waits.append((busy_at[1], waited))
                log.info("waited %.2f s for %s", waited, path)
        self.con.execute("set enable_progress_bar = false")
        limit_resources(self.con, memory_limit, threads)
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

    def result_columns(self, sql: str) -> list[str]:
        description = self.con.execute(f"select * from (\n{sql}\n) as q limit 0").description or []
        return [str(d[0]).lower() for d in description]

    def columns(self, schema: str, name: str) -> list[str]:
        rows = self.query(
            "select column_name from information_schema.columns "
            "where table_schema = ? and table_name = ? order by ordinal_position",
            [schema, name],
        )
        return [r[0] for r in rows]


def limit_resources(con: duckdb.DuckDBPyConnection, memory_limit: str | None, threads: int | None) -> None:
    """Bound the database's memory (beyond it DuckDB spills to disk) and threads. Both are
    global to the database: one process's sessions and dbt's share them."""
    if memory_limit:
        con.execute(f"set memory_limit = '{_checked_size(memory_limit)}'")
    if threads:
        con.execute(f"set threads = {int(threads)}")


def _checked_size(value: str) -> str:
    text = value.strip()
    if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", text):
        raise ValueError(f"DuckDB memory limit {value!r} is not a size such as 1GB or 512MB")
    return text


# Each wait of this process for the file another process held: (wall-clock start, seconds).
_waits: deque[tuple[float, float]] = deque(maxlen=1000)


def file_waits(since: float = 0.0) -> list[tuple[float, float]]:
    """This process's waits for a DuckDB file another process held, begun at or after
    `since` (wall clock): (start, seconds) each, oldest first; a wait that ended in
    WarehouseBusyError counts too."""
    return [w for w in list(_waits) if w[0] >= since]


# After letting a waiting process in, the next open waits this long for it to finish
# (a load's whole run), not the default 30 s that would fail the restatement meanwhile.
AFTER_YIELD_WAIT_S = 600.0
_let_in_at: float | None = None


# A process waiting for the file leaves a marker named after its pid in <file>.waiting/.
def _waiting_dir(path: Path) -> Path:
    return path.with_name(f"{path.name}.waiting")


class _Waiter:
    """A marker file the waiting process holds an exclusive flock on while it waits: a
    marker nobody holds a lock on is stale (its process died, whatever its pid is now)."""

    def __init__(self, marker: Path, handle: Any) -> None:
        self.marker, self.handle = marker, handle

    def done(self) -> None:
        self.marker.unlink(missing_ok=True)
        self.handle.close()  # releases the lock


def _announce_waiter(path: Path) -> _Waiter | None:
    try:
        folder = _waiting_dir(path)
        folder.mkdir(exist_ok=True)
        name = f"{os.getpid()}-{threading.get_ident()}"
        # Locked under a temporary name, then renamed: a scan never sees it unlocked.
        staged = folder / f"t-{name}"
        handle = staged.open("w")
        fcntl.flock(handle, fcntl.LOCK_EX)
        marker = folder / f"w-{name}"
        staged.rename(marker)
        return _Waiter(marker, handle)
    except OSError:  # a read-only folder: waiting still works, only without priority
        return None


def waiting_writers(path: Path) -> list[int]:
    """Pids of processes waiting for the DuckDB file now: markers another process holds
    locked (stale ones, whose holder died, are removed)."""
    folder = _waiting_dir(path)
    pids = []
    for marker in sorted(folder.glob("w-*")) if folder.is_dir() else []:
        try:
            pid = int(marker.name.split("-")[1])
        except (IndexError, ValueError):
            marker.unlink(missing_ok=True)
            continue
        if pid == os.getpid():
            continue  # this process's own threads never wait for it
        try:
            with marker.open("a") as probe:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(probe, fcntl.LOCK_UN)
            marker.unlink(missing_ok=True)  # nobody holds it: its waiter is gone
        except BlockingIOError:
            pids.append(pid)
        except OSError:
            continue  # removed meanwhile
    return pids


def yield_to_waiting_writers(path: Path, max_wait_s: float) -> float:
    """Between two steps of a long job that has closed its handles on the file: while
    another process waits for the file, wait (up to max_wait_s) so it gets in first.
    Returns the seconds yielded. DuckDB has one writer per file and no queue: without
    this, a restatement reopening the file at once after each chunk starves a load."""
    global _let_in_at
    started = time.monotonic()
    if holds_file(path):  # a handle still open here: the waiter could not get in anyway
        return 0.0
    if waiting_writers(path):
        _let_in_at = started
    while waiting_writers(path) and time.monotonic() - started < max_wait_s:
        time.sleep(0.05)
    waited = time.monotonic() - started
    if waited >= max_wait_s > 0:
        pids = waiting_writers(path)
        log.warning("%s: processes %s still wait for the file after %.1f s; going on", path, pids, waited)
    return waited


def holds_file(path: Path) -> bool:
    """True when this process has the DuckDB file open (Linux: its file descriptors);
    False where that cannot be known."""
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        return False
    target = str(path.resolve())
    for fd in fds.iterdir():
        try:
            if os.readlink(fd) == target:
                return True
        except OSError:
            continue
    return False
