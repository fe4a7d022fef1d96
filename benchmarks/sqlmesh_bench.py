"""Child (SQLMesh's own virtualenv): the same mart restated with `sqlmesh plan --restate-model`.

SQLMesh versions a model by its code, so the fix is applied the SQLMesh way for a
history correction in place: the model is built with the buggy v1 logic, the v2
logic is applied as a forward-only change (same physical table, no backfill), and
the timed step restates the period, which recomputes every interval with v2:

    sqlmesh plan --restate-model analytics.fct_revenue_daily --start S --end E --auto-apply

Subcommands: setup (untimed: data, v1 build, forward-only v2) and run (timed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path
from typing import Any

from common import BENCH_DIR, emit_result

IMPORT_STARTED = time.perf_counter()
import duckdb  # noqa: E402
from sqlmesh.cli.main import cli  # noqa: E402

IMPORT_S = time.perf_counter() - IMPORT_STARTED
TEMPLATE = BENCH_DIR / "sqlmesh_project"
MODEL = "analytics.fct_revenue_daily"
MODEL_FILE = Path("models") / "fct_revenue_daily.sql"
V2 = "CAST(gross_revenue - refunds AS DECIMAL(18, 2)) AS net_revenue, /* revenue_logic: v2 */"
V1 = "CAST(gross_revenue AS DECIMAL(18, 2)) AS net_revenue, /* revenue_logic: v1 */"


def sqlmesh(project: Path, *args: str) -> float:
    """One sqlmesh CLI command, in process (the import is paid once, outside the timing)."""
    started = time.perf_counter()
    try:
        cli.main(args=["--paths", str(project), *args], standalone_mode=False)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    return time.perf_counter() - started


def write_logic(project: Path, logic: str) -> None:
    text = (TEMPLATE / MODEL_FILE).read_text()
    if V2 not in text:
        raise SystemExit(f"{MODEL_FILE} no longer contains the v2 net_revenue line")
    (project / MODEL_FILE).write_text(text if logic == "v2" else text.replace(V2, V1))


def cmd_setup(args: argparse.Namespace) -> None:
    if args.project.exists():
        shutil.rmtree(args.project)
    shutil.copytree(TEMPLATE, args.project, ignore=shutil.ignore_patterns("__pycache__", ".cache"))
    args.db.unlink(missing_ok=True)
    con = duckdb.connect(str(args.db))
    con.execute("create schema raw")
    con.execute(f"create table raw.deduped_events as select * from read_parquet('{args.deduped}')")
    con.close()
    write_logic(args.project, "v1")
    first = sqlmesh(args.project, "plan", "--auto-apply", "--no-prompts")
    write_logic(args.project, "v2")
    forward = sqlmesh(args.project, "plan", "--forward-only", "--auto-apply", "--no-prompts")
    emit_result({"v1_build_s": first, "forward_only_s": forward, "import_s": IMPORT_S})


def cmd_run(args: argparse.Namespace) -> None:
    total = sqlmesh(
        args.project,
        "plan",
        "--restate-model",
        MODEL,
        "--start",
        args.start,
        "--end",
        args.end,
        "--auto-apply",
        "--no-prompts",
    )
    con = duckdb.connect(str(args.db))
    con.execute(f"copy (select * from {MODEL}) to '{args.out}' (format parquet)")
    con.close()
    out: dict[str, Any] = {"total_s": total, "import_s": IMPORT_S, "duckdb": duckdb.__version__}
    emit_result(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("cmd", choices=["setup", "run"])
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--deduped")
    parser.add_argument("--start")
    parser.add_argument("--end")
    parser.add_argument("--out")
    args = parser.parse_args()
    os.environ["BENCH_SQLMESH_DUCKDB"] = str(args.db)
    {"setup": cmd_setup, "run": cmd_run}[args.cmd](args)


if __name__ == "__main__":
    main()
