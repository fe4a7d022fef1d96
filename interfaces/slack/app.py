"""`/restatement` slash command: a slack-bolt App behind FastAPI, served by uvicorn.

    /restatement status [ID]      one restatement (the latest without ID)
    /restatement list             the most recent restatements
    /restatement diff ID          as reported vs restated, per month
    /restatement approve ID [comment]   listed approvers only (restate.state.duties)
    /restatement reject ID comment      listed approvers only: the restatement is withdrawn

The approval-needed notice carries Approve and Reject buttons (Slack interactivity,
Request URL `/slack/events`): Approve goes through the same gate as the command; Reject
opens a dialog for the reason, then the same gate. After a decision the notice's buttons
are replaced by who decided, so nobody clicks twice.

Every request must carry a valid Slack signature (X-Slack-Signature over the raw body
with the signing secret) and a timestamp at most 5 minutes old; anything else, and a
second delivery of an already-seen signature (a replay), is answered 401 before the
Bolt app sees it. A body over MAX_BODY_BYTES (64 KB) is answered 413 before it is read
(declared Content-Length) or as soon as it passes the limit (chunked). Bolt verifies the
signature again. User text in replies (reasons, names, ids) is escaped (&, <, >), so it
can never mention a channel or hide a link. The command is acknowledged at once
(Slack allows 3 seconds) and the answer is posted to the command's response_url by a
Bolt lazy listener, so slow warehouse lookups never time out the command.

The warehouse is opened per command and closed right after: DuckDB allows one writing
process per file, and a long-lived connection here would block loads and restatements.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from slack_bolt import Ack, App, Respond
from slack_bolt.adapter.fastapi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

from notifications.composer import (
    APPROVE_ACTION,
    REJECT_ACTION,
    month_table,
    text_table,
    totals_from_monthly,
    totals_table,
)
from restate.engines.base import Engine
from restate.settings import Settings
from restate.state import changelog

log = logging.getLogger(__name__)

COMMAND = "/restatement"
MAX_AGE_S = 300  # Slack's recommended window for X-Slack-Request-Timestamp
# Slash command payloads are a few KB; anything larger is refused (413) before it is read.
MAX_BODY_BYTES = 64 * 1024
REFUSED_EVENT = "approval_refused"

USAGE = (
    "Usage:\n"
    "• `/restatement status [ID]`: state of a restatement (latest without ID)\n"
    "• `/restatement list`: recent restatements\n"
    "• `/restatement diff ID`: as reported vs restated, per month\n"
    "• `/restatement approve ID [comment]`: approve (approvers only)\n"
    "• `/restatement reject ID comment`: reject, saying why (approvers only)"
)
_SUBCOMMANDS = ("status", "list", "diff", "approve", "reject")
REJECT_VIEW = "restatement_reject_reason"


@dataclass(frozen=True)
class Reply:
    text: str
    in_channel: bool = False  # visible to the channel, not only to the caller


class ReplayGuard:
    """Remembers signatures seen in the last MAX_AGE_S seconds: a signed request is
    accepted once. (In-process memory: with several server processes each has its own.)"""

    def __init__(self, max_age_s: int = MAX_AGE_S) -> None:
        self.max_age_s = max_age_s
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_use(self, signature: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        with self._lock:
            for sig, seen_at in list(self._seen.items()):
                if now - seen_at > 2 * self.max_age_s:
                    del self._seen[sig]
            if signature in self._seen:
                return False
            self._seen[signature] = now
            return True


# ------------------------------------------------------------------ command logic


def _parse_id(raw: str | None) -> int | None:
    if raw is None:
        return None
    raw = raw.lstrip("#")
    return int(raw) if raw.isdigit() else None


def slack_escape(value: Any) -> str:
    """User text as Slack shows it literally: &, < and > escaped (no mentions, no links).
    https://api.slack.com/reference/surfaces/formatting#escaping"""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _unknown(rid: int) -> Reply:
    return Reply(f"There is no restatement #{rid}. `/restatement list` shows the recent ones.")


def _fmt_status(st: dict[str, Any]) -> str:
    e = slack_escape
    chunks = f"{st.get('chunks_done', 0)}/{st.get('chunks_total', 0)} chunks done"
    phase = e(st.get("phase") or str(st.get("status", "")).replace("_", " "))
    lines = [
        f"*Restatement #{st['restatement_id']}* — *{phase}* (`{e(st.get('status'))}`)",
        f"Models: {e(', '.join(st.get('models') or []))}",
        f"Period: {st.get('period_start')} to {st.get('period_end')} · {chunks}",
        f"Reason: {e(st.get('reason') or '—')}"
        + (f" (ticket {e(st['ticket'])})" if st.get("ticket") else ""),
        f"Requested by {e(st.get('requested_by') or '—')} · approved by "
        f"{e(st.get('approved_by') or '—')}"
        + (" · approval required" if st.get("requires_approval") else ""),
    ]
    return "\n".join(lines)


