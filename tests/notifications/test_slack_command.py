"""/restatement over real HTTP: uvicorn serving the FastAPI + Bolt app on a free port."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

import pytest
import uvicorn

from interfaces.slack import create_app
from restate.engines.duckdb import DuckDBEngine
from restate.state import changelog, status
from tests.notifications.conftest import (
    SIGNING_SECRET,
    SLACK_TOKEN,
    SlackStandIn,
    free_port,
    make_settings,
    seed_restatement,
)

pytestmark = pytest.mark.slow

APPROVER = "UAPPROVER"


@pytest.fixture
def warehouse(engine: DuckDBEngine) -> DuckDBEngine:
    seed_restatement(engine)
    return engine


class CommandServer:
    def __init__(self, url: str, slack: SlackStandIn) -> None:
        self.url = url
        self.slack = slack

    def post(
        self,
        text: str,
        user_id: str = "UFINANCE",
        *,
        secret: str = SIGNING_SECRET,
        timestamp: int | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any], str, bytes, dict[str, str]]:
        """Send a slash command as Slack does; returns (status, json, response token, body,
        headers) so a test can replay exactly the same request."""
        token = uuid.uuid4().hex
        if body is None:
            body = urlencode(
                {
                    "token": "legacy",
                    "team_id": "T1",
                    "team_domain": "finance",
                    "channel_id": "CFIN",
                    "channel_name": "finance-reporting",
                    "user_id": user_id,
                    "user_name": user_id.lower(),
                    "command": "/restatement",
                    "text": text,
                    "api_app_id": "A1",
                    "response_url": f"{self.slack.url}/response/{token}",
                    "trigger_id": "1.2.3",
                }
            ).encode()
        if headers is None:
            ts = str(int(time.time()) if timestamp is None else timestamp)
            base = f"v0:{ts}:".encode() + body
            sig = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": sig,
            }
        req = Request(f"{self.url}/slack/commands", data=body, headers=headers, method="POST")
        try:
            with urlopen(req, timeout=10) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw or b"{}"), token, body, headers
        except HTTPError as err:
            return err.code, json.loads(err.read() or b"{}"), token, body, headers

    def answer(self, token: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for call in self.slack.of("response"):
                if call.params["_token"] == token:
                    return call.params
            time.sleep(0.02)
        raise AssertionError("no answer was posted to the response_url")

    def answers_for(self, token: str) -> list[dict[str, Any]]:
        return [c.params for c in self.slack.of("response") if c.params["_token"] == token]


@pytest.fixture
def serve_commands(
    tmp_path: Path, slack_api: SlackStandIn, warehouse: DuckDBEngine
) -> Iterator[Callable[..., CommandServer]]:
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(lookup_delay_s: float = 0.0) -> CommandServer:
        settings = make_settings(
            tmp_path,
            slack_token=SLACK_TOKEN,
            slack_signing_secret=SIGNING_SECRET,
            slack_base_url=slack_api.api_url,
            slack_approvers=[APPROVER],
        )

        def slow_engine() -> DuckDBEngine:
            time.sleep(lookup_delay_s)  # a slow warehouse
            return DuckDBEngine(settings.warehouse_path)

        app = create_app(settings, engine_factory=slow_engine if lookup_delay_s else None)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        servers.append((server, thread))
        return CommandServer(f"http://127.0.0.1:{port}", slack_api)

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def test_signed_status_is_acked_at_once_and_answered_via_response_url(serve_commands, warehouse, slack_api):
    srv = serve_commands(lookup_delay_s=3.5)  # slower than Slack's 3 s ack deadline
    assert len(slack_api.of("auth.test")) == 1  # the app checked its token at start

    started = time.monotonic()
    code, ack, token, _, _ = srv.post("status 1")
    acked_in = time.monotonic() - started
    assert code == 200 and acked_in < 2.0
    assert "Looking that up" in ack["text"]

    answer = srv.answer(token)
    assert time.monotonic() - started >= 3.5  # it came later, through the response_url
    expected = status.restatement_status(warehouse, make_settings(Path(".")), 1)
    assert expected is not None
    assert f"Restatement #1* — *{expected['phase']}* (`{expected['status']}`)" in answer["text"]
    assert "fct_revenue_daily" in answer["text"] and "FIN-1234" in answer["text"]
    assert f"{expected['chunks_done']}/{expected['chunks_total']} chunks done" in answer["text"]
    assert answer["response_type"] == "ephemeral"


def test_forged_stale_and_replayed_requests_get_401(serve_commands, slack_api):
    srv = serve_commands()
    forged = srv.post("status 1", secret="not-the-signing-secret")
    stale = srv.post("status 1", timestamp=int(time.time()) - 6 * 60)  # correctly signed
    unsigned = srv.post("status 1", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert [forged[0], stale[0], unsigned[0]] == [401, 401, 401]

    code, _, token, body, headers = srv.post("status 1")
    assert code == 200
    srv.answer(token)
    replay = srv.post("status 1", body=body, headers=headers)
    assert replay[0] == 401
    # A tampered body under a valid signature is refused too.
    tampered = srv.post("status 1", body=body.replace(b"status", b"approve"), headers=headers)
    assert tampered[0] == 401

    time.sleep(0.5)  # rejected requests must not have produced answers
    assert [srv.answers_for(t) for t in (forged[2], stale[2], unsigned[2])] == [[], [], []]
    assert len(srv.answers_for(token)) == 1


def test_approve_by_an_unlisted_user_is_refused_and_audited(serve_commands, warehouse):
    srv = serve_commands()
    code, _, token, _, _ = srv.post("approve 1 numbers look right", user_id="UINTERN")
    assert code == 200
    answer = srv.answer(token)
    assert "not allowed to approve" in answer["text"]

    refused = [e for e in changelog.entries(warehouse, "restate_meta", 1) if e["event"] == "approval_refused"]
    assert len(refused) == 1
    assert refused[0]["payload"]["slack_user_id"] == "UINTERN"
    assert refused[0]["actor"] == "slack:UINTERN"
    assert (
        warehouse.scalar("select approved_by from restate_meta.restatements where restatement_id = 1") is None
    )

    # The configured approver can.
    code, _, token, _, _ = srv.post("approve 1 numbers look right", user_id=APPROVER)
    answer = srv.answer(token)
    assert "approved by" in answer["text"] and answer["response_type"] == "in_channel"
    assert warehouse.query(
        "select approved_by, approval_comment from restate_meta.restatements where restatement_id = 1"
    ) == [(f"slack:{APPROVER}", "numbers look right")]
    assert changelog.verify(warehouse, "restate_meta") is None


def test_unknown_ids_and_bad_input_get_clear_messages(serve_commands):
    srv = serve_commands()
    answers = {}
    for text, user in [
        ("status 999", "UFINANCE"),
        ("diff 999", "UFINANCE"),
        ("approve 999", APPROVER),
        ("status abc", "UFINANCE"),
    ]:
        code, _, token, _, _ = srv.post(text, user_id=user)
        assert code == 200
        answers[text] = srv.answer(token)["text"]
    for text in ("status 999", "diff 999", "approve 999"):
        assert answers[text].startswith("There is no restatement #999."), answers[text]
    assert "`abc` is not a restatement id" in answers["status abc"]

    code, ack, _, _, _ = srv.post("")  # no subcommand: usage, straight in the ack
    assert code == 200 and "/restatement status [ID]" in ack["text"]


def test_diff_and_list_show_the_stored_numbers(serve_commands, warehouse):
    srv = serve_commands()
    _, _, token, _, _ = srv.post("diff 1")
    text = srv.answer(token)["text"]
    monthly = status.diff_by_month(warehouse, make_settings(Path(".")), 1)
    assert [m["month"] for m in monthly] == ["2026-01", "2026-02"]
    for m in monthly:
        assert f"{m['as_reported']:,.2f}" in text and f"{m['delta']:+,.2f}" in text
    total = sum(m["delta"] for m in monthly)
    assert f"{total:+,.2f}" in text  # -149.50

    _, _, token, _, _ = srv.post("list")
    assert "#1" in srv.answer(token)["text"]
