"""Child: the same mart as a dbt microbatch model, backfilled with --event-time-start/-end.

Uses the project's installed dbt-duckdb. It does less than restate: it writes
straight into the production table (no isolated schema, no checks, no diff, no
archive), one delete+insert per day.

Subcommands:
  setup - copy the deduplicated events in and build the table with the buggy v1 logic;
  run   - the timed backfill with the fixed v2 logic, then export the table.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from common import BENCH_DIR, emit_result

IMPORT_STARTED = time.perf_counter()
import duckdb  # noqa: E402
from dbt.cli.main import dbtRunner  # noqa: E402

IMPORT_S = time.perf_counter() - IMPORT_STARTED
PROJECT = BENCH_DIR / "microbatch"


def dbt_backfill(db: Path, workdir: Path, start: str, end: str, logic: str) -> dict[str, Any]:
    """One `dbt run` of the microbatch model over [start, end), in process."""
    os.environ["BENCH_MICROBATCH_DUCKDB"] = str(db)
    args = [
        "run",
        "--select",
        "fct_revenue_daily",
        "--event-time-start",
        start,
        "--event-time-end",
        end,
        "--vars",
        json.dumps({"revenue_logic": logic}),
        "--project-dir",
        str(PROJECT),
        "--profiles-dir",
        str(PROJECT),
        "--target-path",
        str(workdir / "target"),
        "--log-path",
        str(workdir / "logs"),
        "--quiet",
        "--no-use-colors",
    ]
    started = time.perf_counter()
    res = dbtRunner().invoke(args)
    wall = time.perf_counter() - started
    if not res.success:
        raise SystemExit(f"dbt microbatch run failed: {res.exception or res.result}")
    results = getattr(res.result, "results", None) or []
    batches = sum(len(getattr(r, "batch_results", None).successful or []) for r in results if r)
    sql = sum(float(r.execution_time or 0.0) for r in results)
    return {"total_s": wall, "node_s": sql, "batches": batches}


def cmd_setup(args: argparse.Namespace) -> None:
    args.db.unlink(missing_ok=True)
    con = duckdb.connect(str(args.db))
    con.execute("create schema raw")
    con.execute(f"create table raw.deduped_events as select * from read_parquet('{args.deduped}')")
    con.close()
    out = dbt_backfill(args.db, args.workdir, args.start, args.end, "v1")
    emit_result({"setup": out, "import_s": IMPORT_S})


def cmd_run(args: argparse.Namespace) -> None:
    out = dbt_backfill(args.db, args.workdir, args.start, args.end, "v2")
    con = duckdb.connect(str(args.db))
    con.execute(f"copy (select * from analytics.fct_revenue_daily) to '{args.out}' (format parquet)")
    con.close()
    emit_result({**out, "import_s": IMPORT_S, "duckdb": duckdb.__version__})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("cmd", choices=["setup", "run"])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--deduped")
    parser.add_argument("--start", required=True)
    parser.add_argument("--end", required=True)
    parser.add_argument("--out")
    args = parser.parse_args()
    {"setup": cmd_setup, "run": cmd_run}[args.cmd](args)


if __name__ == "__main__":
    main()