def handle_command(
    engine_factory: Callable[[], Engine],
    settings: Settings,
    user_id: str,
    user_name: str,
    text: str,
) -> Reply:
    """Answer one `/restatement ...` command (runs after the ack, off the request path)."""
    from restate.state import status as api

    words = text.split()
    sub = words[0].lower() if words else "help"
    arg = words[1] if len(words) > 1 else None
    if sub not in _SUBCOMMANDS:
        return Reply(USAGE)
    rid = _parse_id(arg)
    if arg is not None and rid is None:
        return Reply(
            f"`{slack_escape(arg)}` is not a restatement id: use a number, e.g. `/restatement {sub} 7`."
        )
    if sub in ("diff", "approve") and rid is None:
        return Reply(f"Which restatement? e.g. `/restatement {sub} 7`.")
    engine = engine_factory()
    try:
        if sub == "list":
            rows = api.list_restatements(engine, settings, limit=10)
            if not rows:
                return Reply("No restatements yet.")
            return Reply(
                "\n".join(
                    f"• *#{r['restatement_id']}* {slack_escape(r.get('phase') or r['status'])} · "
                    f"{slack_escape(', '.join(r['models']))} · {r['period_start']} to {r['period_end']} · "
                    f"{slack_escape(r.get('requested_by') or '—')}: {slack_escape(r.get('reason') or '')}"
                    for r in rows
                )
            )
        if sub == "status":
            if rid is None:
                latest = api.list_restatements(engine, settings, limit=1)
                if not latest:
                    return Reply("No restatements yet.")
                return Reply(_fmt_status(latest[0]))
            st = api.restatement_status(engine, settings, rid)
            return _unknown(rid) if st is None else Reply(_fmt_status(st))
        assert rid is not None
        if sub == "diff":
            if api.restatement_status(engine, settings, rid) is None:
                return _unknown(rid)
            monthly = api.diff_by_month(engine, settings, rid)
            if not monthly:
                return Reply(f"Restatement #{rid} has no diff yet (it is computed after the run).")
            totals = text_table(totals_table(totals_from_monthly(monthly)))
            months = text_table(month_table(monthly))
            body = f"*Restatement #{rid}: as reported vs restated*\n```{totals}```\n```{months}```"
            return Reply(body[:3900])
        comment = " ".join(words[2:]) or None
        return decide(engine, settings, user_id, user_name, rid, sub, comment, f"{COMMAND} {text}".strip())
    finally:
        engine.close()


def decide(
    engine: Engine,
    settings: Settings,
    user_id: str,
    user_name: str,
    rid: int,
    decision: str,
    comment: str | None,
    command: str,
) -> Reply:
    """Approve or reject as the Slack user `slack:<user_id>`: the one segregation-of-duties
    gate (restate.state.duties) the CLI and the Prefect form go through. A refusal is
    recorded in the audit log with what was tried (`command`: the slash command or button)."""
    from restate import actions
    from restate.state import status as api
    from restate.state.duties import DutyError, require_listed

    verb = "approve" if decision == "approve" else "reject"
    st = api.restatement_status(engine, settings, rid)
    identity = f"slack:{user_id}"
    try:
        require_listed(settings, identity)
        if st is None:
            return _unknown(rid)
        if verb == "approve":
            api.approve(engine, settings, rid, identity, comment, run_by=identity)
        else:
            if not comment or not comment.strip():
                return Reply(f"Say why: `/restatement reject {rid} <reason>`.")
            actions.reject(settings, rid, identity, comment, run_by=identity)
    except DutyError as exc:
        with engine.transaction():
            changelog.append(
                engine,
                settings.meta_schema,
                REFUSED_EVENT,
                {
                    "slack_user_id": user_id,
                    "slack_user_name": user_name,
                    "requested_restatement": rid,
                    "command": command,
                    "decision": verb,
                    "reason": str(exc),
                },
                restatement_id=rid if st is not None else None,
                actor=identity,
            )
        why = slack_escape(exc)
        return Reply(
            f"Sorry <@{user_id}>, you are not allowed to {verb} restatement #{rid}: {why}. "
            "This attempt has been recorded in the audit log."
        )
    except ValueError as exc:
        return Reply(f"Restatement #{rid} cannot be {verb}d: {slack_escape(exc)}")
    if verb == "approve":
        return Reply(f"Restatement #{rid} approved by <@{user_id}>.", in_channel=True)
    return Reply(
        f"Restatement #{rid} rejected by <@{user_id}>: {slack_escape(comment)}. It is withdrawn.",
        in_channel=True,
    )


