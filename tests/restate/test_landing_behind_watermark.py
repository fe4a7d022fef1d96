"""A landing file first seen after the loads have moved past its rows is quarantined.

Each load reads the rows processed in (last watermark - lookback, newest]. A file
delivered late, whose rows were processed before that, would be accepted into
raw.events and then read by no load: in neither the kept nor the quarantined events,
silently lost. It is quarantined with a reason saying what to do instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from interfaces.cli import app
from restate.engines import connect
from restate.settings import Settings, get_settings
from restate.validation.contracts import run_validation
from tests.conftest import land, make_settings

pytestmark = pytest.mark.slow

ROW = (
    "select '{id}' as event_id, 'acct_late' as account_id, 'invoice_paid' as event_type, "
    "cast(1234.56 as decimal(18, 2)) as amount, 'USD' as currency, "
    "timestamp '2026-10-01 10:00' as event_ts, timestamp '2026-10-01 10:00' as updated_at, "
    "timestamp '{ingested}' as event_ingested_at, 'a@b.c' as customer_email"
)


def _write(path: Path, event_id: str, ingested: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sql = ROW.format(id=event_id, ingested=ingested)
    duckdb.connect().execute(f"copy ({sql}) to '{path}' (format parquet)")


@pytest.fixture
def cli_env(tmp_path: Path) -> Iterator[Settings]:
    s = make_settings(tmp_path)
    mp = pytest.MonkeyPatch()
    mp.setenv("RESTATE_DATA_DIR", str(tmp_path))
    mp.setenv("COLUMNS", "250")
    mp.delenv("RESTATE_DUCKDB_PATH", raising=False)
    mp.delenv("RESTATE_LANDING_URI", raising=False)
    get_settings.cache_clear()
    try:
        yield s
    finally:
        mp.undo()
        get_settings.cache_clear()


def test_a_file_behind_the_watermark_is_quarantined_not_silently_lost(cli_env: Settings) -> None:
    s = cli_env
    runner = CliRunner()
    land(s, None, datetime(2026, 10, 20))
    first = runner.invoke(app, ["load", "--json"])
    assert first.exit_code == 0, (first.output, first.exception)
    watermark = datetime.fromisoformat(json.loads(first.output)["watermark_after"])
    read_since = watermark - timedelta(hours=s.lookback_hours)
    # Delivered late: a new invoice processed before what any later load reads.
    late = Path(s.landing) / "events/event_date=2026-10-01/late_backfill.parquet"
    _write(late, "late-evt-1", ingested=str(read_since - timedelta(days=1)))
    land(s, datetime(2026, 10, 20), datetime(2026, 10, 25))
    second = runner.invoke(app, ["load", "--json"])
    assert second.exit_code == 0, (second.output, second.exception)
    assert json.loads(second.output)["status"] == "success"

    result = runner.invoke(app, ["quarantine", "--files", "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    listed = {r["path"]: r for r in json.loads(result.output)}
    assert list(listed) == [str(late)]
    reason = listed[str(late)]["reason"]
    assert reason.startswith("behind_watermark:"), reason
    assert str(read_since) in reason and "restate" in reason, reason
    with connect(s) as e:
        assert e.scalar("select count(*) from raw.events where event_id = 'late-evt-1'") == 0
        assert (
            e.scalar("select count(*) from analytics.int_deduped_events where event_id = 'late-evt-1'") == 0
        )
        # The regular rows of the second arrival were loaded.
        newest = e.scalar("select max(ingested_at) from analytics.int_deduped_events")
        checked = run_validation(s, e, s.prod_schema, date(2026, 8, 1), date(2026, 10, 31), None)
    assert newest > watermark
    accounting = checked.check("raw rows = kept")
    assert accounting.outcome == "passed", accounting
