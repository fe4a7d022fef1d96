"""A production write lock kept in the meta schema, shared by loads, promotions and rollbacks.

Every holder is unique to one process and one use (`new_holder`), so two promotions of
the same restatement can never both be inside. A holder renews its lease from a
heartbeat thread while it holds the lock; a lease that is not renewed expires
(`ttl_s`). A holder whose process is gone (same host, pid no longer running, e.g. after
a SIGKILL) is taken over at once and the takeover is written to the changelog;
`restate unlock` releases a lock by hand, audited.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from restate.engines.base import Engine
from restate.state import changelog
from restate.state.clock import utc_now as _now

PROD_WRITE_LOCK = "prod_write"
DEFAULT_TTL_S = 300.0


class LockTimeoutError(RuntimeError):
    """The lock stayed held by someone else for longer than we were willing to wait."""


class LockError(RuntimeError):
    """The lock cannot be released as asked; the message says why."""


def new_holder(purpose: str) -> str:
    """A holder id unique to this process and this use: purpose:host:pid:nonce."""
    return f"{purpose}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Holder:
    holder: str
    acquired_at: datetime
    expires_at: datetime

    @property
    def host_pid(self) -> tuple[str, int] | None:
        parts = self.holder.split(":")
        if len(parts) >= 4 and parts[-2].isdigit():
            return parts[-3], int(parts[-2])
        return None

    def process_gone(self) -> bool:
        """True only when the holder ran on this host and its process no longer exists."""
        where = self.host_pid
        if where is None or where[0] != socket.gethostname():
            return False
        if where[1] == os.getpid():
            return False
        try:
            os.kill(where[1], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


FREE = ""  # holder of a lock nobody holds: each lock is one row, created once


def current(engine: Engine, schema: str, name: str = PROD_WRITE_LOCK) -> Holder | None:
    """Who holds the lock now, or None when it is free."""
    rows = engine.query(
        f"select holder, acquired_at, expires_at from {schema}.locks where lock_name = ? and holder <> ?",
        [name, FREE],
    )
    return Holder(*rows[0]) if rows else None


def _seed(engine: Engine, schema: str, name: str) -> None:
    """The lock's one row, free, if it does not exist yet (a race here is harmless)."""
    now = _now()
    try:
        engine.execute(
            f"insert into {schema}.locks select ?, ?, ?, ? "
            f"where not exists (select 1 from {schema}.locks where lock_name = ?)",
            [name, FREE, now, now, name],
        )
    except Exception as exc:
        if not _lost_race(engine, exc):
            raise


class _LostRace(Exception):
    """Another contender's compare-and-set won."""


def _lost_race(engine: Engine, exc: BaseException) -> bool:
    """A concurrent writer got there first (write conflict or the key already taken)."""
    return engine.is_write_conflict(exc) or "constraint" in type(exc).__name__.lower()


def try_acquire(engine: Engine, schema: str, name: str, holder: str, ttl_s: float) -> bool:
    """Take the lock if free, expired or left by a dead process; True when `holder` has it.

    Compare-and-set on the lock's one row, read back in the same transaction: of two
    contenders at most one sees itself as the holder (a warehouse that does not enforce
    primary keys cannot fork it), and the loser just tries again later.
    """
    _seed(engine, schema, name)
    try:
        return _compare_and_set(engine, schema, name, holder, ttl_s)
    except _LostRace:
        return False
    except Exception as exc:
        if _lost_race(engine, exc):
            return False
        raise


def _compare_and_set(engine: Engine, schema: str, name: str, holder: str, ttl_s: float) -> bool:
    now = _now()
    with engine.transaction():
        found = current(engine, schema, name)
        expected = found.holder if found is not None else FREE
        if found is not None and found.holder != holder:
            expired = found.expires_at < now
            if not expired and not found.process_gone():
                return False
            changelog.append(
                engine,
                schema,
                "lock_taken_over",
                {
                    "lock": name,
                    "previous_holder": found.holder,
                    "why": "lease expired" if expired else "holder process is gone",
                    "previous_expires_at": found.expires_at,
                },
                actor=holder,
            )
        acquired_at = found.acquired_at if found is not None and found.holder == holder else now
        engine.execute(
            f"update {schema}.locks set holder = ?, acquired_at = ?, expires_at = ? "
            "where lock_name = ? and holder = ?",
            [holder, acquired_at, now + timedelta(seconds=ttl_s), name, expected],
        )
        mine = current(engine, schema, name)
        if mine is None or mine.holder != holder:
            raise _LostRace  # rolls the transaction back
    return True


