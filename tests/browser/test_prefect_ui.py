"""The Prefect UI, in a real browser on a real `prefect server start`: the restatement
deployment's parameter form starts a run with what was typed; a paused restatement's
form approves (then promotes) or rejects (then withdraws), through the same gate as the
CLI; the run page shows the progress, chunk and diff artifacts."""

from __future__ import annotations

import inspect
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
from tests.browser.conftest import Watched
from tests.conftest import land, make_settings

pytestmark = pytest.mark.slow


def _api(base: str) -> Any:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings({PREFECT_API_URL: f"{base}/api"})


def _property(page: Any, name: str) -> Any:
    """One parameter of Prefect's schema form, by its label."""
    label = page.locator(".schema-form-property__label", has_text=name)
    return page.locator(".schema-form-property", has=label).first


def test_deployment_form_starts_a_run_with_what_was_typed(
    prefect_ui: str, watched_page: Watched, artifacts: Path
) -> None:
    from prefect import get_client

    from flows.restatement import restatement

    with _api(prefect_ui):
        # _sync: the browser runs an event loop in this thread, which prefect would await on
        deployment_id = restatement.to_deployment(name="restatement", _sync=True).apply(_sync=True)
    page = watched_page.page
    page.goto(f"{prefect_ui}/deployments/deployment/{deployment_id}/run", wait_until="networkidle")
    _property(page, "restatement_id").wait_for()
    page.screenshot(path=str(artifacts / "deployment-form.png"), full_page=True)
    form = page.inner_text("body")
    # every parameter, with the description the flow's docstring gives it
    params = [p for p in inspect.signature(restatement.fn).parameters]
    assert params[:3] == ["restatement_id", "selector", "start"]
    for name in params:
        assert name in form, name
    assert "an existing plan to run (skips planning)." in form
    assert "why; recorded in the changelog and the notices." in form

    field = _property(page, "restatement_id")
    field.get_by_role("button", name="int", exact=True).click()
    field.locator("input").fill("7")
    reason = _property(page, "reason")
    reason.get_by_role("button", name="str", exact=True).click()
    reason.locator("input, textarea").first.fill("refunds <b>left out</b> & more")
    page.screenshot(path=str(artifacts / "deployment-form-filled.png"), full_page=True)
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url("**/deployments/deployment/**tab=Runs**", timeout=30_000)

    with _api(prefect_ui), get_client(sync_client=True) as client:
        runs = client.read_flow_runs()
    started = [r for r in runs if str(r.deployment_id) == str(deployment_id)]
    assert len(started) == 1
    assert started[0].parameters["restatement_id"] == 7
    assert started[0].parameters["reason"] == "refunds <b>left out</b> & more"


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Any:
    s = make_settings(tmp_path_factory.mktemp("prefect-ui-wh") / "wh")
    land(s)  # everything landed: the finance reconciliation check passes
    load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
    return s


def _run_paused_restatement(base: str, s: Any, monkeypatch: pytest.MonkeyPatch, month: int) -> Any:
    """Start the restatement flow for one month in a thread; return (thread, outcome, run)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateName

    from flows.restatement import restatement

    monkeypatch.setenv("RESTATE_DATA_DIR", str(s.data_dir))
    monkeypatch.setenv("RESTATE_REQUIRE_APPROVAL", "true")
    monkeypatch.setenv("RESTATE_APPROVERS", '["cfo.maria"]')
    monkeypatch.setenv("RESTATE_APPROVAL_POLL_S", "1")
    get_settings.cache_clear()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            with _api(base):
                outcome["result"] = restatement(
                    start=date(2026, month, 1),
                    end=date(2026, month, 28),
                    reason="refunds left out of net revenue",
                    ticket="FIN-142",
                    requested_by="ana",
                    await_approval=True,
                    promote_after_approval=True,
                )
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 240
    with _api(base), get_client(sync_client=True) as client:
        while time.monotonic() < deadline and "error" not in outcome:
            paused = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Paused"]))
                )
            )
            if paused and paused[0].state.state_details.run_input_keyset:
                return thread, outcome, paused[0]
            time.sleep(0.5)
    raise AssertionError(f"the restatement never paused: {outcome.get('error')}")


def _decide(
    page: Any, base: str, run_id: Any, decision: str, approver: str, comment: str, shots: Path
) -> None:
    page.goto(f"{base}/runs/flow-run/{run_id}", wait_until="networkidle")
    page.get_by_role("button", name="Resume").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("your name as listed in RESTATE_APPROVERS").wait_for()
    page.screenshot(path=str(shots / f"{decision}-form.png"))
    if decision != "approve":
        control = dialog.locator("button.p-select-button__control")
        control.click()
        control.press("ArrowDown")
        page.get_by_role("option", name=decision).click()
    boxes = dialog.locator("textarea")
    boxes.nth(0).fill(approver)
    boxes.nth(1).fill(comment)
    page.screenshot(path=str(shots / f"{decision}-form-filled.png"))
    dialog.get_by_role("button", name="Submit").click()


def _wait_for_pause_after(base: str, first: Any, outcome: dict[str, Any]) -> None:
    """Until the run is paused again, in a newer state than ``first``'s."""
    from prefect import get_client

    deadline = time.monotonic() + 120
    with _api(base), get_client(sync_client=True) as client:
        while time.monotonic() < deadline and "error" not in outcome:
            run = client.read_flow_run(first.id)
            if run.state.name == "Paused" and run.state.timestamp > first.state.timestamp:
                return
            time.sleep(0.5)
    raise AssertionError(f"the run did not pause again: {outcome.get('error')}")


