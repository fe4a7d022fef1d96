"""The source deployments' flows as Prefect flow runs (real temporary Prefect server):
Northstar orders from a real PostgreSQL into the Northstar marts, inserted and then
updated and deleted at the source (status changes, amount corrections, an order moved
to another day, soft deletes), each run reporting rows and the watermark; the mart equals an independent
computation from the source table, to the cent. Then the payments journal and a partner
SFTP drop land through their flows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from restate.engines import connect
from restate.settings import PROJECT_ROOT, get_settings

pytestmark = pytest.mark.slow
psycopg = pytest.importorskip("psycopg")

ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
NORTHSTAR_COLUMNS = {
    "order_id": "varchar",
    "store_id": "varchar",
    "channel": "varchar",
    "status": "varchar",
    "order_ts": "timestamp",
    "updated_at": "timestamp",
    "order_ingested_at": "timestamp",
    "gross_amount": "decimal(18, 2)",
    "tax_amount": "decimal(18, 2)",
    "refund_amount": "decimal(18, 2)",
    "deleted_at": "timestamp",
}


@pytest.fixture
def orders_db() -> Iterator[str]:
    name = f"restate_orders_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(ADMIN, autocommit=True)
    admin.execute(f'create database "{name}"')
    dsn = ADMIN.replace("dbname=postgres", f"dbname={name}")
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(
            """
            create table public.orders (
                order_id varchar primary key, store_id varchar not null, channel varchar not null,
                status varchar not null, order_ts timestamp not null, updated_at timestamp not null,
                gross_amount numeric(18, 2) not null, tax_amount numeric(18, 2) not null,
                refund_amount numeric(18, 2) not null default 0, deleted_at timestamp
            )
            """
        )
        con.execute("create index orders_keyset on public.orders (updated_at, order_id)")
    try:
        yield dsn
    finally:
        admin.execute(f'drop database "{name}" with (force)')
        admin.close()


def _expected(dsn: str) -> dict[tuple, tuple]:
    """fct_orders_daily from the source table itself: a cancelled order counts nothing."""
    with psycopg.connect(dsn) as con:
        rows = con.execute(
            """
            select order_ts::date, store_id, count(*), sum(gross_amount), sum(refund_amount),
                   sum(tax_amount), sum(gross_amount) - sum(refund_amount)
            from public.orders where status <> 'cancelled' and deleted_at is null group by 1, 2
            """
        ).fetchall()
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def _mart(settings) -> dict[tuple, tuple]:
    with connect(settings) as e:
        rows = e.query(
            "select order_date, store_id, orders, gross_sales, refunds, tax, net_sales "
            "from analytics.fct_orders_daily where orders > 0"
        )
    return {(r[0], r[1]): (r[2], *(Decimal(v).quantize(Decimal("0.01")) for v in r[3:])) for r in rows}


def test_orders_from_postgres_reach_the_mart_to_the_cent(
    orders_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.testing.utilities import prefect_test_harness

    base = datetime.now().replace(microsecond=0) - timedelta(days=2)
    with psycopg.connect(orders_db, autocommit=True) as con, con.cursor() as cur:
        cur.executemany(
            "insert into public.orders values (%s, %s, %s, %s, %s, %s, %s, %s, %s, null)",
            [
                (
                    f"NS-{i:07d}",
                    f"S{i % 4}",
                    ("web", "app", "marketplace")[i % 3],
                    ("placed", "paid", "shipped")[i % 3],
                    base - timedelta(hours=i % 48),
                    base,
                    Decimal(1000 + i) / 10,
                    Decimal(80 + i % 7) / 10,
                    Decimal(0),
                )
                for i in range(300)
            ],
        )
    sources = tmp_path / "sources.yml"
    sources.write_text(
        "postgres:\n"
        "  - name: shop.orders\n"
        "    dsn: ${ORDERS_DSN}\n"
        "    table: public.orders\n"
        "    folder: orders\n"
        "    cursor_column: updated_at\n"
        "    key_column: order_id\n"
        "    landed_at_column: order_ingested_at\n"
        "    page_size: 100\n"
        "    settle_s: 1\n"
        f"    columns: {NORTHSTAR_COLUMNS}\n"
    )
    env = {
        "ORDERS_DSN": orders_db,
        "RESTATE_DATA_DIR": str(tmp_path / "data"),
        "RESTATE_DBT_PROJECT_DIR": str(PROJECT_ROOT / "dbt" / "northstar"),
        "RESTATE_SODA_CONTRACTS_DIR": str(PROJECT_ROOT / "soda_checks" / "northstar"),
        "RESTATE_REFERENCE_EXPORTS": str(PROJECT_ROOT / "examples" / "northstar" / "reference_exports.yml"),
        "RESTATE_EXPLAINER": "",
        "RESTATE_DEMO": "",
        "RESTATE_LOOKBACK_HOURS": "72",
        "RESTATE_SOURCES_FILE": str(sources),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("RESTATE_DUCKDB_PATH", "RESTATE_PROJECT_VARS", "PREFECT_API_URL"):
        monkeypatch.delenv(key, raising=False)
    get_settings.cache_clear()
    from flows.sources import orders_extract

    try:
        with prefect_test_harness(server_startup_timeout=120):
            first = orders_extract()
            s = get_settings()
            # 3 full pages and the empty one that says there is no more
            assert first["tables"][0]["rows"] == 300 and first["tables"][0]["statements"] == 4
            assert first["load"]["rows_quarantined"] == 0 and first["load"]["watermark"]
            assert _mart(s) == _expected(orders_db)

            # At the source: paid orders shipped, a correction of amounts, cancellations,
            # an order moved to the previous day, new orders.
            later = datetime.now().replace(microsecond=0) - timedelta(minutes=5)
            with psycopg.connect(orders_db, autocommit=True) as con:
                con.execute(
                    "update public.orders set status = 'shipped', updated_at = %s where status = 'paid'",
                    [later],
                )
                con.execute(
                    "update public.orders set gross_amount = gross_amount + 1.11, updated_at = %s "
                    "where order_id between 'NS-0000010' and 'NS-0000019'",
                    [later],
                )
                con.execute(
                    "update public.orders set status = 'cancelled', updated_at = %s "
                    "where order_id between 'NS-0000020' and 'NS-0000024'",
                    [later],
                )
                con.execute(
                    "update public.orders set order_ts = order_ts - interval '1 day', updated_at = %s "
                    "where order_id = 'NS-0000030'",
                    [later],
                )
                # Deleted by the shop (soft delete): the order counts nothing any more.
                con.execute(
                    "update public.orders set deleted_at = %s, updated_at = %s "
                    "where order_id between 'NS-0000040' and 'NS-0000046'",
                    [later, later],
                )
                con.execute(
                    "insert into public.orders select 'NS-1' || order_id, store_id, channel, 'placed', "
                    "order_ts, %s, gross_amount, tax_amount, 0, null from public.orders where order_id < 'NS-0000005'",
                    [later],
                )
                changed = con.execute(
                    "select count(*) from public.orders where updated_at = %s", [later]
                ).fetchone()[0]
            second = orders_extract()
            assert second["tables"][0]["rows"] == changed  # one new version per changed order
            assert second["tables"][0]["watermark"] > first["tables"][0]["watermark"]
            assert _mart(s) == _expected(orders_db)
            third = orders_extract()  # nothing changed: no rows, no load
            assert third["tables"][0]["rows"] == 0 and third["load"] == {"load": None}
    finally:
        get_settings.cache_clear()
