"""`POST /stripe/webhook`: Stripe's signed deliveries, acknowledged once durable.

- the signature (`Stripe-Signature`, HMAC-SHA256 over "<t>.<raw body>" with the endpoint's
  secret) is checked by the `stripe` library with the tolerance window
  (RESTATE_WEBHOOK_TOLERANCE_S): a forged or stale delivery gets 400;
- an exact repeat of a signature header is a replay: 400, nothing recorded (Stripe signs
  every retry anew);
- the event's tokenised fields are committed to the journal (sources.stripe_webhooks)
  before the 200: a retry of a recorded event id answers 200 with `duplicate: true`;
- a body over 256 KB is refused (413) before it is parsed.
`restate webhooks flush` (or the payments deployment) lands the journal into the landing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import stripe
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from restate.settings import Settings
from sources.stripe_webhooks import Journal, parse_body, payment_event

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024


def create_app(settings: Settings, journal: Journal | None = None) -> FastAPI:
    if settings.stripe_webhook_secret is None:
        raise ValueError("RESTATE_STRIPE_WEBHOOK_SECRET is not set (the endpoint's whsec_... secret)")
    secret = settings.stripe_webhook_secret.get_secret_value()
    journal = journal or Journal(settings.webhook_journal_path)
    app = FastAPI(title="restate payment webhooks", docs_url=None, redoc_url=None)
    app.state.journal = journal

    @app.post("/stripe/webhook")
    async def receive(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return JSONResponse({"error": "body too large"}, status_code=413)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return JSONResponse({"error": "body too large"}, status_code=413)
        header = request.headers.get("stripe-signature")
        try:
            stripe.WebhookSignature.verify_header(
                body.decode("utf-8"), header, secret, tolerance=settings.webhook_tolerance_s
            )
        except (stripe.SignatureVerificationError, UnicodeDecodeError) as exc:
            return JSONResponse({"error": f"signature refused: {exc}"}, status_code=400)
        assert header is not None  # verify_header refuses a missing one
        try:
            event = payment_event(parse_body(body))
        except ValueError as exc:
            return JSONResponse({"error": f"not a payment event: {exc}"}, status_code=400)
        # Answered once the journal's batch holding it is committed (on disk).
        outcome = await asyncio.wrap_future(journal.submit(header, event))
        if outcome == "replay":
            return JSONResponse({"error": "replayed delivery"}, status_code=400)
        body_out: dict[str, Any] = {"received": True, "duplicate": outcome == "duplicate"}
        return JSONResponse(body_out)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, **journal.counts()}

    return app


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8088) -> None:
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
