"""The approval-needed notice's Approve / Reject buttons over real HTTP (uvicorn serving
the Bolt app, Slack's Web API and response URLs played by a local server): signed like
every request, the same approver gate as `/restatement approve`, refusals audited, the
buttons replaced by the decision, a reason required to reject."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from datetime import date
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

import pytest

from notifications.composer import APPROVE_ACTION, REJECT_ACTION, NoticeContext, compose
from notifications.events import NoticeEvent
from restate.engines.duckdb import DuckDBEngine
from restate.state import changelog
from tests.notifications.conftest import SIGNING_SECRET
from tests.notifications.test_slack_command import APPROVER, serve_commands, warehouse  # noqa: F401

pytestmark = pytest.mark.slow


def _notice_blocks(event: NoticeEvent) -> list[dict[str, Any]]:
    ctx = NoticeContext(
        restatement_id=1,
        event=event,
        models=["fct_revenue_daily"],
        period_start=date(2026, 1, 1),
        period_end=date(2026, 2, 28),
        reason="Refunds not netted",
    )
    return compose(ctx).blocks


def test_only_the_approval_notice_carries_the_buttons() -> None:
    blocks = _notice_blocks(NoticeEvent.APPROVAL_NEEDED)
    actions = [b for b in blocks if b["type"] == "actions"]
    assert len(actions) == 1
    buttons = {e["action_id"]: e for e in actions[0]["elements"]}
    assert set(buttons) == {APPROVE_ACTION, REJECT_ACTION}
    assert {b["value"] for b in buttons.values()} == {"1"}
    assert buttons[APPROVE_ACTION]["confirm"]  # Slack asks before it sends the click
    for event in (NoticeEvent.PROMOTED, NoticeEvent.RESTATEMENT_PLANNED, NoticeEvent.VALIDATION_FAILED):
        assert not [b for b in _notice_blocks(event) if b["type"] == "actions"]


def _post(srv: Any, payload: dict[str, Any], secret: str = SIGNING_SECRET) -> tuple[int, Any]:
    body = urlencode({"payload": json.dumps(payload)}).encode()
    ts = str(int(time.time()))
    sig = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    req = Request(
        f"{srv.url}/slack/events",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sig,
        },
    )
    try:
        with urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw.strip() else None
    except HTTPError as err:
        return err.code, None


def _click(srv: Any, action: str, user: str, value: str = "1") -> tuple[int, str, dict[str, Any]]:
    token = uuid.uuid4().hex
    payload = {
        "type": "block_actions",
        "team": {"id": "T1", "domain": "finance"},
        "user": {"id": user, "username": user.lower(), "team_id": "T1"},
        "api_app_id": "A1",
        "token": "legacy",
        "trigger_id": f"trigger-{token}",
        "channel": {"id": "CFIN", "name": "finance-reporting"},
        "container": {"type": "message", "message_ts": "1.0", "channel_id": "CFIN"},
        "message": {"type": "message", "ts": "1.0", "blocks": _notice_blocks(NoticeEvent.APPROVAL_NEEDED)},
        "response_url": f"{srv.slack.url}/response/{token}",
        "actions": [
            {
                "type": "button",
                "action_id": action,
                "block_id": "decide-1",
                "value": value,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    code, _ = _post(srv, payload)
    return code, token, payload


def _approved_by(engine: DuckDBEngine) -> Any:
    return engine.scalar("select approved_by from restate_meta.restatements where restatement_id = 1")


def test_approve_button_by_an_approver_approves_and_replaces_the_buttons(serve_commands, warehouse) -> None:  # noqa: F811
    srv = serve_commands()
    code, token, _ = _click(srv, APPROVE_ACTION, APPROVER)
    assert code == 200
    answer = srv.answer(token)
    assert answer["replace_original"] is True
    assert not [b for b in answer["blocks"] if b["type"] == "actions"]  # nobody clicks twice
    assert f"approved by <@{APPROVER}>" in answer["blocks"][-1]["elements"][0]["text"]
    assert _approved_by(warehouse) == f"slack:{APPROVER}"
    approved = [e for e in changelog.entries(warehouse, "restate_meta", 1) if e["event"] == "approved"]
    assert [e["actor"] for e in approved] == [f"slack:{APPROVER}"]


def test_approve_button_by_someone_else_is_refused_audited_and_keeps_the_buttons(
    serve_commands,  # noqa: F811
    warehouse,  # noqa: F811
) -> None:
    srv = serve_commands()
    code, token, _ = _click(srv, APPROVE_ACTION, "UINTERN")
    assert code == 200
    answer = srv.answer(token)
    assert answer["response_type"] == "ephemeral" and answer["replace_original"] is False
    assert "not allowed to approve" in answer["text"]
    assert _approved_by(warehouse) is None
    refused = [e for e in changelog.entries(warehouse, "restate_meta", 1) if e["event"] == "approval_refused"]
    assert refused[0]["payload"]["command"] == "button: Approve" and refused[0]["actor"] == "slack:UINTERN"


def test_forged_or_replayed_clicks_do_nothing(serve_commands, warehouse, slack_api) -> None:  # noqa: F811
    srv = serve_commands()
    code, _ = _post(
        srv,
        {
            "type": "block_actions",
            "user": {"id": APPROVER},
            "actions": [{"action_id": APPROVE_ACTION, "value": "1"}],
        },
        secret="not-the-signing-secret",
    )
    assert code == 401
    # a value that is not an id is answered, never executed
    code, token, _ = _click(
        srv, APPROVE_ACTION, APPROVER, value="1; update restatements set status = 'promoted'"
    )
    assert code == 200
    assert "carries no restatement id" in srv.answer(token)["text"]
    time.sleep(0.3)
    assert _approved_by(warehouse) is None


def test_reject_button_asks_why_then_withdraws_through_the_gate(serve_commands, warehouse, slack_api) -> None:  # noqa: F811
    srv = serve_commands()
    code, token, click = _click(srv, REJECT_ACTION, APPROVER)
    assert code == 200
    opened = slack_api.wait_for("views.open")[-1].params
    assert opened["trigger_id"] == click["trigger_id"]
    view = opened["view"] if isinstance(opened["view"], dict) else json.loads(opened["view"])
    assert view["type"] == "modal" and view["blocks"][0]["block_id"] == "comment"

    def submit(user: str, comment: str) -> tuple[int, Any]:
        return _post(
            srv,
            {
                "type": "view_submission",
                "team": {"id": "T1"},
                "user": {"id": user, "username": user.lower()},
                "api_app_id": "A1",
                "token": "legacy",
                "trigger_id": "t2",
                "view": {
                    "id": "V0001",
                    "type": "modal",
                    "callback_id": view["callback_id"],
                    "private_metadata": view["private_metadata"],
                    "state": {
                        "values": {"comment": {"comment": {"type": "plain_text_input", "value": comment}}}
                    },
                },
            },
        )

    code, body = submit(APPROVER, "   ")
    assert code == 200 and body["response_action"] == "errors" and "comment" in body["errors"]
    code, _ = submit("UINTERN", "I do not like it")
    assert code == 200
    refusal = srv.answer(token)
    assert "not allowed to reject" in refusal["text"]
    code, _ = submit(APPROVER, "the <export> was the wrong version")
    assert code == 200
    deadline = time.monotonic() + 10
    while len(srv.answers_for(token)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    done = srv.answers_for(token)[-1]
    assert f"rejected by <@{APPROVER}>" in done["text"] and "&lt;export&gt;" in done["text"]
    status = warehouse.scalar("select status from restate_meta.restatements where restatement_id = 1")
    assert status == "cancelled"
    entries = changelog.entries(warehouse, "restate_meta", 1)
    rejected = [e for e in entries if e["event"] == "rejected"]
    assert [e["actor"] for e in rejected] == [f"slack:{APPROVER}"]
    assert rejected[0]["payload"]["comment"] == "the <export> was the wrong version"
    assert [e["payload"]["decision"] for e in entries if e["event"] == "approval_refused"] == ["reject"]


def test_reject_command_needs_a_reason_and_an_approver(serve_commands, warehouse) -> None:  # noqa: F811
    srv = serve_commands()
    _, _, token, _, _ = srv.post("reject 1", user_id=APPROVER)
    assert "Say why" in srv.answer(token)["text"]
    _, _, token, _, _ = srv.post("reject 1 numbers still wrong", user_id="UINTERN")
    assert "not allowed to reject" in srv.answer(token)["text"]
    _, _, token, _, _ = srv.post("reject 1 numbers still wrong", user_id=APPROVER)
    assert f"rejected by <@{APPROVER}>" in srv.answer(token)["text"]
    assert (
        warehouse.scalar("select status from restate_meta.restatements where restatement_id = 1")
        == "cancelled"
    )
    _, _, token, _, _ = srv.post("approve 1", user_id=APPROVER)
    assert "cannot be approved: restatement 1 was withdrawn" in srv.answer(token)["text"]


def test_the_reason_is_answered_only_to_slack_hosts(serve_commands, warehouse) -> None:  # noqa: F811
    """A view's private_metadata names where the answer goes: anything but Slack's hosts (or
    the configured API host) is never posted to, even in a correctly signed request."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits: list[str] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    other = ThreadingHTTPServer(("127.0.0.2", 0), Elsewhere)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    srv = serve_commands()
    try:
        code, _ = _post(
            srv,
            {
                "type": "view_submission",
                "team": {"id": "T1"},
                "user": {"id": APPROVER, "username": "approver"},
                "api_app_id": "A1",
                "token": "legacy",
                "trigger_id": "t3",
                "view": {
                    "id": "V0002",
                    "type": "modal",
                    "callback_id": "restatement_reject_reason",
                    "private_metadata": json.dumps(
                        {"restatement_id": 1, "response_url": f"http://127.0.0.2:{other.server_port}/steal"}
                    ),
                    "state": {
                        "values": {"comment": {"comment": {"type": "plain_text_input", "value": "no"}}}
                    },
                },
            },
        )
        assert code == 200
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the rejection itself is done through the gate
            if (
                warehouse.scalar("select status from restate_meta.restatements where restatement_id = 1")
                == "cancelled"
            ):
                break
            time.sleep(0.05)
        time.sleep(0.5)
        assert hits == []
    finally:
        other.shutdown()


