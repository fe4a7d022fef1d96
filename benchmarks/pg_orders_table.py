"""The orders table both extraction benchmarks read: BENCH_PG_ROWS rows in a database
created for the run (127.0.0.1:5432), keyed and indexed on (updated_at, order_id); and
what the source sees of an extractor, sampled from pg_stat_activity."""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Any

import psycopg

ADMIN = os.environ.get("BENCH_PG_ADMIN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
ROWS = int(os.environ.get("BENCH_PG_ROWS", "1000000"))


def create_source() -> tuple[str, str, float]:
    """A new database holding public.orders; its name, DSN and the seconds it took."""
    name = f"restate_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'create database "{name}"')
    dsn = ADMIN.replace("dbname=postgres", f"dbname={name}")
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as con:
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
    return name, dsn, time.perf_counter() - started


def change_one_percent(dsn: str) -> int:
    """1% of the orders paid, with a later updated_at; the number changed."""
    changed = ROWS // 100
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(
            "update public.orders set status = 'paid', updated_at = timestamp '2026-06-01' "
            "where order_id in (select order_id from public.orders order by order_id limit %s)",
            [changed],
        )
    return changed


def drop_source(name: str) -> None:
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'drop database "{name}" with (force)')


class Sampler:
    """Statements of one application seen active in pg_stat_activity, with durations."""

    def __init__(self, dsn: str, application: str) -> None:
        self.dsn, self.application = dsn, application
        self.seen: dict[tuple[int, Any], dict[str, Any]] = {}
        self.transactions: dict[tuple[int, Any], float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as con:
            while not self.stop.is_set():
                rows = con.execute(
                    "select pid, state, query_start, clock_timestamp() - query_start, left(query, 160), "
                    "xact_start, clock_timestamp() - xact_start "
                    "from pg_stat_activity where application_name = %s",
                    [self.application],
                ).fetchall()
                for pid, state, started, running, query, xact_start, in_xact in rows:
                    if state == "active":
                        entry = self.seen.setdefault((pid, started), {"query": query, "ms": 0.0})
                        entry["ms"] = max(entry["ms"], running.total_seconds() * 1000)
                    if xact_start is not None:
                        key = (pid, xact_start)
                        self.transactions[key] = max(
                            self.transactions.get(key, 0.0), in_xact.total_seconds() * 1000
                        )
                time.sleep(0.002)

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def report(self) -> dict[str, Any]:
        longest = max(self.seen.values(), key=lambda e: e["ms"], default={"ms": 0.0, "query": None})
        return {
            "statements_seen": len(self.seen),
            "longest_statement_ms": round(longest["ms"], 1),
            "longest_statement": longest["query"],
            "transactions_seen": len(self.transactions),
            "longest_transaction_ms": round(max(self.transactions.values(), default=0.0), 1),
        }
