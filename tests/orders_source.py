"""A Northstar orders table in a real PostgreSQL database (127.0.0.1:5432), declared as a
restate source, and fct_orders_daily computed from that table itself, independently of
dbt and of the landing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from examples.northstar.generate import SOURCE_COLUMNS

ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
COLUMNS = SOURCE_COLUMNS


@contextmanager
def orders_database() -> Iterator[str]:
    """A new database holding an empty `public.orders` with its keyset index; its DSN."""
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


def sources_file(path: Path, page_size: int = 100, settle_s: float = 1) -> Path:
    """The sources file declaring the table (its DSN read from ORDERS_DSN)."""
    path.write_text(
        "postgres:\n"
        "  - name: shop.orders\n"
        "    dsn: ${ORDERS_DSN}\n"
        "    table: public.orders\n"
        "    folder: orders\n"
        "    cursor_column: updated_at\n"
        "    key_column: order_id\n"
        "    landed_at_column: order_ingested_at\n"
        f"    page_size: {page_size}\n"
        f"    settle_s: {settle_s}\n"
        f"    columns: {COLUMNS}\n"
    )
    return path


def expected_daily(dsn: str, refund_logic: str = "v2") -> dict[tuple[Any, str], tuple[Any, ...]]:
    """fct_orders_daily from the source table: a cancelled order is no sale, a deleted one
    counts nothing; v1 (the historical bug) also subtracts a cancelled order's refund.
    Partitions whose figures are all zero are left out (the mart may hold zeros there)."""
    cancelled_refund = "refund_amount" if refund_logic == "v1" else "0"
    with psycopg.connect(dsn) as con:
        rows = con.execute(
            f"""
            select order_ts::date, store_id,
                   count(*) filter (where status <> 'cancelled'),
                   coalesce(sum(gross_amount) filter (where status <> 'cancelled'), 0),
                   sum(case when status = 'cancelled' then {cancelled_refund} else refund_amount end),
                   coalesce(sum(tax_amount) filter (where status <> 'cancelled'), 0)
            from public.orders where deleted_at is null group by 1, 2
            """
        ).fetchall()
    out = {}
    for day, store, orders, gross, refunds, tax in rows:
        figures = (orders, gross, refunds, tax, gross - refunds)
        if any(figures):
            out[(day, store)] = figures
    return out


def mart_rows(rows: list[tuple[Any, ...]]) -> dict[tuple[Any, str], tuple[Any, ...]]:
    """(order_date, store_id, orders, gross_sales, refunds, tax, net_sales) rows keyed like
    expected_daily, to the cent, all-zero partitions left out."""
    out = {}
    for day, store, orders, *amounts in rows:
        figures = (orders, *(Decimal(str(v)).quantize(Decimal("0.01")) for v in amounts))
        if any(figures):
            out[(day, store)] = figures
    return out
