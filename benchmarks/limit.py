"""Child: the engine's limit, i.e. the fastest single DuckDB statement for the corrected mart.

Runs with whichever interpreter starts it (the project's, or the SQLMesh
virtualenv's with its own DuckDB), so each tool is compared with the floor of its
own engine version. Imports only duckdb and the standard library.

Subcommands:
  raw     - dedupe + aggregate from the raw Parquet landing into a table (the floor
            for any tool that starts from raw files);
  agg     - aggregate from the deduplicated events table into a table (the floor
            for the step every tool actually runs: fct_revenue_daily from
            int_deduped_events);
  compare - every tool's output must equal the limit's table, or the benchmark fails.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import duckdb
from common import emit_result

# A raw row is valid exactly when stg_billing__events gives it no rejection_reason.
VALID = """
    event_id is not null and account_id is not null and event_ts is not null
    and event_type in ('invoice_paid', 'refund_issued')
    and amount is not null and cast(amount as decimal(18, 2)) > 0
    and upper(currency) in ('USD', 'EUR', 'GBP')
"""

# The mart's aggregation, shared by every variant: one row per event_date x account x currency.
AGGREGATE = """
select
    event_date, account_id, currency,
    cast(sum(case when event_type = 'invoice_paid' then amount else 0 end) as decimal(18, 2))
        as gross_revenue,
    cast(sum(case when event_type = 'refund_issued' then amount else 0 end) as decimal(18, 2))
        as refunds,
    cast(gross_revenue - refunds as decimal(18, 2)) as net_revenue,
    sum(case when event_type = 'invoice_paid' then 1 else 0 end) as invoice_count,
    sum(case when event_type = 'refund_issued' then 1 else 0 end) as refund_count,
    max(ingested_at) as last_ingested_at
from latest
group by event_date, account_id, currency
"""

# Typed projection of the raw rows (what staging computes, minus PII and lineage).
_TYPED = """
select cast(event_id as varchar) as event_id, account_id, event_type,
    cast(amount as decimal(18, 2)) as amount, upper(currency) as currency,
    cast(event_ts as date) as event_date, updated_at,
    coalesce(event_ingested_at, event_ts) as ingested_at
from read_parquet('{glob}', hive_partitioning = false)
where {valid}
"""

# Candidate statements for the raw floor; the fastest one is the limit.
RAW_VARIANTS = {
    # Window dedupe, the textbook form.
    "qualify_row_number": """
        create or replace table fct_revenue_daily as
        with typed as ({typed}),
        latest as (
            select * from typed
            qualify row_number() over (
                partition by event_id order by updated_at desc nulls last, ingested_at desc nulls last) = 1
        )
        {aggregate}
    """,
    # Hash-aggregate dedupe: every version of an event shares its account, type,
    # currency and date, so the latest amount is an arg_max over (updated_at, ingested_at).
    "arg_max": """
        create or replace table fct_revenue_daily as
        with typed as ({typed}),
        latest as (
            select event_id, account_id, event_type, currency, event_date,
                arg_max(amount, (updated_at, ingested_at)) as amount,
                max(ingested_at) as ingested_at
            from typed
            group by event_id, account_id, event_type, currency, event_date
        )
        {aggregate}
    """,
}

AGG_STATEMENT = """
    create or replace table fct_revenue_daily as
    with latest as (
        select * from deduped_events where event_type in ('invoice_paid', 'refund_issued')
    )
    {aggregate}
"""

COLUMNS = (
    "event_date, account_id, currency, gross_revenue, refunds, net_revenue, "
    "cast(invoice_count as bigint) as invoice_count, cast(refund_count as bigint) as refund_count, "
    "last_ingested_at"
)


def _connect(path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path))
    con.execute("set enable_progress_bar = false")
    return con


def _timed(con: duckdb.DuckDBPyConnection, sql: str) -> float:
    started = time.perf_counter()
    con.execute(sql)
    con.execute("checkpoint")
    return time.perf_counter() - started


def _export(con: duckdb.DuckDBPyConnection, out: str | None) -> int:
    if out:
        con.execute(f"copy (select {COLUMNS} from fct_revenue_daily) to '{out}' (format parquet)")
    row = con.execute("select count(*) from fct_revenue_daily").fetchone()
    return int(row[0]) if row else 0


def cmd_raw(args: argparse.Namespace) -> None:
    """Each variant `runs` times, each run into a fresh database file."""
    times: dict[str, list[float]] = {}
    rows = 0
    for run in range(args.runs):
        for name, template in RAW_VARIANTS.items():
            db = Path(args.workdir) / f"limit_raw_{name}.duckdb"
            db.unlink(missing_ok=True)
            con = _connect(db)
            sql = template.format(typed=_TYPED.format(glob=args.glob, valid=VALID), aggregate=AGGREGATE)
            times.setdefault(name, []).append(_timed(con, sql))
            if run == 0 and name == "qualify_row_number":
                rows = _export(con, args.out)
            con.close()
            db.unlink(missing_ok=True)
    emit_result({"duckdb": duckdb.__version__, "variants": times, "rows": rows, "threads": _threads()})


def cmd_agg(args: argparse.Namespace) -> None:
    """Aggregate floor: the deduplicated rows as a native table, then one statement."""
    db = Path(args.workdir) / "limit_agg.duckdb"
    times = []
    rows = 0
    for run in range(args.runs):
        db.unlink(missing_ok=True)
        con = _connect(db)
        con.execute(f"create table deduped_events as select * from read_parquet('{args.deduped}')")
        con.execute("checkpoint")
        times.append(_timed(con, AGG_STATEMENT.format(aggregate=AGGREGATE)))
        if run == 0:
            rows = _export(con, args.out)
        con.close()
    db.unlink(missing_ok=True)
    emit_result({"duckdb": duckdb.__version__, "variants": {"aggregate": times}, "rows": rows})


def _threads() -> int:
    row = duckdb.connect().execute("select current_setting('threads')").fetchone()
    return int(row[0]) if row else 0


def cmd_compare(args: argparse.Namespace) -> None:
    """Rows in one table and not the other (both ways), optionally within a scope."""
    con = duckdb.connect()
    where = f"where {args.where}" if args.where else ""
    exp = f"(select {COLUMNS} from read_parquet('{args.expected}') {where})"
    act = f"(select {COLUMNS} from read_parquet('{args.actual}') {where})"
    missing = con.execute(f"select count(*) from ({exp} except all {act})").fetchone()
    extra = con.execute(f"select count(*) from ({act} except all {exp})").fetchone()
    total = con.execute(f"select count(*) from {exp}").fetchone()
    emit_result(
        {
            "equal": bool(missing and extra and missing[0] == 0 and extra[0] == 0),
            "rows_missing": missing[0] if missing else None,
            "rows_extra": extra[0] if extra else None,
            "rows_expected": total[0] if total else None,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    raw = sub.add_parser("raw")
    raw.add_argument("--glob", required=True)
    raw.add_argument("--workdir", required=True)
    raw.add_argument("--runs", type=int, default=3)
    raw.add_argument("--out")
    agg = sub.add_parser("agg")
    agg.add_argument("--deduped", required=True)
    agg.add_argument("--workdir", required=True)
    agg.add_argument("--runs", type=int, default=3)
    agg.add_argument("--out")
    cmp_ = sub.add_parser("compare")
    cmp_.add_argument("--expected", required=True)
    cmp_.add_argument("--actual", required=True)
    cmp_.add_argument("--where")
    args = parser.parse_args()
    {"raw": cmd_raw, "agg": cmd_agg, "compare": cmd_compare}[args.cmd](args)


if __name__ == "__main__":
    main()
