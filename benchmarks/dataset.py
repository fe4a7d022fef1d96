"""Child: the one generated data set every tool reads, and the buggy production it starts from.

Subcommands (each its own process, so no DuckDB file stays open between steps):
  generate  - raw Parquet landing + finance exports for 14 months (all rows landed);
  slices    - a second landing cut at T0 plus N 15-minute slices after it (freshness);
  export    - the production int_deduped_events as Parquet: the input every other
              tool's fct_revenue_daily reads, so all of them aggregate the same rows.
"""

from __future__ import annotations

import argparse
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
from common import emit_result, stopwatch

from examples.billing.generate import GenerateSpec, generate

END_DATE = date(2026, 10, 31)
SLICE = timedelta(minutes=15)


def spec_for(months: int, accounts: int, events_per_day: int, **window: datetime | None) -> GenerateSpec:
    return GenerateSpec(
        end_date=END_DATE, months=months, accounts=accounts, events_per_day=events_per_day, **window
    )


def cmd_generate(args: argparse.Namespace) -> None:
    spec = spec_for(args.months, args.accounts, args.events_per_day)
    con = duckdb.connect()
    con.execute("set enable_progress_bar = false")
    with stopwatch() as elapsed:
        res = generate(spec, args.landing, args.finance, con)
    files = list(Path(args.landing, "events").glob("*/*.parquet"))
    emit_result(
        {
            "rows_landed": res.rows_landed,
            "period_start": spec.start_date,
            "period_end": spec.end_date,
            "days": spec.days,
            "files": len(files),
            "landing_mb": round(sum(f.stat().st_size for f in files) / 2**20, 1),
            "seconds": round(elapsed(), 2),
        }
    )


def cmd_slices(args: argparse.Namespace) -> None:
    """Land everything processed up to T0, then stage each 15-minute slice after it."""
    t0 = datetime.fromisoformat(args.t0)
    con = duckdb.connect()
    con.execute("set enable_progress_bar = false")
    scratch_finance = Path(args.slices) / "_finance"
    base = generate(
        spec_for(args.months, args.accounts, args.events_per_day, ingested_until=t0),
        args.landing,
        args.finance,
        con,
    )
    sizes = []
    for k in range(args.count):
        after, until = t0 + k * SLICE, t0 + (k + 1) * SLICE
        out = Path(args.slices) / f"slice_{k:02d}"
        res = generate(
            spec_for(
                args.months, args.accounts, args.events_per_day, ingested_after=after, ingested_until=until
            ),
            out,
            scratch_finance,
            con,
        )
        sizes.append(res.rows_landed)
    shutil.rmtree(scratch_finance, ignore_errors=True)
    emit_result({"rows_until_t0": base.rows_landed, "slice_rows": sizes, "t0": t0})


def cmd_export(args: argparse.Namespace) -> None:
    con = duckdb.connect(args.warehouse, read_only=True)
    con.execute("set enable_progress_bar = false")
    con.execute(f"copy (select * from {args.schema}.int_deduped_events) to '{args.out}' (format parquet)")
    rows = con.execute(f"select count(*) from read_parquet('{args.out}')").fetchone()
    emit_result({"deduped_rows": rows[0] if rows else 0})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("generate", "slices"):
        p = sub.add_parser(name)
        p.add_argument("--landing", required=True)
        p.add_argument("--finance", required=True)
        p.add_argument("--months", type=int, default=14)
        p.add_argument("--accounts", type=int, default=500)
        p.add_argument("--events-per-day", type=int, default=2000)
    slices = sub.choices["slices"]
    slices.add_argument("--slices", required=True)
    slices.add_argument("--t0", required=True)
    slices.add_argument("--count", type=int, default=6)
    exp = sub.add_parser("export")
    exp.add_argument("--warehouse", required=True)
    exp.add_argument("--schema", default="analytics")
    exp.add_argument("--out", required=True)
    args = parser.parse_args()
    {"generate": cmd_generate, "slices": cmd_slices, "export": cmd_export}[args.cmd](args)


if __name__ == "__main__":
    main()