def _finish(thread: threading.Thread, outcome: dict[str, Any]) -> dict[str, Any]:
    thread.join(timeout=240)
    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    return outcome["result"]


def test_paused_run_form_approves_and_the_run_page_shows_the_artifacts(
    prefect_ui: str, warehouse: Any, watched_page: Watched, artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = watched_page.page
    try:
        thread, outcome, paused = _run_paused_restatement(prefect_ui, warehouse, monkeypatch, 8)
        _decide(page, prefect_ui, paused.id, "approve", "cfo.maria", "matches <i>FIN-142</i>", artifacts)
        result = _finish(thread, outcome)
    finally:
        get_settings.cache_clear()
    rid = result["restatement_id"]
    assert result["approved_by"] == "cfo.maria" and result["promotion"]["status"] == "promoted"
    with connect(warehouse) as e:
        approved = e.query_dicts(
            "select actor, payload_json from restate_meta.changelog where restatement_id = ? and event = 'approved'",
            [rid],
        )
    assert approved[0]["actor"] == "cfo.maria"
    assert json.loads(approved[0]["payload_json"])["comment"] == "matches <i>FIN-142</i>"

    # The run page: completed, with the progress, chunk and diff artifacts.
    page.goto(f"{prefect_ui}/runs/flow-run/{paused.id}", wait_until="networkidle")
    page.get_by_text("Artifacts", exact=True).first.click()
    page.get_by_text(f"restatement-{rid}-diff").first.wait_for()
    page.screenshot(path=str(artifacts / "run-artifacts.png"), full_page=True)
    text = page.inner_text("body")
    assert "Completed" in text
    for key in (f"restatement-{rid}-chunks", f"restatement-{rid}-diff"):
        assert key in text
    assert f"restatement-{rid}-progress" in text
    page.get_by_text(f"restatement-{rid}-diff", exact=True).first.click()
    page.get_by_text("net_revenue").first.wait_for()
    page.screenshot(path=str(artifacts / "diff-artifact.png"), full_page=True)
    diff = page.inner_text("body")
    assert "2026-08" in diff and "as_reported" in diff and "restated" in diff


def test_paused_run_form_rejects_through_the_gate(
    prefect_ui: str, warehouse: Any, watched_page: Watched, artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = watched_page.page
    try:
        thread, outcome, paused = _run_paused_restatement(prefect_ui, warehouse, monkeypatch, 9)
        # The requester approving her own restatement: refused by the gate, the run pauses again.
        _decide(page, prefect_ui, paused.id, "approve", "ana", "looks right to me", artifacts)
        _wait_for_pause_after(prefect_ui, paused, outcome)
        _decide(page, prefect_ui, paused.id, "reject", "cfo.maria", "wrong export version", artifacts)
        result = _finish(thread, outcome)
    finally:
        get_settings.cache_clear()
    rid = result["restatement_id"]
    assert result["rejected_by"] == "cfo.maria" and "promotion" not in result
    assert [r["by"] for r in result["refused"]] == ["ana"]
    assert "requested restatement" in result["refused"][0]["reason"]
    with connect(warehouse) as e:
        status = e.scalar("select status from restate_meta.restatements where restatement_id = ?", [rid])
        rejected = e.query_dicts(
            "select actor, payload_json from restate_meta.changelog where restatement_id = ? and event = 'rejected'",
            [rid],
        )
    assert status == "cancelled"
    assert rejected[0]["actor"] == "cfo.maria"
    assert json.loads(rejected[0]["payload_json"])["comment"] == "wrong export version"