def test_a_requester_known_by_her_slack_id_cannot_approve_her_own(
    serve_commands,  # noqa: F811
    warehouse,  # noqa: F811
    tmp_path,
) -> None:
    """RESTATE_SLACK_PEOPLE says who each Slack user is: the requester's click is refused."""
    from restate.settings import Settings
    from restate.state.duties import DutyError, check_approver, load
    from tests.notifications.conftest import make_settings

    s: Settings = make_settings(tmp_path, slack_approvers=[APPROVER], slack_people={APPROVER: "Alice"})
    duties = load(warehouse, s, 1)  # restatement 1 was requested by alice
    with pytest.raises(DutyError, match="requested restatement 1"):
        check_approver(s, duties, f"slack:{APPROVER}")
    unmapped = make_settings(tmp_path, slack_approvers=[APPROVER])
    assert check_approver(unmapped, duties, f"slack:{APPROVER}") == f"slack:{APPROVER}"


def test_an_approve_button_never_approves_numbers_newer_than_its_notice(
    serve_commands,  # noqa: F811
    warehouse,  # noqa: F811
) -> None:
    """The button carries the validation its notice showed: once another validation
    replaced it, the click is refused; the current one approves."""
    from notifications.dispatch import build_context

    changelog.append(warehouse, "restate_meta", "validated", {"validation_id": "v1"}, restatement_id=1)
    ctx = build_context(warehouse, make_settings_for_notice(), 1, NoticeEvent.APPROVAL_NEEDED)
    blocks = compose(ctx).blocks
    approve = next(
        e for b in blocks if b["type"] == "actions" for e in b["elements"] if e["action_id"] == APPROVE_ACTION
    )
    assert approve["value"] == "1:v1"  # the seeded restatement's latest validation
    srv = serve_commands()
    code, token, _ = _click(srv, APPROVE_ACTION, APPROVER, value="1:v0-older")
    assert code == 200
    assert "validated again since this notice" in srv.answer(token)["text"]
    assert _approved_by(warehouse) is None
    code, token, _ = _click(srv, APPROVE_ACTION, APPROVER, value=approve["value"])
    assert f"approved by <@{APPROVER}>" in json.dumps(srv.answer(token))
    assert _approved_by(warehouse) == f"slack:{APPROVER}"


def make_settings_for_notice() -> Any:
    from pathlib import Path

    from tests.notifications.conftest import make_settings

    return make_settings(Path("."))
