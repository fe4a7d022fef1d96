# ruff: noqa: F811  (pytest fixtures imported from test_slack_command)
"""/restatement against hostile input over real HTTP: oversized bodies are refused (413)
before they are read, and user text in replies is escaped as Slack requires."""

from __future__ import annotations

import hashlib
import hmac
import socket
import time
from urllib.parse import urlsplit

import pytest

from tests.notifications.conftest import SIGNING_SECRET
from tests.notifications.test_slack_command import (  # noqa: F401  (fixtures)
    CommandServer,
    serve_commands,
    warehouse,
)

pytestmark = pytest.mark.slow

MAX_BODY_BYTES = 64 * 1024  # the documented limit: Slack commands are a few KB
HOSTILE = "<!channel> refunds & <https://evil.example|click here>"


def _raw(srv: CommandServer, head: str, body_parts: list[bytes], timeout: float = 10.0) -> int:
    """Send a hand-made request; return the HTTP status the server answers with."""
    url = urlsplit(srv.url)
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as sock:
        sock.sendall(head.encode())
        try:
            for part in body_parts:
                sock.sendall(part)
        except OSError:
            pass  # the server may answer and close before the body is complete
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1])


def _signed_headers(body: bytes) -> str:
    ts = str(int(time.time()))
    sig = "v0=" + hmac.new(SIGNING_SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return f"X-Slack-Request-Timestamp: {ts}\r\nX-Slack-Signature: {sig}\r\n"


def test_body_over_the_limit_is_413_even_when_signed(serve_commands):
    srv = serve_commands()
    padding = "x" * (MAX_BODY_BYTES + 1)
    code, _, _, _, _ = srv.post(f"status 1 {padding}")  # correctly signed, just too big
    assert code == 413
    code, _, _, _, _ = srv.post("status 1")  # a normal command still works
    assert code == 200


def test_huge_declared_length_is_refused_before_reading(serve_commands):
    """400 MB announced, a few bytes sent: the answer comes at once, not after the body."""
    srv = serve_commands()
    head = (
        "POST /slack/commands HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"{_signed_headers(b'text=status')}Content-Length: 400000000\r\n\r\n"
    )
    started = time.monotonic()
    assert _raw(srv, head, [b"text=status"], timeout=5.0) == 413
    assert time.monotonic() - started < 3.0


def test_chunked_body_is_cut_off_past_the_limit(serve_commands):
    srv = serve_commands()
    head = (
        "POST /slack/commands HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"{_signed_headers(b'')}Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"a" * 16384
    chunks = [b"%x\r\n" % len(piece) + piece + b"\r\n"] * ((MAX_BODY_BYTES // len(piece)) + 4)
    assert _raw(srv, head, [*chunks, b"0\r\n\r\n"]) == 413


def test_user_text_in_replies_is_escaped(serve_commands, warehouse):
    warehouse.execute(
        "update restate_meta.restatements set reason = ?, requested_by = ? where restatement_id = 1",
        [HOSTILE, "<@U0BOSS>"],
    )
    srv = serve_commands()
    answers = {}
    for text in ("status 1", "list", "status <!here>"):
        code, ack, token, _, _ = srv.post(text)
        assert code == 200
        assert "<!here>" not in ack["text"], ack["text"]
        answers[text] = srv.answer(token)["text"]
    for text in ("status 1", "list"):
        reply = answers[text]
        assert "&lt;!channel&gt; refunds &amp; &lt;https://evil.example|click here&gt;" in reply, reply
        assert "<!channel>" not in reply and "<https://evil" not in reply and "<@U0BOSS>" not in reply
        assert "&lt;@U0BOSS&gt;" in reply
    assert "&lt;!here&gt;" in answers["status <!here>"] and "<!here>" not in answers["status <!here>"]
