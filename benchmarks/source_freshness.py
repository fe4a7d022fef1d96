"""Freshness from the order database to the mart: how long after an order changes in
PostgreSQL `fct_orders_daily` shows it, when the orders deployment's work (keyset
extract, then the incremental load of the Northstar project) runs back to back: the
floor. At the deployments' cadence the worst case adds the schedule's interval (15
minutes) to it. BENCH_FRESH_ORDERS orders (default 100,000), BENCH_FRESH_ROUNDS changes
(default 5), settle BENCH_FRESH_SETTLE_S (default 2 s; production default 60 s, which
adds to the floor one for one). Prints one JSON object; `make bench-freshness` runs it.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ADMIN = os.environ.get("BENCH_PG_ADMIN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
ORDERS = int(os.environ.get("BENCH_FRESH_ORDERS", "100000"))
ROUNDS = int(os.environ.get("BENCH_FRESH_ROUNDS", "5"))
SETTLE = float(os.environ.get("BENCH_FRESH_SETTLE_S", "2"))


def main() -> None:
    name = f"restate_fresh_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(ADMIN, autocommit=True)
    admin.execute(f'create database "{name}"')
    dsn = ADMIN.replace("dbname=postgres", f"dbname={name}")
    tmp = tempfile.mkdtemp()
    os.environ.update(
        {
            "RESTATE_DATA_DIR": tmp,
            "RESTATE_DBT_PROJECT_DIR": str(ROOT / "dbt" / "northstar"),
            "RESTATE_SODA_CONTRACTS_DIR": str(ROOT / "soda_checks" / "northstar"),
            "RESTATE_REFERENCE_EXPORTS": str(ROOT / "examples" / "northstar" / "reference_exports.yml"),
            "RESTATE_EXPLAINER": "",
            "RESTATE_DEMO": "",
            "RESTATE_LOOKBACK_HOURS": "72",
        }
    )
    from examples.northstar.generate import SOURCE_COLUMNS as COLUMNS
    from restate.actions import load_once
    from restate.engines import connect
    from restate.settings import apply_process_env, get_settings
    from sources.postgres import PostgresTable, extract

    try:
        start = datetime.now().replace(microsecond=0) - timedelta(days=3)
        with psycopg.connect(dsn, autocommit=True) as con:
            con.execute(
                """
                create table public.orders as
                select 'NS-' || lpad(i::text, 9, '0') as order_id, 'S' || (i %% 40) as store_id,
                       'web'::varchar as channel, 'paid'::varchar as status,
                       %s::timestamp - (i %% 48) * interval '1 hour' as order_ts,
                       %s::timestamp as updated_at,
                       round((100 + i %% 9000) / 10.0, 2)::numeric(18, 2) as gross_amount,
                       1.00::numeric(18, 2) as tax_amount, 0.00::numeric(18, 2) as refund_amount,
                       null::timestamp as deleted_at
                from generate_series(1, %s) i
                """,
                [start, start, ORDERS],
            )
            con.execute("alter table public.orders add primary key (order_id)")
            con.execute("create index on public.orders (updated_at, order_id)")
        s = get_settings()
        apply_process_env(s)
        src = PostgresTable(
            name="shop.orders",
            dsn=dsn,
            table="public.orders",
            columns=COLUMNS,
            cursor_column="updated_at",
            key_column="order_id",
            landed_at_column="order_ingested_at",
            page_size=5000,
            settle=timedelta(seconds=SETTLE),
        )

        mart_cell = "select gross_sales from analytics.fct_orders_daily where order_date = ? and store_id = ?"

        def run_once() -> tuple[float, float]:
            started = time.perf_counter()
            with connect(s) as engine:
                extract(s, engine, src, "orders")
            extracted = time.perf_counter()
            load_once(s)
            return extracted - started, time.perf_counter() - extracted

        initial = run_once()
        rounds = []
        for k in range(ROUNDS):
            order_id = f"NS-{k * 7919 % ORDERS + 1:09d}"
            with psycopg.connect(dsn, autocommit=True) as con:
                changed_at = con.execute(
                    "update public.orders set gross_amount = gross_amount + 1000, "
                    "updated_at = clock_timestamp() where order_id = %s returning order_ts::date, store_id",
                    [order_id],
                ).fetchone()
            t0 = time.perf_counter()
            with connect(s) as engine:
                before = engine.scalar(mart_cell, list(changed_at))
            runs = 0
            while True:
                runs += 1
                extract_s, load_s = run_once()
                with connect(s) as engine:
                    now = engine.scalar(mart_cell, list(changed_at))
                if now != before:
                    break
                time.sleep(0.2)
            seconds = round(time.perf_counter() - t0, 2)
            rounds.append(
                {
                    "seconds": seconds,
                    "runs": runs,
                    "extract_s": round(extract_s, 2),
                    "load_s": round(load_s, 2),
                }
            )
        floor = [r["seconds"] for r in rounds]
        print(
            json.dumps(
                {
                    "orders": ORDERS,
                    "settle_s": SETTLE,
                    "initial_extract_s": round(initial[0], 1),
                    "initial_load_s": round(initial[1], 1),
                    "rounds": rounds,
                    "floor_s": {"median": statistics.median(floor), "max": max(floor)},
                    "at_15_min_cadence_worst_s": round(900 + max(floor), 1),
                },
                indent=2,
            )
        )
    finally:
        admin.execute(f'drop database "{name}" with (force)')
        admin.close()


if __name__ == "__main__":
    main()
