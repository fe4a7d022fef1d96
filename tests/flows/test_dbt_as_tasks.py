"""The incremental-load flow runs dbt through prefect-dbt: each model of the load is its
own Prefect task (Completed, with its relation as an asset), and the load's numbers are
those of restate's own runner, to the cent."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from restate.engines import connect
from restate.settings import get_settings
from tests.conftest import expected_daily_sql, land, make_settings, raw_glob, table_rows

pytestmark = pytest.mark.slow


def _materialized_assets(client: Any, expected: tuple[str, ...]) -> list[str]:
    """The assets whose materialization the server recorded (events arrive a little after
    the run, not all at once): until every expected one is there, or 60 s."""
    import time

    deadline = time.monotonic() + 60
    found: list[str] = []
    while time.monotonic() < deadline:
        response = client.request(
            "POST",
            "/events/filter",
            json={"filter": {"event": {"prefix": ["prefect.asset.materialization.succeeded"]}}, "limit": 50},
        )
        found = sorted({e["resource"]["prefect.resource.id"] for e in response.json().get("events", [])})
        if all(any(a.endswith(name) for a in found) for name in expected):
            return found
        time.sleep(0.5)
    return found


CUT = datetime(2026, 10, 5)  # the first load's landing ends here; the second lands the rest


@contextmanager
def _counting_parses() -> Iterator[list[int]]:
    """Every full or partial parse of a dbt project in this process while the block runs."""
    from dbt.parser.manifest import ManifestLoader

    calls: list[int] = []
    original = ManifestLoader.get_full_manifest  # bound to the class

    def counted(cls: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:  # restores the classmethod itself
        patch.setattr(ManifestLoader, "get_full_manifest", classmethod(counted))
        yield calls


def test_incremental_load_shows_each_model_as_a_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    s = make_settings(tmp_path / "wh")
    land(s, until=CUT)
    monkeypatch.setenv("RESTATE_DATA_DIR", str(s.data_dir))
    get_settings.cache_clear()
    from flows.incremental import incremental_load

    try:
        with (
            temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp_path / "prefect-results"}),
            prefect_test_harness(server_startup_timeout=120),
        ):
            state = incremental_load(return_state=True)
            assert state.is_completed(), state
            # The next 15-minute load (new vars) starts from the manifest the process
            # parsed, through prefect-dbt too: dbt does not parse the project again.
            assert land(s, after=CUT) > 0
            with _counting_parses() as parses:
                state = incremental_load(return_state=True)
            assert state.is_completed(), state
            assert parses == [], f"the second load parsed the project {len(parses)} time(s)"
            # The load let go of the file: a restatement in another process can open it now.
            import subprocess
            import sys

            other = subprocess.run(
                [sys.executable, "-c", f"import duckdb; duckdb.connect({str(s.warehouse_path)!r}).close()"],
                capture_output=True,
                text=True,
            )
            assert other.returncode == 0, other.stderr[-300:]
            run_id = state.state_details.flow_run_id
            with get_client(sync_client=True) as client:
                tasks = client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])), limit=200
                )
                assets = _materialized_assets(client, ("fct_revenue_daily", "int_deduped_events"))
    finally:
        get_settings.cache_clear()
    names = {t.name: t.state.name for t in tasks}
    assert any(a.endswith("fct_revenue_daily") for a in assets), assets
    assert any(a.endswith("int_deduped_events") for a in assets), assets
    models = [n for n in names if "fct_revenue_daily" in n or "int_deduped_events" in n]
    assert len(models) >= 2, sorted(names)
    assert all(names[n] == "Completed" for n in models)
    with connect(s) as e:
        loaded = table_rows(
            e.con, "select event_date, account_id, currency, net_revenue from analytics.fct_revenue_daily"
        )
        expected = table_rows(
            e.con,
            f"select event_date, account_id, currency, net_revenue from ({expected_daily_sql(raw_glob(s))})",
        )
    assert loaded == expected
