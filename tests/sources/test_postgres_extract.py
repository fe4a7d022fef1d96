"""Keyset extraction from a real PostgreSQL (127.0.0.1:5432): every changed row lands
exactly once per version, page boundaries inside runs of equal timestamps lose nothing,
a stop or a crash between a page and its cursor never skips a row, and the source only
ever sees short, index-served, read-only statements."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from restate.engines import connect
from restate.settings import Settings
from sources import postgres
from sources.postgres import PostgresTable, SourceError, extract, page_statement
from tests.conftest import make_settings

psycopg = pytest.importorskip("psycopg")

ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
COLUMNS = {
    "order_id": "varchar",
    "store_id": "varchar",
    "status": "varchar",
    "order_ts": "timestamp",
    "updated_at": "timestamp",
    "gross_amount": "decimal(18, 2)",
    "deleted_at": "timestamp",
    "order_ingested_at": "timestamp",
}


@pytest.fixture
def source_db() -> Iterator[str]:
    name = f"restate_src_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(ADMIN, autocommit=True)
    except psycopg.OperationalError as exc:  # pragma: no cover - the machine has PostgreSQL
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432: {exc}")
    admin.execute(f'create database "{name}"')
    dsn = f"host=127.0.0.1 port=5432 user=postgres dbname={name}"
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(
            """
            create table public.orders (
                order_id varchar primary key, store_id varchar not null, status varchar not null,
                order_ts timestamp not null, updated_at timestamp not null,
                gross_amount numeric(18, 2) not null, deleted_at timestamp
            )
            """
        )
    try:
        yield dsn
    finally:
        admin.execute(f'drop database "{name}" with (force)')
        admin.close()


def _index(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute("create index orders_keyset on public.orders (updated_at, order_id)")


def _insert(dsn: str, n: int, start: int, updated_at: datetime) -> None:
    with psycopg.connect(dsn, autocommit=True) as con, con.cursor() as cur:
        cur.executemany(
            "insert into public.orders values (%s, %s, 'placed', %s, %s, %s, null)",
            [
                (f"NS-{i:07d}", f"S{i % 7}", updated_at - timedelta(hours=1), updated_at, Decimal(i) / 100)
                for i in range(start, start + n)
            ],
        )


def _source(dsn: str, page_size: int = 1000) -> PostgresTable:
    return PostgresTable(
        name="shop.orders",
        dsn=dsn,
        table="public.orders",
        columns=COLUMNS,
        cursor_column="updated_at",
        key_column="order_id",
        landed_at_column="order_ingested_at",
        page_size=page_size,
    )


def _landed(s: Settings) -> list[tuple]:
    return duckdb.sql(
        f"select order_id, status, updated_at, gross_amount, deleted_at "
        f"from read_parquet('{s.landing}/orders/*/*.parquet')"
    ).fetchall()


def _table(dsn: str) -> set[tuple]:
    with psycopg.connect(dsn) as con:
        return set(
            con.execute("select order_id, status, updated_at, gross_amount, deleted_at from public.orders")
        )


def _latest(rows: list[tuple]) -> set[tuple]:
    latest: dict[str, tuple] = {}
    for r in rows:
        if r[0] not in latest or r[2] > latest[r[0]][2]:
            latest[r[0]] = r
    return set(latest.values())


def test_changes_land_once_per_version_and_the_latest_equals_the_source(
    source_db: str, tmp_path: Path
) -> None:
    s = make_settings(tmp_path / "wh")
    _index(source_db)
    past = datetime(2026, 11, 1, 12, 0)
    # 1,500 rows share one updated_at: two page boundaries fall inside the run of ties.
    _insert(source_db, 1500, 0, past)
    _insert(source_db, 1000, 1500, past + timedelta(minutes=5))
    with connect(s) as engine:
        first = extract(s, engine, _source(source_db), "orders")
    assert (first.pages, first.rows, first.statements) == (3, 2500, 3)
    assert first.max_rows_per_statement == 1000  # never more than a page per statement
    landed = _landed(s)
    assert len(landed) == 2500 and set(landed) == _table(source_db)

    # Updates, soft deletes and inserts since: only they land, as new versions.
    later = past + timedelta(days=1)
    with psycopg.connect(source_db, autocommit=True) as con:
        con.execute(
            "update public.orders set status = 'paid', updated_at = %s where order_id < 'NS-0000010'", [later]
        )
        con.execute(
            "update public.orders set deleted_at = %s, updated_at = %s "
            "where order_id between 'NS-0002000' and 'NS-0002004'",
            [later, later],
        )
        # In the future (past the run's now() - settle): it waits for a later run.
        con.execute(
            "insert into public.orders values ('NS-9999999', 'S1', 'placed', now(), now() + interval '1 hour', 1, null)"
        )
    _insert(source_db, 20, 3000, later)
    with connect(s) as engine:
        second = extract(s, engine, _source(source_db), "orders")
    assert second.rows == 10 + 5 + 20 and second.statements == 1
    landed = _landed(s)
    assert len(landed) == 2500 + 35
    source_now = {r for r in _table(source_db) if r[0] != "NS-9999999"}
    assert _latest(landed) == source_now  # deletes arrive as versions with deleted_at
    assert sum(r[4] is not None for r in _latest(landed)) == 5

    with connect(s) as engine:  # nothing changed: one statement, nothing landed
        third = extract(s, engine, _source(source_db), "orders")
    assert (third.rows, third.statements, third.pages) == (0, 1, 0)


def test_a_stop_or_a_crash_between_page_and_cursor_never_skips_a_row(
    source_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = make_settings(tmp_path / "wh")
    _index(source_db)
    _insert(source_db, 2500, 0, datetime(2026, 11, 1, 12, 0))
    with connect(s) as engine:
        stopped = extract(s, engine, _source(source_db), "orders", max_pages=1)
    assert stopped.rows == 1000

    # The next run lands page 2, then dies before its cursor is saved.
    real_save = postgres.save_cursor
    calls = {"n": 0}

    def crash_on_second_save(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed between the page and its cursor")
        real_save(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(postgres, "save_cursor", crash_on_second_save)
    with connect(s) as engine, pytest.raises(KeyboardInterrupt):
        extract(s, engine, _source(source_db), "orders")
    monkeypatch.setattr(postgres, "save_cursor", real_save)
    with connect(s) as engine:
        extract(s, engine, _source(source_db), "orders")
    landed = _landed(s)
    assert {r[0] for r in landed} == {r[0] for r in _table(source_db)}  # nothing skipped
    assert len(landed) - 2500 <= 1000  # at most the one page landed twice (the dedupe absorbs it)
    assert _latest(landed) == _table(source_db)


def test_the_source_sees_only_short_read_only_index_served_statements(source_db: str, tmp_path: Path) -> None:
    s = make_settings(tmp_path / "wh")
    _insert(source_db, 100, 0, datetime(2026, 11, 1, 12, 0))
    with connect(s) as engine, pytest.raises(SourceError, match="create index concurrently"):
        extract(s, engine, _source(source_db), "orders")  # no index: refused before any read
    _index(source_db)
    src = _source(source_db)
    with postgres._connect(src) as con:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            con.execute("update public.orders set status = 'x'")
        con.rollback()
        assert con.execute("show statement_timeout").fetchone()[0] == "5s"
        con.rollback()
        types = postgres.column_types(con, src)
        # The planner's choice on 100 rows is not the point: the index must be able to
        # serve the page in its order (no sort), as it will on 120M rows.
        con.execute("set enable_seqscan = off")
        plan = "\n".join(
            r[0]
            for r in con.execute(
                psycopg.sql.SQL("explain ") + page_statement(src, types, first=False),
                ["2026-11-01T00:00:00", "NS-0000001", "2026-11-02T00:00:00", 1000],
            ).fetchall()
        )
    assert "Index" in plan and "Sort" not in plan, plan
