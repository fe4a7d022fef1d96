"""A production write lock kept in the meta schema, shared by loads and promotions."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from restate.clock import utc_now as _now
from restate.engines.base import Engine

PROD_WRITE_LOCK = "prod_write"


class LockTimeoutError(RuntimeError):
    """The lock stayed held by someone else for longer than we were willing to wait."""


def try_acquire(engine: Engine, schema: str, name: str, holder: str, ttl_s: float) -> bool:
    """Take the lock if free or expired; True when this holder has it."""
    now = _now()
    with engine.transaction():
        engine.execute(f"delete from {schema}.locks where lock_name = ? and expires_at < ?", [name, now])
        rows = engine.query(f"select holder from {schema}.locks where lock_name = ?", [name])
        if rows and rows[0][0] != holder:
            return False
        if rows:
            engine.execute(
                f"update {schema}.locks set expires_at = ? where lock_name = ?",
                [now + timedelta(seconds=ttl_s), name],
            )
        else:
            engine.execute(
                f"insert into {schema}.locks values (?, ?, ?, ?)",
                [name, holder, now, now + timedelta(seconds=ttl_s)],
            )
    return True


def release(engine: Engine, schema: str, name: str, holder: str) -> None:
    engine.execute(f"delete from {schema}.locks where lock_name = ? and holder = ?", [name, holder])


@contextmanager
def held(
    engine: Engine,
    schema: str,
    holder: str,
    name: str = PROD_WRITE_LOCK,
    ttl_s: float = 3600.0,
    wait_s: float = 600.0,
) -> Iterator[None]:
    """Hold the named lock for the block; wait for it up to wait_s seconds."""
    deadline = time.monotonic() + wait_s
    while not try_acquire(engine, schema, name, holder, ttl_s):
        if time.monotonic() > deadline:
            owner = engine.scalar(f"select holder from {schema}.locks where lock_name = ?", [name])
            raise LockTimeoutError(f"lock {name!r} is held by {owner}")
        time.sleep(1.0)
    try:
        yield
    finally:
        release(engine, schema, name, holder)
