"""SIGKILL `restate run` mid-recompute; the rerun (as a Prefect flow run) recomputes only
unfinished chunks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import pytest

from restate.actions import create_plan
from restate.engines import connect
from restate.plan.plans import PlanRequest
from tests.conftest import land, make_settings, table_rows

pytestmark = pytest.mark.slow


def _run(env: dict[str, str], rid: int, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "interfaces.cli", "run", str(rid), *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _attempts(s, rid: int) -> dict[str, tuple[str, int]]:
    with connect(s) as e:
        rows = e.query(
            f"select chunk_id, status, attempts from {s.meta_schema}.restatement_partitions "
            "where restatement_id = ?",
            [rid],
        )
    return {r[0]: (r[1], r[2]) for r in rows}


def test_kill_and_rerun_recomputes_only_unfinished_chunks(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "wh", chunk_days=10)
    land(s, None, datetime(2026, 10, 20))
    env = {
        **os.environ,
        "RESTATE_DATA_DIR": str(s.data_dir),
        "RESTATE_CHUNK_DAYS": "10",
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "COLUMNS": "200",
        "PYTHONUNBUFFERED": "1",
    }
    (tmp_path / "prefect").mkdir()
    # Setup runs in subprocesses too: dbt keeps the DuckDB file open in the process
    # that ran it, and DuckDB allows one writing process per file.
    cli = [sys.executable, "-m", "interfaces.cli"]
    subprocess.run([*cli, "load"], env={**env, "RESTATE_PROJECT_VARS": '{"revenue_logic": "v1"}'}, check=True)
    subprocess.run(
        [
            *cli,
            "plan",
            "-s",
            "fct_revenue_daily+",
            "--start",
            "2026-08-01",
            "--end",
            "2026-10-31",
            "--reason",
            "bug",
            "--requested-by",
            "ana",
        ],
        env=env,
        check=True,
    )
    with connect(s) as e:
        from restate.plan.plans import load_plan

        plan = load_plan(e, s, 1)
    total = len(plan.chunks)
    assert total >= 9
    proc = _run(env, plan.restatement_id)
    done_lines = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("chunk ") and line.rstrip().endswith(" done"):
            done_lines += 1
            if done_lines == 3:
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait(timeout=60)
    before = _attempts(s, plan.restatement_id)
    finished = sum(1 for status, _ in before.values() if status == "done")
    assert 3 <= finished < total
    # The killed process is gone: status says so and how to resume, never "running".
    import json

    shown = subprocess.run(
        [*cli, "status", "1", "--json"], env=env, capture_output=True, text=True, check=True
    )
    state = json.loads(shown.stdout)
    left_running = sum(1 for status, _ in before.values() if status == "running")
    assert state["chunks_running"] == 0 and state.get("chunks_interrupted", 0) == left_running, state
    assert not state["phase"].startswith("running"), state["phase"]
    assert state["phase"].endswith(f"(resume: restate run {plan.restatement_id})"), state["phase"]

    # Killed in its own process (the default), resumed as a Prefect flow run: both paths
    # run the same sequence and decide reuse from the warehouse's chunk rows.
    rerun = _run(env, plan.restatement_id, "--prefect")
    out, _ = rerun.communicate(timeout=600)
    # run exits 1 when the validation it ran failed (partial landing: finance disagrees).
    assert "recomputed" in out and rerun.returncode == (0 if "validation passed" in out else 1), out
    after = _attempts(s, plan.restatement_id)
    recomputed = sum(after[c][1] - before[c][1] for c in after)
    assert recomputed == total - finished
    assert all(status == "done" for status, _ in after.values())

    # Same tables as an uninterrupted run of the same plan.
    clean = create_plan(
        s, PlanRequest("fct_revenue_daily+", date(2026, 8, 1), date(2026, 10, 31), "bug", "ana")
    )
    from restate.actions import finish_run, run_chunk, start_run

    start_run(s, clean.restatement_id)
    for c in clean.chunks:
        run_chunk(s, clean.restatement_id, c.chunk_id)
    finish_run(s, clean.restatement_id)
    with connect(s) as e:
        resumed = table_rows(e.con, f"select * from restate_{plan.restatement_id}.fct_revenue_daily")
        uninterrupted = table_rows(e.con, f"select * from restate_{clean.restatement_id}.fct_revenue_daily")
    assert resumed == uninterrupted and len(resumed) > 0
