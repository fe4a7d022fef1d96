"""The nightly reconciliation as a Prefect flow run (real temporary Prefect server)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from restate.actions import load_once
from restate.engines import connect
from restate.settings import get_settings
from tests.conftest import land, make_settings

pytestmark = pytest.mark.slow


def test_nightly_flow_flags_the_buggy_months_and_drafts_a_plan(tmp_path: Path, monkeypatch) -> None:
    from prefect.testing.utilities import prefect_test_harness

    s = make_settings(tmp_path / "wh")
    land(s)
    load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
    monkeypatch.setenv("RESTATE_DATA_DIR", str(s.data_dir))
    get_settings.cache_clear()
    from flows.reconciliation import nightly_reconciliation

    try:
        with prefect_test_harness(server_startup_timeout=120):
            out = nightly_reconciliation(days=120, today=date(2026, 11, 2))
    finally:
        get_settings.cache_clear()

    assert out["passed"] is False
    assert out["drift_months"] == ["2026-08", "2026-09", "2026-10"]
    assert (out["draft_start"], out["draft_end"]) == ("2026-08-01", "2026-10-31")
    assert out["notices"]["sent"] > 0 and not out["notices"]["failed"]
    with connect(s) as e:
        assert e.query(f"select status, period_start, period_end from {s.meta_schema}.restatements") == [
            ("planned", date(2026, 8, 1), date(2026, 10, 31))
        ]
        entry = e.query_dicts(
            f"select event, restatement_id from {s.meta_schema}.changelog where event = 'drift_detected'"
        )
    assert entry == [{"event": "drift_detected", "restatement_id": out["draft_restatement_id"]}]