class LockLostError(RuntimeError):
    """This process no longer holds the lock it is about to write under."""


def assert_held(
    engine: Engine, schema: str, holder: str, name: str = PROD_WRITE_LOCK, margin_s: float = 5.0
) -> None:
    """Fence a write: call inside the write's transaction. Refuses when another holder
    has taken the lock or this holder's lease is about to run out (heartbeat failing)."""
    found = current(engine, schema, name)
    if found is None or found.holder != holder:
        raise LockLostError(
            f"lock {name!r} is no longer held by {holder} (now: {found.holder if found else 'nobody'}); "
            "nothing was written"
        )
    if found.expires_at < _now() + timedelta(seconds=margin_s):
        raise LockLostError(
            f"lease of lock {name!r} runs out at {found.expires_at} UTC and was not renewed; "
            "nothing was written"
        )


def renew(engine: Engine, schema: str, name: str, holder: str, ttl_s: float) -> None:
    engine.execute(
        f"update {schema}.locks set expires_at = ? where lock_name = ? and holder = ?",
        [_now() + timedelta(seconds=ttl_s), name, holder],
    )


def release(engine: Engine, schema: str, name: str, holder: str) -> None:
    engine.execute(
        f"update {schema}.locks set holder = ?, expires_at = ? where lock_name = ? and holder = ?",
        [FREE, _now(), name, holder],
    )


class _Heartbeat:
    """Renews the lease every ttl/5 seconds from its own session until stopped."""

    def __init__(self, engine: Engine, schema: str, name: str, holder: str, ttl_s: float) -> None:
        self.args = (schema, name, holder, ttl_s)
        self.stop_event = threading.Event()
        try:
            self.session: Engine | None = engine.sibling()
        except NotImplementedError:
            self.session = None
        self.thread = threading.Thread(target=self._run, name=f"lock-heartbeat-{name}", daemon=True)

    def _run(self) -> None:
        assert self.session is not None
        schema, name, holder, ttl_s = self.args
        while not self.stop_event.wait(ttl_s / 5):
            try:
                renew(self.session, schema, name, holder, ttl_s)
            except Exception:  # a missed beat is retried; the lease outlives several
                continue

    def __enter__(self) -> _Heartbeat:
        if self.session is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        if self.session is not None:
            if self.thread.is_alive():
                self.thread.join(timeout=30)
            self.session.close()


@contextmanager
def held(
    engine: Engine,
    schema: str,
    holder: str,
    name: str = PROD_WRITE_LOCK,
    ttl_s: float = DEFAULT_TTL_S,
    wait_s: float = 600.0,
) -> Iterator[str]:
    """Hold the named lock for the block (lease renewed by a heartbeat); wait up to wait_s.

    `holder` should come from new_holder(): a holder id shared by two users would let
    both in.
    """
    deadline = time.monotonic() + wait_s
    while not try_acquire(engine, schema, name, holder, ttl_s):
        if time.monotonic() > deadline:
            owner = current(engine, schema, name)
            raise LockTimeoutError(
                f"lock {name!r} is held by {owner.holder if owner else 'nobody'} "
                f"(lease until {owner.expires_at if owner else '-'} UTC); if that process is "
                "gone, `restate unlock --by NAME --reason WHY` releases it"
            )
        time.sleep(0.5)
    try:
        with _Heartbeat(engine, schema, name, holder, ttl_s):
            yield holder
    finally:
        release(engine, schema, name, holder)


def unlock(
    engine: Engine, schema: str, by: str, reason: str, force: bool = False, name: str = PROD_WRITE_LOCK
) -> dict[str, Any]:
    """Release a lock by hand, audited. A live holder on this host needs force."""
    found = current(engine, schema, name)
    if found is None:
        return {"lock": name, "released": None}
    live = found.expires_at >= _now() and not found.process_gone()
    if live and not force:
        raise LockError(
            f"lock {name!r} is held by {found.holder}, whose lease runs until "
            f"{found.expires_at:%Y-%m-%d %H:%M:%S} UTC and is being renewed; pass --force only "
            "if you are sure that process is gone"
        )
    with engine.transaction():
        engine.execute(
            f"update {schema}.locks set holder = ?, expires_at = ? where lock_name = ? and holder = ?",
            [FREE, _now(), name, found.holder],
        )
        changelog.append(
            engine,
            schema,
            "lock_released",
            {"lock": name, "holder": found.holder, "reason": reason, "forced": live},
            actor=by,
        )
    return {"lock": name, "released": found.holder, "forced": live}
