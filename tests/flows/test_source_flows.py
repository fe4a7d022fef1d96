"""The source deployments' flows as Prefect flow runs (real temporary Prefect server):
Northstar orders from a real PostgreSQL into the Northstar marts, inserted and then
updated and deleted at the source (status changes, amount corrections, an order moved
to another day, soft deletes), each run reporting rows and the watermark; the mart equals an independent
computation from the source table, to the cent. Then the payments journal lands through
its flow and the cross-system table sees it. (All three systems from their real servers
through the CLI: tests/examples/test_northstar_sources_end_to_end.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from restate.engines import connect
from restate.settings import PROJECT_ROOT, Settings, get_settings
from tests.orders_source import expected_daily, mart_rows, orders_database, sources_file

pytestmark = pytest.mark.slow


@pytest.fixture
def orders_db() -> Iterator[str]:
    with orders_database() as dsn:
        yield dsn


def _mart(settings: Settings) -> dict[tuple, tuple]:
    with connect(settings) as e:
        return mart_rows(
            e.query(
                "select order_date, store_id, orders, gross_sales, refunds, tax, net_sales "
                "from analytics.fct_orders_daily"
            )
        )


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
    sources = sources_file(tmp_path / "sources.yml")
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
    from flows.sources import orders_extract, payments_land
    from sources.stripe_webhooks import Journal, payment_event

    try:
        with prefect_test_harness(server_startup_timeout=120):
            first = orders_extract()
            s = get_settings()
            # 3 full pages and the empty one that says there is no more
            assert first["tables"][0]["rows"] == 300 and first["tables"][0]["statements"] == 4
            assert first["load"]["rows_quarantined"] == 0 and first["load"]["watermark"]
            assert _mart(s) == expected_daily(orders_db)

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
            assert _mart(s) == expected_daily(orders_db)
            third = orders_extract()  # nothing changed: no rows, no load
            assert third["tables"][0]["rows"] == 0 and third["load"]["load"] is None

            # The payment provider's events (received earlier by the webhook receiver;
            # tests/sources/test_payment_webhooks.py) land through their flow: the orders
            # landing holds nothing new, so the models joining the systems are rebuilt.
            journal = Journal(s.webhook_journal_path)
            try:
                for n in range(3):
                    journal.record(
                        payment_event(
                            {
                                "id": f"evt_{n}",
                                "type": "charge.succeeded",
                                "created": int(later.timestamp()),
                                "data": {"object": {"id": f"pi_{n}", "amount": 1000 + n, "currency": "usd",
                                                    "metadata": {"order_id": f"NS-000000{n}"}}},
                            }
                        )
                    )  # fmt: skip
            finally:
                journal.close()
            paid = payments_land()
            assert paid["webhooks"]["rows"] == 3 and paid["load"]["rebuilt"] > 0
            with connect(s) as e:
                charged = e.query(
                    "select order_id, charged from analytics.int_order_crosscheck where charged is not null "
                    "order by order_id"
                )
            assert charged == [(f"NS-000000{n}", Decimal(1000 + n) / 100) for n in range(3)]
            assert payments_land()["load"] == {"load": None}  # nothing new in the journal
    finally:
        get_settings.cache_clear()
