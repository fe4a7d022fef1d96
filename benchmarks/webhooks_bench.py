"""Payment webhook receiver on this machine: throughput and acknowledgement latency
(p50, p99) of signed deliveries over real HTTP, and where the time of one goes
(signature check, parsing, the durable journal commit). Seed 003's goal: 8,000 events/s
sustained with p99 <= 50 ms. Prints one JSON object; `make bench-webhooks` runs it.

BENCH_WEBHOOK_EVENTS (default 20,000) deliveries, BENCH_WEBHOOK_CONCURRENCY (default 64)
in flight over keep-alive connections, from one asyncio client process against one
uvicorn server process (the receiver as deployed: `restate webhooks serve`), both on this
machine's cores.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import stripe

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sources.stripe_webhooks import Journal, parse_body, payment_event  # noqa: E402

EVENTS = int(os.environ.get("BENCH_WEBHOOK_EVENTS", "20000"))
CONCURRENCY = int(os.environ.get("BENCH_WEBHOOK_CONCURRENCY", "64"))
SECRET = "whsec_bench"


def body(i: int) -> str:
    return json.dumps(
        {
            "id": f"evt_{i:09d}",
            "object": "event",
            "type": "payment_intent.succeeded",
            "created": int(time.time()),
            "data": {
                "object": {
                    "id": f"pi_{i:09d}",
                    "amount": 1000 + i % 5000,
                    "currency": "usd",
                    "status": "succeeded",
                    "payment_method": f"pm_{i:09d}",
                    "metadata": {"order_id": f"NS-{i:07d}"},
                }
            },
        }
    )


async def deliver(port: int, bodies: list[str]) -> tuple[float, list[float], int]:
    """POST every body over CONCURRENCY keep-alive HTTP/1.1 connections (plain asyncio
    streams: an httpx client tops out near 400 requests/s here and would measure itself),
    each signed before the clock starts. Latency: request written -> response read."""
    requests = []
    for b in bodies:
        header = stripe.WebhookSignature.generate_signature_header(b, SECRET)
        data = b.encode()
        requests.append(
            (
                f"POST /stripe/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Stripe-Signature: {header}\r\nContent-Length: {len(data)}\r\n\r\n"
            ).encode()
            + data
        )
    latencies: list[float] = []
    failures = 0
    pending = list(reversed(requests))

    async def worker() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while pending:
            request = pending.pop()
            started = time.perf_counter()
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - started) * 1000)
            failures += not head.startswith(b"HTTP/1.1 200")
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return time.perf_counter() - started, latencies, failures


def pieces(tmp: Path) -> dict[str, float]:
    """Microseconds per event of each step, in one process, no HTTP."""
    bodies = [body(i) for i in range(2000)]
    headers = [stripe.WebhookSignature.generate_signature_header(b, SECRET) for b in bodies]
    started = time.perf_counter()
    for b, h in zip(bodies, headers, strict=True):
        stripe.WebhookSignature.verify_header(b, h, SECRET, tolerance=300)
    verify = (time.perf_counter() - started) / len(bodies)
    started = time.perf_counter()
    events = [payment_event(parse_body(b.encode())) for b in bodies]
    parse = (time.perf_counter() - started) / len(bodies)
    journal = Journal(tmp / "pieces.sqlite")
    started = time.perf_counter()
    for e in events:
        journal.record(e)
    commit = (time.perf_counter() - started) / len(bodies)
    journal.close()
    return {
        "verify_us": round(verify * 1e6, 1),
        "parse_us": round(parse * 1e6, 1),
        "journal_commit_us": round(commit * 1e6, 1),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        env = {
            **os.environ,
            "RESTATE_DATA_DIR": tmp,
            "RESTATE_STRIPE_WEBHOOK_SECRET": SECRET,
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "interfaces.cli", "webhooks", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            asyncio.run(deliver(port, [body(10_000_000 + i) for i in range(500)]))  # warm-up
            seconds, latencies, failures = asyncio.run(deliver(port, [body(i) for i in range(EVENTS)]))
            counts = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
        finally:
            server.terminate()
            server.wait(timeout=30)
        latencies.sort()
        pct = lambda p: round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1)  # noqa: E731
        print(
            json.dumps(
                {
                    "events": EVENTS,
                    "concurrency": CONCURRENCY,
                    "failures": failures,
                    "journaled": counts["events"] - 500,
                    "events_per_s": round(EVENTS / seconds),
                    "ack_ms": {"p50": pct(0.50), "p99": pct(0.99), "max": round(latencies[-1], 1)},
                    "per_event_in_process": pieces(Path(tmp)),
                    "cores": os.cpu_count(),
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
