"""The lifecycle itself emits its notices: planned, validation failed, approval needed.

Real dbt + DuckDB + Soda; notices go to the local outbox (the embedded default), so
every delivered notice is a file under the data folder and a row in the outbox table.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from restate.actions import create_plan, finish_run, load_once, run_chunk, run_validation_step, start_run
from restate.engines import connect
from restate.plan.plans import PlanRequest
from restate.settings import Settings
from tests.conftest import land, make_settings

pytestmark = pytest.mark.slow


def outbox(s: Settings, rid: int) -> dict[str, list[tuple[str, str]]]:
    with connect(s) as e:
        rows = e.query(
            f"select event, recipient, status from {s.meta_schema}.notification_outbox "
            "where restatement_id = ? order by 1, 2",
            [rid],
        )
    out: dict[str, list[tuple[str, str]]] = {}
    for event, recipient, status in rows:
        out.setdefault(event, []).append((recipient, status))
    return out


def test_plan_validation_failure_and_approval_are_announced_once(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "wh")
    land(s)
    load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))

    plan = create_plan(
        s,
        PlanRequest(
            "fct_revenue_daily+",
            date(2026, 9, 1),
            date(2026, 9, 30),
            reason="refund bug",
            requested_by="ana",
            ticket="FIN-9",
            require_approval=True,
        ),
    )
    rid = plan.restatement_id
    planned = outbox(s, rid)["restatement_planned"]
    owners = {f"email:{e.owner_email}" for e in plan.exposures if e.owner_email}
    assert owners and owners <= {r for r, _ in planned}
    assert all(status == "sent" for _, status in planned)

    start_run(s, rid)
    for chunk in plan.chunks:
        run_chunk(s, rid, chunk.chunk_id)
    finish_run(s, rid)
    first = run_validation_step(s, rid)
    assert first["passed"], first["report"]
    needed = outbox(s, rid)
    assert {r for r, _ in needed["approval_needed"]} == {r for r, _ in planned}
    assert "validation_failed" not in needed

    # Break the restated data: one day's refunds vanish. Validation fails and says where.
    with connect(s) as e:
        e.execute(
            f"update {plan.restate_schema}.fct_revenue_daily set refunds = 0, net_revenue = gross_revenue "
            "where event_date = '2026-09-14'"
        )
    assert not run_validation_step(s, rid)["passed"]
    assert not run_validation_step(s, rid)["passed"]  # a second failed run: its own notice
    failed = outbox(s, rid)["validation_failed"]
    assert {r for r, _ in failed} == {r for r, _ in planned}
    assert outbox(s, rid)["validation_failed#2"] == failed  # same audience, each sent once
    files = sorted(Path(s.outbox_dir).glob(f"restatement-{rid}-validation_failed/*/message.txt"))
    assert len(files) == len(failed), "one outbox file per recipient"
    text = files[0].read_text()
    assert "2026-09-14" in text

    with connect(s) as e:
        sent_entries = e.query(
            f"select payload_json from {s.meta_schema}.changelog "
            "where restatement_id = ? and event = 'notice_sent'",
            [rid],
        )
    events = {json.loads(p)["notice"] for (p,) in sent_entries}
    assert {"restatement_planned", "approval_needed", "validation_failed"} <= events
