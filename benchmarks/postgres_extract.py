"""The load restate's extractor puts on a PostgreSQL source: statements, rows per
statement, the longest statement, against an orders table of BENCH_PG_ROWS rows
(default 1,000,000) on 127.0.0.1:5432; then an incremental run after 1% of the rows
changed. Prints one JSON object; `make bench-extract` runs it.

The source database is created for the run and dropped afterwards.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from restate.engines import connect
from restate.settings import Settings
from sources.postgres import PostgresTable, extract

ADMIN = os.environ.get("BENCH_PG_ADMIN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
ROWS = int(os.environ.get("BENCH_PG_ROWS", "1000000"))
PAGE = int(os.environ.get("BENCH_PG_PAGE", "5000"))
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


def main() -> None:
    name = f"restate_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(ADMIN, autocommit=True)
    admin.execute(f'create database "{name}"')
    dsn = ADMIN.replace("dbname=postgres", f"dbname={name}")
    try:
        with psycopg.connect(dsn, autocommit=True) as con:
            started = time.perf_counter()
            con.execute(
                """
                create table public.orders as
                select 'NS-' || lpad(i::text, 9, '0') as order_id, 'S' || (i %% 40) as store_id,
                       'placed'::varchar as status,
                       timestamp '2026-01-01' + (i %% 300) * interval '1 day' as order_ts,
                       timestamp '2026-01-01' + (i / 3) * interval '1 second' as updated_at,
                       round((i %% 10000) / 100.0, 2)::numeric(18, 2) as gross_amount,
                       null::timestamp as deleted_at
                from generate_series(1, %s) i
                """,
                [ROWS],
            )
            con.execute("alter table public.orders add primary key (order_id)")
            con.execute("create index on public.orders (updated_at, order_id)")
            con.execute("analyze public.orders")
            setup_s = time.perf_counter() - started
        src = PostgresTable(
            name="bench.orders",
            dsn=dsn,
            table="public.orders",
            columns=COLUMNS,
            cursor_column="updated_at",
            key_column="order_id",
            landed_at_column="order_ingested_at",
            page_size=PAGE,
        )
        with tempfile.TemporaryDirectory() as tmp:
            s = Settings(data_dir=Path(tmp))  # type: ignore[call-arg]
            with connect(s) as engine:
                started = time.perf_counter()
                full = extract(s, engine, src, "orders")
                full_s = time.perf_counter() - started
            changed = ROWS // 100
            with psycopg.connect(dsn, autocommit=True) as con:
                con.execute(
                    "update public.orders set status = 'paid', updated_at = timestamp '2026-06-01' "
                    "where order_id in (select order_id from public.orders order by order_id limit %s)",
                    [changed],
                )
            with connect(s) as engine:
                started = time.perf_counter()
                incremental = extract(s, engine, src, "orders")
                incremental_s = time.perf_counter() - started
        print(
            json.dumps(
                {
                    "source_rows": ROWS,
                    "page_size": PAGE,
                    "setup_s": round(setup_s, 1),
                    "full": {
                        "rows": full.rows,
                        "statements": full.statements,
                        "max_rows_per_statement": full.max_rows_per_statement,
                        "longest_statement_ms": round(full.longest_statement_ms, 1),
                        "seconds": round(full_s, 1),
                        "rows_per_s": round(full.rows / full_s),
                    },
                    "incremental_after_1pct_changed": {
                        "rows": incremental.rows,
                        "statements": incremental.statements,
                        "longest_statement_ms": round(incremental.longest_statement_ms, 1),
                        "seconds": round(incremental_s, 2),
                    },
                },
                indent=2,
            )
        )
    finally:
        admin.execute(f'drop database "{name}" with (force)')
        admin.close()


if __name__ == "__main__":
    main()
