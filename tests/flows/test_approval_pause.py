"""The restatement flow pauses for an approver's form, records it and promotes; the rollback flow undoes it."""

from __future__ import annotations

import json
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from restate.actions import load_once
from restate.engines import connect
from restate.settings import get_settings
from tests.conftest import land, make_settings

pytestmark = pytest.mark.slow


def _wait_for_state(client: Any, flow_name: str, state: str, timeout: float, outcome: dict[str, Any]) -> Any:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and "error" not in outcome:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=10,
        )
        for run in runs:
            if run.state is not None and run.state.name == state:
                return run
        time.sleep(0.5)
    raise AssertionError(f"no {flow_name} run reached {state}: {outcome.get('error')}")


def _wait_for_input(client: Any, flow_run_id: Any, key: str, timeout: float) -> dict[str, Any]:
    """The flow saves the form schema just after entering Paused."""
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout
    while True:
        try:
            return json.loads(client.read_flow_run_input(flow_run_id, key))
        except ObjectNotFound:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_flow_pauses_for_approval_form_and_records_it(tmp_path: Path, monkeypatch) -> None:
    from prefect import get_client
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    s = make_settings(tmp_path / "wh")
    land(s)  # everything landed: the finance reconciliation check passes
    load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
    monkeypatch.setenv("RESTATE_DATA_DIR", str(s.data_dir))
    monkeypatch.setenv("RESTATE_REQUIRE_APPROVAL", "true")
    monkeypatch.setenv("RESTATE_APPROVERS", '["cfo.maria"]')
    monkeypatch.setenv("RESTATE_APPROVAL_POLL_S", "1")
    get_settings.cache_clear()
    with connect(s) as e:
        prod_before = e.query("select sum(net_revenue) from analytics.fct_revenue_daily")[0][0]

    from flows.restatement import restatement

    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = restatement(
                start=date(2026, 9, 1),
                end=date(2026, 9, 30),
                reason="refunds left out of net revenue",
                ticket="FIN-142",
                requested_by="ana",
                await_approval=True,
                promote_after_approval=True,
            )
        except BaseException as exc:
            outcome["error"] = exc

    try:
        with (
            temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp_path / "prefect-results"}),
            prefect_test_harness(server_startup_timeout=120),
        ):
            flow_thread = threading.Thread(target=run, daemon=True)
            flow_thread.start()
            with get_client(sync_client=True) as client:
                paused = _wait_for_state(client, "restatement", "Paused", 240, outcome)
                assert "error" not in outcome
                # Paused after validate + diff, before anything touched production.
                with connect(s) as e:
                    row = e.query_dicts(
                        "select status, approved_by, requires_approval from restate_meta.restatements"
                    )
                    prod_paused = e.query("select sum(net_revenue) from analytics.fct_revenue_daily")[0][0]
                assert row == [{"status": "validated", "approved_by": None, "requires_approval": True}]
                assert prod_paused == prod_before
                # The pause carries a form schema (approver, comment) for the UI.
                keyset = paused.state.state_details.run_input_keyset
                schema = _wait_for_input(client, paused.id, keyset["schema"], timeout=30)
                assert {"approver", "comment"} <= set(schema["properties"])

                client.resume_flow_run(
                    paused.id, run_input={"approver": "cfo.maria", "comment": "matches FIN-142 export"}
                )
                flow_thread.join(timeout=240)
                assert not flow_thread.is_alive()
                final = client.read_flow_run(paused.id)
                from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

                task_names = {
                    t.name
                    for t in client.read_task_runs(
                        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[paused.id])), limit=200
                    )
                }
            # restatements keep restate's own dbt runner (prefect-dbt is the loads')
            assert not [n for n in task_names if n.startswith("model ")], sorted(task_names)
            assert any(n.startswith("chunk ") for n in task_names), sorted(task_names)
            assert "error" not in outcome, outcome.get("error")
            assert final.state is not None and final.state.is_completed()
            result = outcome["result"]
            rid = result["restatement_id"]
            with connect(s) as e:
                stored = e.query_dicts(
                    "select status, approved_by, approval_comment from restate_meta.restatements "
                    "where restatement_id = ?",
                    [rid],
                )
                entries = e.query_dicts(
                    "select event, actor, payload_json from restate_meta.changelog "
                    "where restatement_id = ? order by version",
                    [rid],
                )
                prod_after = e.query("select sum(net_revenue) from analytics.fct_revenue_daily")[0][0]

            # The rollback flow undoes it in one step.
            from flows.rollback import rollback

            undone = rollback(restatement_id=rid, by="cfo.maria", reason="wrong export version")
    finally:
        get_settings.cache_clear()

    assert result["approved_by"] == "cfo.maria"
    assert result["promotion"]["status"] == "promoted"
    assert stored == [
        {"status": "promoted", "approved_by": "cfo.maria", "approval_comment": "matches FIN-142 export"}
    ]
    events = [x["event"] for x in entries]
    assert events.index("validated") < events.index("approved") < events.index("promoted")
    approved = entries[events.index("approved")]
    assert approved["actor"] == "cfo.maria"
    assert json.loads(approved["payload_json"])["comment"] == "matches FIN-142 export"
    # Who submitted the form, apart from the approver it names: the form and its flow run.
    assert json.loads(approved["payload_json"])["run_by"] == (
        f"cfo.maria (prefect form, flow run {final.id})"
    )
    promoted = json.loads(entries[events.index("promoted")]["payload_json"])
    assert promoted["approved_by"] == "cfo.maria"
    assert prod_after < prod_before  # refunds now subtracted from net revenue

    assert undone["status"] == "rolled_back"
    with connect(s) as e:
        status = e.scalar("select status from restate_meta.restatements where restatement_id = ?", [rid])
        prod_rolled_back = e.query("select sum(net_revenue) from analytics.fct_revenue_daily")[0][0]
        audit = e.query_dicts(
            "select event, actor from restate_meta.changelog where restatement_id = ? order by version",
            [rid],
        )
        notices = {r[0] for r in e.query("select distinct event from restate_meta.notification_outbox")}
    assert status == "rolled_back"
    assert prod_rolled_back == prod_before
    events = [x["event"] for x in audit]
    assert events.index("promoted") < events.index("rolled_back")
    assert audit[events.index("rolled_back")]["actor"] == "cfo.maria"
    assert {"promoted", "rolled_back"} <= notices  # both flows told the dashboard owners
