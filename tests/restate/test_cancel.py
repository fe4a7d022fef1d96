"""`restate cancel ID` withdraws a restatement that is not live: afterwards it cannot be
run, validated, forced or promoted; the cancellation is in the verified changelog with who
ran it; a promoted one must be rolled back instead."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from interfaces.cli import app
from restate.engines.duckdb import DuckDBEngine
from restate.settings import get_settings
from restate.state import changelog
from restate.state.meta import init_meta
from tests.notifications.conftest import seed_restatement


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    data = tmp_path / "data"
    data.mkdir()
    engine = DuckDBEngine(data / "warehouse.duckdb")
    init_meta(engine, "restate_meta")
    seed_restatement(engine)  # #1: validated, awaiting approval
    engine.close()
    monkeypatch.setenv("RESTATE_DATA_DIR", str(data))
    monkeypatch.setenv("RESTATE_ACTOR", "ops.lee")
    monkeypatch.setenv("RESTATE_APPROVERS", '["bob", "carol"]')
    monkeypatch.delenv("RESTATE_DUCKDB_PATH", raising=False)
    get_settings.cache_clear()
    try:
        yield data
    finally:
        get_settings.cache_clear()


def _status(data: Path) -> str:
    engine = DuckDBEngine(data / "warehouse.duckdb")
    try:
        return str(engine.scalar("select status from restate_meta.restatements where restatement_id = 1"))
    finally:
        engine.close()


def test_a_cancelled_restatement_goes_no_further(warehouse: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["cancel", "1"]).exit_code == 2  # the reason is required
    done = runner.invoke(app, ["cancel", "1", "--reason", "superseded by FIN-150"])
    assert done.exit_code == 0, done.output
    assert _status(warehouse) == "cancelled"
    for args in (
        ["run", "1"],
        ["validate", "1"],
        ["validate", "1", "--force", "--approved-by", "bob", "--reason", "x"],
        ["promote", "1", "--approved-by", "bob"],
        ["cancel", "1", "--reason", "again"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and "cancelled" in result.stderr, (args, result.output)
    assert _status(warehouse) == "cancelled"

    engine = DuckDBEngine(warehouse / "warehouse.duckdb")
    try:
        entries = [e for e in changelog.entries(engine, "restate_meta", 1) if e["event"] == "cancelled"]
    finally:
        engine.close()
    assert len(entries) == 1 and entries[0]["actor"] == "ops.lee"
    assert entries[0]["payload"] == {"reason": "superseded by FIN-150", "status_before": "validated"}
    verified = runner.invoke(app, ["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    assert "cancelled" in runner.invoke(app, ["status", "1"]).output


def test_a_live_restatement_is_rolled_back_not_cancelled(warehouse: Path) -> None:
    engine = DuckDBEngine(warehouse / "warehouse.duckdb")
    engine.execute("update restate_meta.restatements set status = 'promoted' where restatement_id = 1")
    engine.close()
    result = CliRunner().invoke(app, ["cancel", "1", "--reason", "oops"])
    assert result.exit_code == 1 and "restate rollback 1" in result.stderr, result.output
    assert _status(warehouse) == "promoted"
