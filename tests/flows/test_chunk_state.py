"""The warehouse's own partition rows decide whether a chunk is reused, never a Prefect
cache kept somewhere else: restoring the warehouse from a copy taken right after planning
and running the same plan again recomputes it. The CLI keeps Prefect's state under the
tool's state folder, not ~/.prefect."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import pytest

from restate.engines import connect
from restate.partitions.recompute import chunk_cache_key
from restate.plan.plans import Plan
from tests.conftest import land, make_settings

pytestmark = pytest.mark.slow


def _attempts(s, rid: int) -> dict[str, tuple[str, int]]:
    with connect(s) as e:
        rows = e.query(
            f"select chunk_id, status, attempts from {s.meta_schema}.restatement_partitions "
            "where restatement_id = ?",
            [rid],
        )
    return {r[0]: (r[1], r[2]) for r in rows}


def test_restored_warehouse_recomputes_instead_of_trusting_a_cache(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "wh")
    land(s)  # everything: the restated month then agrees with finance (validation passes)
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RESTATE_"))}
    env.update(
        {
            "HOME": str(home),  # where ~/.prefect would go
            "RESTATE_DATA_DIR": str(s.data_dir),
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "600",
            "COLUMNS": "200",
        }
    )
    cli = [sys.executable, "-m", "interfaces.cli"]

    def restate(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cli, *args], env={**env, **extra}, capture_output=True, text=True, timeout=1500
        )

    assert restate("load", RESTATE_PROJECT_VARS='{"revenue_logic": "v1"}').returncode == 0
    planned = restate(
        "plan", "-s", "fct_revenue_daily+", "--start", "2026-09-01", "--end", "2026-09-30",
        "--reason", "refund bug", "--requested-by", "ana",
    )  # fmt: skip
    assert planned.returncode == 0, planned.stdout + planned.stderr
    copy = tmp_path / "after_plan.duckdb"
    shutil.copy(s.warehouse_path, copy)

    first = restate("run", "1")
    assert first.returncode == 0, first.stdout + first.stderr
    # In its own process: no Prefect server was started, none was needed.
    assert "temporary server" not in first.stdout + first.stderr
    assert not (s.state_dir / "prefect" / "prefect.db").exists()
    assert all(st == ("done", 1) for st in _attempts(s, 1).values())

    shutil.copy(copy, s.warehouse_path)  # the warehouse restored from the copy
    assert all(st == ("pending", 0) for st in _attempts(s, 1).values())
    second = restate("run", "1", "--prefect")  # as a flow run on a temporary Prefect server
    assert second.returncode == 0, second.stdout + second.stderr
    assert "chunks are not done" not in second.stdout + second.stderr
    after = _attempts(s, 1)
    assert after and all(st == ("done", 1) for st in after.values()), after  # recomputed here
    with connect(s) as e:
        assert e.scalar("select count(*) from restate_1.fct_revenue_daily") > 0

    # Prefect's home (its database, results) lives in the tool's state folder.
    assert not (home / ".prefect").exists()
    assert (s.state_dir / "prefect" / "prefect.db").is_file()


def test_chunk_cache_key_covers_accounts_and_bucket() -> None:
    def plan(accounts: list[str] | None) -> Plan:
        from restate.plan.plans import Chunk

        return Plan(
            restatement_id=1,
            selector="fct_revenue_daily+",
            models=["fct_revenue_daily"],
            follow_views=[],
            period_start=date(2026, 9, 1),
            period_end=date(2026, 9, 30),
            accounts=accounts,
            reason="r",
            ticket=None,
            requested_by="ana",
            chunks=[
                Chunk("c1", date(2026, 9, 1), date(2026, 9, 30), 0, 2),
                Chunk("c2", date(2026, 9, 1), date(2026, 9, 30), 1, 2),
            ],
            exposures=[],
            estimate={},
            requires_approval=False,
            code_version={"fct_revenue_daily": "abc"},
            source_watermark=datetime(2026, 10, 20),
        )

    keys = {
        chunk_cache_key(plan(None), "c1"),
        chunk_cache_key(plan(["a1"]), "c1"),
        chunk_cache_key(plan(["a2"]), "c1"),
        chunk_cache_key(plan(["a1", "a2"]), "c1"),
    }
    assert len(keys) == 4
    first, second = plan(None), plan(None)
    second.chunks[0] = second.chunks[1].__class__("c1", date(2026, 9, 1), date(2026, 9, 30), 1, 2)
    assert chunk_cache_key(first, "c1") != chunk_cache_key(second, "c1")  # same id, other bucket
