"""Local stand-ins for the outside world: a Slack Web API server, a real SMTP server
(aiosmtpd), a real DuckDB file with the meta schema, and the real dbt manifest."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from aiosmtpd.controller import Controller

from restate.engines.duckdb import DuckDBEngine
from restate.settings import TELEMETRY_OFF, Settings
from restate.state.meta import init_meta

SLACK_TOKEN = "xoxb-test-token"
SIGNING_SECRET = "test-signing-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- Slack stand-in


@dataclass
class SlackCall:
    method: str  # API method ('chat.postMessage') or 'upload' / 'response'
    params: dict[str, Any]
    body: bytes
    headers: dict[str, str]
    ok: bool


@dataclass
class SlackStandIn:
    """Answers the Web API methods restate uses and records every request."""

    url: str = ""
    calls: list[SlackCall] = field(default_factory=list)
    # Refuse chat.postMessage (HTTP 429, ratelimited) once this many posts succeeded.
    refuse_posts_after: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def of(self, method: str, ok: bool | None = True) -> list[SlackCall]:
        with self.lock:
            return [c for c in self.calls if c.method == method and (ok is None or c.ok == ok)]

    def posted_channels(self) -> list[str]:
        return sorted(c.params["channel"] for c in self.of("chat.postMessage"))

    def wait_for(self, method: str, count: int = 1, timeout: float = 10.0) -> list[SlackCall]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.of(method, ok=None)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"no {method} request arrived within {timeout}s")


def channel_id(name: str) -> str:
    return "C" + hashlib.sha256(name.encode()).hexdigest()[:9].upper()


def _handler(state: SlackStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            url = urlsplit(self.path)
            params: dict[str, Any] = dict(parse_qsl(url.query))
            ctype = self.headers.get("Content-Type", "")
            if ctype.startswith("application/json"):
                params.update(json.loads(raw or b"{}"))
            elif ctype.startswith("application/x-www-form-urlencoded") and not (
                url.path.startswith("/upload/")
            ):
                params.update(parse_qsl(raw.decode()))
            headers = {k.lower(): v for k, v in self.headers.items()}
            path = url.path
            if path.startswith("/upload/"):
                self._record("upload", {"file_id": path.rsplit("/", 1)[1]}, raw, headers, True)
                body = f"OK - {len(raw)}".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if path.startswith("/response/"):
                params["_token"] = path.rsplit("/", 1)[1]
                self._record("response", params, raw, headers, True)
                self._reply(200, {"ok": True})
                return
            method = path.removeprefix("/api/")
            if headers.get("authorization") != f"Bearer {SLACK_TOKEN}":
                self._record(method, params, raw, headers, False)
                self._reply(200, {"ok": False, "error": "invalid_auth"})
                return
            if method == "auth.test":
                self._record(method, params, raw, headers, True)
                self._reply(
                    200,
                    {
                        "ok": True,
                        "user_id": "UBOT",
                        "bot_id": "BBOT",
                        "team_id": "T1",
                        "team": "Finance",
                        "user": "restate",
                    },
                )
            elif method == "chat.postMessage":
                with state.lock:
                    done = sum(1 for c in state.calls if c.method == method and c.ok)
                limit = state.refuse_posts_after
                if limit is not None and done >= limit:
                    self._record(method, params, raw, headers, False)
                    self._reply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"})
                    return
                self._record(method, params, raw, headers, True)
                self._reply(
                    200,
                    {
                        "ok": True,
                        "channel": channel_id(params["channel"]),
                        "ts": f"{time.time():.6f}",
                        "message": {"text": params.get("text")},
                    },
                )
            elif method == "views.open":
                self._record(method, params, raw, headers, True)
                view = params.get("view")
                view = json.loads(view) if isinstance(view, str) else view
                self._reply(200, {"ok": True, "view": {**(view or {}), "id": "V0001"}})
            elif method == "files.getUploadURLExternal":
                self._record(method, params, raw, headers, True)
                fid = "F" + hashlib.sha256(raw + str(time.time()).encode()).hexdigest()[:9].upper()
                self._reply(200, {"ok": True, "file_id": fid, "upload_url": f"{state.url}/upload/{fid}"})
            elif method == "files.completeUploadExternal":
                self._record(method, params, raw, headers, True)
                files = json.loads(params["files"])
                self._reply(
                    200, {"ok": True, "files": [{"id": f["id"], "title": f.get("title")} for f in files]}
                )
            else:
                self._record(method, params, raw, headers, False)
                self._reply(200, {"ok": False, "error": "unknown_method"})

        def _record(
            self, method: str, params: dict[str, Any], raw: bytes, headers: dict[str, str], ok: bool
        ) -> None:
            with state.lock:
                state.calls.append(SlackCall(method, params, raw, headers, ok))

    return Handler


@pytest.fixture
def slack_api() -> Iterator[SlackStandIn]:
    state = SlackStandIn()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


# ---------------------------------------------------------------- SMTP


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 Message accepted for delivery"

    def recipients(self) -> list[str]:
        return sorted(r for _, rcpts, _ in self.messages for r in rcpts)


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


# ---------------------------------------------------------------- warehouse, settings


@pytest.fixture(scope="session")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import os

    from restate.dbt.runner import DbtProject

    os.environ.update(TELEMETRY_OFF)
    return DbtProject(Settings(data_dir=tmp_path_factory.mktemp("dbt"))).manifest()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[DuckDBEngine]:
    eng = DuckDBEngine(tmp_path / "warehouse.duckdb")
    init_meta(eng, "restate_meta")
    yield eng
    eng.close()


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "meta_schema": "restate_meta",
        "prod_schema": "analytics",
        "slack_platform_channel": "#data-platform",
        "email_from": "restate@finance.example.com",
        "slack_token": None,
        "smtp_host": None,
    }
    values.update(overrides)
    return Settings(**values)


# Restatement #1's stored plan, as planning writes it (with its model's contract).
SEEDED_PLAN: dict[str, Any] = {
    "restatement_id": 1,
    "selector": "fct_revenue_daily+",
    "models": ["fct_revenue_daily"],
    "follow_views": [],
    "period_start": "2026-01-01",
    "period_end": "2026-02-28",
    "accounts": None,
    "reason": "Refunds not netted",
    "ticket": "FIN-1234",
    "requested_by": "alice",
    "requires_approval": True,
    "chunks": [],
    "exposures": [],
    "source_watermark": None,
    "code_version": {},
    "contracts": {
        "fct_revenue_daily": {
            "model": "fct_revenue_daily",
            "unique_id": "model.restate_billing.fct_revenue_daily",
            "date_column": "event_date",
            "entity_column": "account_id",
            "keys": ["event_date", "account_id", "currency"],
            "metrics": ["net_revenue"],
            "dimensions": ["currency"],
            "upstream": {"model": "int_deduped_events", "processed_at": "ingested_at"},
        }
    },
}


def seed_restatement(engine: DuckDBEngine) -> None:
    """Restatement #1: validated, needs approval, two chunks done, a monthly diff."""
    now = datetime(2026, 11, 1, 9, 0)
    engine.execute(
        "insert into restate_meta.restatements values (1, ?, 'validated', 'fct_revenue_daily', "
        "'fct_revenue_daily', '2026-01-01', '2026-02-28', null, 'Refunds not netted', "
        "'FIN-1234', 'alice', null, null, true, null, '{}', ?, 'restate_1', ?)",
        [now, json.dumps(SEEDED_PLAN), now],
    )
    for chunk, start, end in [("c1", "2026-01-01", "2026-01-31"), ("c2", "2026-02-01", "2026-02-28")]:
        engine.execute(
            "insert into restate_meta.restatement_partitions (restatement_id, chunk_id, "
            "period_start, period_end, bucket, buckets, status) values (1, ?, ?, ?, 0, 1, 'done')",
            [chunk, start, end],
        )
    engine.execute(
        "insert into restate_meta.validations values ('v1', 1, 'restatement', ?, true, null, null, '{}')",
        [now],
    )
    for day, before, after in [("2026-01-15", "1000.00", "900.00"), ("2026-02-10", "500.00", "450.50")]:
        engine.execute(
            "insert into restate_meta.restatement_diffs values (1, 'fct_revenue_daily', ?, 'currency=USD', "
            "'net_revenue', ?, ?, ?, null, null)",
            [day, Decimal(before), Decimal(after), Decimal(after) - Decimal(before)],
        )
