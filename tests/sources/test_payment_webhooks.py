"""Payment webhooks over real HTTP (uvicorn on 127.0.0.1), signed with the `stripe`
library's own signer: forged, stale and replayed deliveries are refused; retries and
out-of-order deliveries land each event once; nothing is acknowledged before it is on
disk; a card-number-shaped value never reaches the journal or the landing."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import duckdb
import httpx
import pytest
import stripe
import uvicorn

from interfaces.webhooks import create_app
from restate.settings import Settings
from sources.stripe_webhooks import Journal, has_card_number
from tests.conftest import make_settings

SECRET = "whsec_test_restate"
CARD = "4242 4242 4242 4242"  # Luhn-valid, the shape a careless metadata field could carry


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, Settings, Journal]]:
    s = make_settings(tmp_path / "wh", stripe_webhook_secret=SECRET)
    journal = Journal(s.webhook_journal_path)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(s, journal), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", s, journal
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        journal.close()


def _event(
    event_id: str, kind: str, order_id: str, amount: int, status: str, created: int, **meta: str
) -> str:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": kind,
            "created": created,
            "data": {
                "object": {
                    "id": f"pi_{order_id}",
                    "object": "payment_intent",
                    "amount": amount,
                    "currency": "usd",
                    "status": status,
                    "payment_method": "pm_1Qtoken",
                    "metadata": {"order_id": order_id, **meta},
                }
            },
        }
    )


def _post(
    client: httpx.Client, url: str, body: str, secret: str = SECRET, at: int | None = None
) -> httpx.Response:
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=at or int(time.time()))
    return _send(client, url, body, header)


def _send(client: httpx.Client, url: str, body: str, header: str) -> httpx.Response:
    return client.post(
        f"{url}/stripe/webhook",
        content=body.encode(),
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )


def test_only_authentic_fresh_deliveries_are_recorded_each_event_once(
    receiver: tuple[str, Settings, Journal],
) -> None:
    url, s, journal = receiver
    now = int(time.time())
    succeeded = _event("evt_2", "payment_intent.succeeded", "NS-0000001", 12_345, "succeeded", now)
    created = _event(
        "evt_1", "payment_intent.created", "NS-0000001", 12_345, "requires_payment_method", now - 5
    )
    with httpx.Client(timeout=10) as client:
        # Out of order: the later event arrives first; both are recorded.
        assert _post(client, url, succeeded).json() == {"received": True, "duplicate": False}
        assert _post(client, url, created).json() == {"received": True, "duplicate": False}
        # Stripe retries with a new signature: acknowledged, not recorded again.
        time.sleep(1.1)
        retry = _post(client, url, succeeded)
        assert retry.status_code == 200 and retry.json()["duplicate"] is True
        # The very same delivery sent again (same signature): a replay, refused.
        header = stripe.WebhookSignature.generate_signature_header(
            _event("evt_3", "charge.refunded", "NS-0000002", 500, "succeeded", now), SECRET, timestamp=now
        )
        first = _send(
            client, url, _event("evt_3", "charge.refunded", "NS-0000002", 500, "succeeded", now), header
        )
        again = _send(
            client, url, _event("evt_3", "charge.refunded", "NS-0000002", 500, "succeeded", now), header
        )
        assert first.status_code == 200 and again.status_code == 400 and "replay" in again.text
        # Forged (another secret), stale (older than the tolerance), unsigned, tampered.
        forged = _event("evt_9", "payment_intent.succeeded", "NS-0000009", 1, "succeeded", now)
        assert _post(client, url, forged, secret="whsec_attacker").status_code == 400
        assert _post(client, url, forged, at=now - s.webhook_tolerance_s - 60).status_code == 400
        assert client.post(f"{url}/stripe/webhook", content=forged.encode()).status_code == 400
        signed = stripe.WebhookSignature.generate_signature_header(forged, SECRET)
        assert (
            _send(client, url, forged.replace('"amount": 1', '"amount": 100000'), signed).status_code == 400
        )
        # Too large: refused before it is parsed.
        big = client.post(
            f"{url}/stripe/webhook", content=b"x" * (300 * 1024), headers={"Stripe-Signature": "t=1"}
        )
        assert big.status_code == 413
    assert journal.counts() == {"events": 3, "landed": 0, "redacted": 0}

    path = journal.flush(s, s.webhook_folder)
    assert path is not None and journal.flush(s, s.webhook_folder) is None  # nothing left
    landed = duckdb.sql(
        f"select event_id, event_type, order_id, amount, currency, status, payment_method, received_at "
        f"from read_parquet('{s.landing}/payments/*/*.parquet') order by event_id"
    ).fetchall()
    assert [r[0] for r in landed] == ["evt_1", "evt_2", "evt_3"]
    assert landed[1][2:7] == ("NS-0000001", Decimal("123.45"), "USD", "succeeded", "pm_1Qtoken")
    assert all(r[7] is not None for r in landed)  # processing time for the load window
    assert journal.counts()["landed"] == 3


def test_a_card_number_never_lands(receiver: tuple[str, Settings, Journal]) -> None:
    url, s, journal = receiver
    body = _event("evt_card", "payment_intent.succeeded", CARD, 999, "succeeded", int(time.time()), note="x")
    with httpx.Client(timeout=10) as client:
        assert _post(client, url, body).status_code == 200
    assert journal.counts()["redacted"] == 1
    path = journal.flush(s, s.webhook_folder)
    assert path is not None
    digits = CARD.replace(" ", "")
    for stored in (Path(path), s.webhook_journal_path, Path(f"{s.webhook_journal_path}-wal")):
        if stored.exists():
            raw = stored.read_bytes()
            assert digits.encode() not in raw and CARD.encode() not in raw, stored
    row = duckdb.sql(f"select order_id, redacted from read_parquet('{path}')").fetchall()[0]
    assert row == ("[redacted]", True)


def test_card_number_shapes() -> None:
    assert has_card_number("4242424242424242") and has_card_number("card 4000-0566-5566-5556 ok")
    assert not has_card_number("4242424242424241")  # fails Luhn
    assert not has_card_number("NS-0000001") and not has_card_number("123456789012")  # too short
    assert not has_card_number("pm_1Qtoken")
