"""One warehouse session per CLI command: the whole lifecycle on a real DuckDB file and
real dbt, counting every session the tool opens (DuckDB connections restate itself opens;
dbt-duckdb's own handle is dbt's).

`restate run` is the one exception, by design: the chunks run on a worker thread with its
own session, and the command hands its session back while the chunks run so that another
process's 15-minute load can write between chunks (DuckDB allows one writing process;
tests/restate/test_load_between_chunks.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from interfaces.cli import app
from restate.actions import load_once
from restate.engines.duckdb import DuckDBEngine
from restate.settings import get_settings
from tests.conftest import land, make_settings

pytestmark = pytest.mark.slow

PLAN = [
    "plan",
    "--start",
    "2026-09-01",
    "--end",
    "2026-09-30",
    "--reason",
    "refund bug",
    "--requested-by",
    "ana",
]


@pytest.fixture
def opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A buggy production warehouse; yields the list of sessions opened (one name each)."""
    s = make_settings(tmp_path / "wh")
    land(s, None, datetime(2026, 10, 20))
    load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
    land(s, datetime(2026, 10, 20), None)  # a later batch for `restate load`
    monkeypatch.setenv("RESTATE_DATA_DIR", str(tmp_path / "wh"))
    monkeypatch.setenv("RESTATE_ACTOR", "ana")
    monkeypatch.setenv("RESTATE_CHUNK_DAYS", "7")  # several chunks for `restate run`
    monkeypatch.setenv("RESTATE_APPROVERS", '["bob"]')
    monkeypatch.delenv("RESTATE_DUCKDB_PATH", raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    get_settings.cache_clear()
    sessions: list[str] = []
    real_init = DuckDBEngine.__init__

    def counting_init(self: DuckDBEngine, *args: object, **kwargs: object) -> None:
        sessions.append("open")
        real_init(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(DuckDBEngine, "__init__", counting_init)
    try:
        yield sessions
    finally:
        get_settings.cache_clear()


def test_each_command_opens_one_warehouse_session(opened: list[str]) -> None:
    runner = CliRunner()
    counts: Counter[str] = Counter()
    codes: dict[str, int] = {}

    def cli(*args: str, expect: tuple[int, ...] = (0,)) -> None:
        before = len(opened)
        result = runner.invoke(app, list(args))
        assert result.exit_code in expect, (args, result.output)
        name = " ".join(a for a in args if not a.startswith("-"))[:40]
        counts[name] = len(opened) - before
        codes[name] = result.exit_code

    cli("load")
    cli("status")
    cli("models")
    cli("entities", "fct_revenue_daily", "--limit", "5")
    cli("report", "fct_revenue_daily")
    cli("quarantine")
    cli(*PLAN)
    cli("status", "1")
    run_before = len(opened)
    cli("run", "1")
    run_sessions = len(opened) - run_before
    cli("validate", "1")
    cli("diff", "1")
    cli("promote", "1", "--approved-by", "bob")
    cli("rollback", "1", "--by", "bob", "--reason", "test")
    cli("notify", "1", "--event", "promoted", expect=(0, 1))  # no channel configured: pending
    cli("log", "--id", "1")
    cli("audit", "verify")
    cli("explain", "--start", "2026-09-01", "--end", "2026-09-30")
    cli("reconcile", "--today", "2026-10-20", "--no-notify", expect=(0, 2))
    cli("cancel", "1", "--reason", "x")  # rolled back, so not live: it can be withdrawn

    del counts["run 1"]
    too_many = {name: n for name, n in counts.items() if n > 1}
    assert not too_many, f"commands that opened more than one warehouse session: {too_many}"
    # The counter works: commands that read the warehouse opened exactly one.
    assert counts["status"] == 1 and counts["promote 1 bob"] == 1 and counts["reconcile 2026-10-20"] == 1
    # run: its own session before and after the chunks, plus one for the chunks' thread,
    # kept from chunk to chunk while no other process waits for the file.
    from restate.engines import connect

    with connect(get_settings()) as engine:
        chunks = engine.scalar(
            "select count(*) from restate_meta.restatement_partitions where restatement_id = 1"
        )
    assert chunks > 1 and run_sessions <= 3, (run_sessions, chunks)
