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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pg_orders_table import ROWS, Sampler, change_one_percent, create_source, drop_source

from restate.engines import connect
from restate.settings import Settings
from sources.postgres import PostgresTable, extract

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
    name, dsn, setup_s = create_source()
    try:
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
            with connect(s) as engine, Sampler(dsn, "restate-extract") as seen:
                started = time.perf_counter()
                full = extract(s, engine, src, "orders")
                full_s = time.perf_counter() - started
            change_one_percent(dsn)
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
                        "seen_by_the_source": seen.report(),
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
        drop_source(name)


if __name__ == "__main__":
    main()