def _decided_blocks(message: dict[str, Any] | None, reply: Reply) -> list[dict[str, Any]] | None:
    """The notice as it was, its buttons replaced by the decision (None: no message to edit)."""
    blocks = (message or {}).get("blocks")
    if not isinstance(blocks, list):
        return None
    kept = [b for b in blocks if isinstance(b, dict) and b.get("type") != "actions"]
    return [*kept, {"type": "context", "elements": [{"type": "mrkdwn", "text": reply.text}]}]


def reject_dialog(rid: int, response_url: str | None) -> dict[str, Any]:
    """The modal the Reject button opens: one required reason."""
    return {
        "type": "modal",
        "callback_id": REJECT_VIEW,
        "private_metadata": json.dumps({"restatement_id": rid, "response_url": response_url}),
        "title": {"type": "plain_text", "text": f"Reject #{rid}"[:24]},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": "comment",
                "label": {"type": "plain_text", "text": "Why? (recorded in the audit log)"},
                "element": {"type": "plain_text_input", "action_id": "comment", "multiline": True},
            }
        ],
    }


# ------------------------------------------------------------------ Bolt + FastAPI


def _default_engine_factory(settings: Settings) -> Callable[[], Engine]:
    def factory() -> Engine:
        from restate.engines import connect

        return connect(settings)

    return factory


