"""A restatement keeps its warehouse session from one chunk to the next (opening and
closing a DuckDB file per chunk cost more than a small chunk's SQL), yet a process that
waits for the file (a 15-minute load) still gets in between two chunks: the runner hands
the file back as soon as someone waits. Real processes, a real DuckDB file, real dbt."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import date, datetime
from pathlib import Path

import pytest

from restate.actions import create_plan, load_once
from restate.dbt.distributed import release_warehouse
from restate.engines.duckdb import DuckDBEngine
from restate.plan.plans import PlanRequest
from restate.settings import PROJECT_ROOT
from restate.state.clock import utc_now
from tests.conftest import land, make_settings

pytestmark = pytest.mark.slow

RUN = textwrap.dedent(
    """
    import sys
    from restate.actions import run_restatement
    from restate.settings import get_settings

    def progress(done, total, result):
        print("chunk", done, total, flush=True)

    run_restatement(get_settings(), int(sys.argv[1]), on_chunk=progress)
    print("finished", flush=True)
    """
)


def test_a_waiting_load_gets_in_between_two_chunks_of_a_restatement(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "wh", chunk_days=1)
    land(s, None, datetime(2026, 10, 20))
    load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
    plan = create_plan(
        s, PlanRequest("fct_revenue_daily+", date(2026, 8, 1), date(2026, 9, 29), "refund bug", "ana")
    )
    assert len(plan.chunks) == 60
    release_warehouse(s)  # dbt's handle in this process, from the load: the run needs the file
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "RESTATE_DATA_DIR": str(s.data_dir),
        "RESTATE_CHUNK_DAYS": "1",
    }
    env.pop("RESTATE_DUCKDB_PATH", None)
    run = subprocess.Popen(
        [sys.executable, "-c", RUN, str(plan.restatement_id)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert run.stdout is not None
    seen: list[str] = []
    try:
        for line in run.stdout:  # until the templates run (after the first chunks)
            seen.append(line.strip())
            if line.startswith("chunk 3 "):
                break
        # The load: waits for the file (the run holds it), says so, gets in, writes.
        load = DuckDBEngine(s.warehouse_path, wait_s=120)
        load.execute("create table if not exists main.load_marks (written_at timestamp)")
        load.execute("insert into main.load_marks values (?)", [utc_now()])  # the meta schema's clock
        load.close()
        assert run.poll() is None, "the restatement had ended before the load got in"
        after = [line.strip() for line in run.stdout]
        assert run.wait(timeout=120) == 0
    finally:
        if run.poll() is None:
            run.kill()
    assert after[-1] == "finished"
    engine = DuckDBEngine(s.warehouse_path)
    try:
        done = engine.scalar(
            f"select count(*) from {s.meta_schema}.restatement_partitions "
            "where restatement_id = ? and status = 'done'",
            [plan.restatement_id],
        )
        assert done == 60
        # Chunks were recomputed after the load wrote: it did not wait for the chunks to end.
        later = engine.scalar(
            f"select count(*) from {s.meta_schema}.restatement_partitions where restatement_id = ? "
            "and finished_at > (select max(written_at) from main.load_marks)",
            [plan.restatement_id],
        )
        assert later >= 1, "the load got in only after every chunk was done"
    finally:
        engine.close()