def build_bolt_app(settings: Settings, engine_factory: Callable[[], Engine] | None = None) -> App:
    if settings.slack_token is None or settings.slack_signing_secret is None:
        raise ValueError("the Slack app needs RESTATE_SLACK_TOKEN and RESTATE_SLACK_SIGNING_SECRET")
    factory = engine_factory or _default_engine_factory(settings)
    bolt = App(
        client=WebClient(token=settings.slack_token.get_secret_value(), base_url=settings.slack_base_url),
        signing_secret=settings.slack_signing_secret.get_secret_value(),
        process_before_response=False,
    )

    def acknowledge(ack: Ack, command: dict[str, Any]) -> None:
        words = (command.get("text") or "").split()
        if not words or words[0].lower() not in _SUBCOMMANDS:
            ack(text=USAGE, response_type="ephemeral")
        else:
            ack(
                text=f"Looking that up… (`{COMMAND} {slack_escape(command.get('text', '').strip())}`)",
                response_type="ephemeral",
            )

    def answer(command: dict[str, Any], respond: Respond) -> None:
        words = (command.get("text") or "").split()
        if not words or words[0].lower() not in _SUBCOMMANDS:
            return  # the ack already carried the usage text
        try:
            reply = handle_command(
                factory,
                settings,
                str(command.get("user_id", "")),
                str(command.get("user_name", "")),
                str(command.get("text", "")),
            )
        except Exception as exc:  # the caller must hear something; details go to the log
            log.exception("slash command failed: %s", command.get("text"))
            reply = Reply(f"Sorry, that failed: {type(exc).__name__}: {slack_escape(exc)}")
        respond(
            text=reply.text,
            response_type="in_channel" if reply.in_channel else "ephemeral",
            replace_original=False,
        )

    bolt.command(COMMAND)(ack=acknowledge, lazy=[answer])

    def clicked(body: dict[str, Any]) -> tuple[int | None, str, str]:
        action = (body.get("actions") or [{}])[0]
        user = body.get("user") or {}
        return (
            _parse_id(str(action.get("value", "")).partition(":")[0]),
            str(user.get("id", "")),
            str(user.get("username") or user.get("name") or ""),
        )

    def ack_only(ack: Ack) -> None:
        ack()

    def approve_clicked(body: dict[str, Any], respond: Respond) -> None:
        rid, user_id, user_name = clicked(body)
        if rid is None:
            respond(text="That button carries no restatement id.", response_type="ephemeral")
            return
        shown = str(((body.get("actions") or [{}])[0]).get("value", "")).partition(":")[2] or None
        engine = factory()
        try:
            from restate.state import duties

            try:
                latest = duties.load(engine, settings, rid).validation_id
            except ValueError:  # no such restatement: decide() says so
                latest = None
            if shown is not None and latest is not None and str(latest) != shown:
                reply = Reply(
                    f"Restatement #{rid} was validated again since this notice: its numbers may "
                    f"differ from what you saw. See the newer notice or `/restatement diff {rid}`."
                )
            else:
                reply = decide(engine, settings, user_id, user_name, rid, "approve", None, "button: Approve")
        finally:
            engine.close()
        _answer_click(respond, body, reply)

    def reject_clicked(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        rid, _, _ = clicked(body)
        if rid is not None and body.get("trigger_id"):
            client.views_open(
                trigger_id=body["trigger_id"], view=reject_dialog(rid, body.get("response_url"))
            )

    def reject_checked(ack: Ack, view: dict[str, Any]) -> None:
        value = ((view.get("state") or {}).get("values") or {}).get("comment", {}).get("comment", {})
        if not str(value.get("value") or "").strip():
            ack(response_action="errors", errors={"comment": "Say why the restatement is rejected."})
        else:
            ack()

    def reject_submitted(body: dict[str, Any], view: dict[str, Any]) -> None:
        try:
            meta = json.loads(view.get("private_metadata") or "{}")
            rid = int(meta["restatement_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("reject dialog without a restatement id")
            return
        comment = str(view["state"]["values"]["comment"]["comment"].get("value") or "").strip()
        if not comment:
            return  # the ack asked for it
        user = body.get("user") or {}
        engine = factory()
        try:
            reply = decide(
                engine,
                settings,
                str(user.get("id", "")),
                str(user.get("username") or user.get("name") or ""),
                rid,
                "reject",
                comment,
                "button: Reject",
            )
        finally:
            engine.close()
        if _slack_url(settings, meta.get("response_url")):
            WebhookClient(str(meta["response_url"])).send(
                text=reply.text,
                response_type="in_channel" if reply.in_channel else "ephemeral",
                replace_original=False,
            )

    bolt.action(APPROVE_ACTION)(ack=ack_only, lazy=[approve_clicked])
    bolt.action(REJECT_ACTION)(reject_clicked)
    bolt.view(REJECT_VIEW)(ack=reject_checked, lazy=[reject_submitted])
    return bolt


def _slack_url(settings: Settings, url: Any) -> bool:
    """Only Slack's own response URLs (or the configured API host's) are ever posted to."""
    from urllib.parse import urlsplit

    if not isinstance(url, str):
        return False
    target = urlsplit(url)
    allowed = {("https", "hooks.slack.com"), ("https", "slack.com")}
    api = urlsplit(settings.slack_base_url)
    allowed.add((api.scheme, api.netloc))
    return (target.scheme, target.netloc) in allowed


def _answer_click(respond: Respond, body: dict[str, Any], reply: Reply) -> None:
    """A decision replaces the notice's buttons with who decided; a refusal or an error is
    told to the clicker alone and leaves the buttons."""
    blocks = _decided_blocks(body.get("message"), reply) if reply.in_channel else None
    if blocks is not None:
        respond(text=reply.text, blocks=blocks, replace_original=True)
    else:
        respond(
            text=reply.text,
            response_type="in_channel" if reply.in_channel else "ephemeral",
            replace_original=False,
        )


def create_app(settings: Settings, engine_factory: Callable[[], Engine] | None = None) -> FastAPI:
    """The FastAPI app: POST /slack/commands (also /slack/events), GET /healthz.

    Building it calls Slack's auth.test once (at settings.slack_base_url) to check the token.
    """
    bolt = build_bolt_app(settings, engine_factory)
    handler = SlackRequestHandler(bolt)
    assert settings.slack_signing_secret is not None
    verifier = SignatureVerifier(settings.slack_signing_secret.get_secret_value())
    replays = ReplayGuard()
    api = FastAPI(title="restate Slack commands", docs_url=None, redoc_url=None)

    async def slack_endpoint(req: Request) -> Response:
        body = await _limited_body(req)
        if body is None:
            return JSONResponse({"error": f"body over {MAX_BODY_BYTES} bytes"}, status_code=413)
        timestamp = req.headers.get("x-slack-request-timestamp", "")
        signature = req.headers.get("x-slack-signature", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > MAX_AGE_S:
            return JSONResponse({"error": "stale or missing timestamp"}, status_code=401)
        if not verifier.is_valid(body, timestamp, signature):
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        if not replays.first_use(signature):
            return JSONResponse({"error": "replayed request"}, status_code=401)
        return await handler.handle(_with_body(req, body))

    api.add_api_route("/slack/commands", slack_endpoint, methods=["POST"])
    api.add_api_route("/slack/events", slack_endpoint, methods=["POST"])

    @api.get("/healthz")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    return api


async def _limited_body(req: Request) -> bytes | None:
    """The raw body, or None when it is over MAX_BODY_BYTES: a declared Content-Length is
    checked before anything is read, a chunked body is cut off as soon as it passes."""
    declared = req.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        return None
    body = bytearray()
    async for chunk in req.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return None
    return bytes(body)


def _with_body(req: Request, body: bytes) -> Request:
    """The same request with its (already read) body replayed to Bolt's adapter."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(req.scope, receive)


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 3000) -> None:
    """Run the slash command app until interrupted (the `restate slack serve` command)."""
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
