"""Payment webhooks: a durable journal before the acknowledgement, then batches into
the landing.

A delivery is acknowledged only after its event is committed to the journal (SQLite,
WAL, synchronous=FULL: on disk before the 200). The journal is idempotent on the event
id, so Stripe's retries (a new signature for the same event) are recorded once; an
exact repeat of a signature (a replay) is refused and records nothing.
`flush` writes the journal's unlanded events as one Parquet file into the landing,
with the processing (receipt) time, and marks them landed after the file is whole: a
crash in between lands them twice, which the landing's dedupe on the event id absorbs.

Card data never lands (PCI DSS): the journal keeps only the declared, tokenised fields
of an event (ids, amount, currency, status, the payment method's token id, the order id
from metadata), never the raw body, and any of them that holds a card-number-shaped
value (13-19 digits passing the Luhn check, with or without separators) is replaced by
"[redacted]" and the event flagged.
"""

from __future__ import annotations

import json
import os
import queue
import re
import sqlite3
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from restate.settings import Settings

_PAN = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
REDACTED = "[redacted]"

# Landed columns: (name, arrow type). amount is in the currency's major unit.
COLUMNS: list[tuple[str, pa.DataType]] = [
    ("event_id", pa.string()),
    ("event_type", pa.string()),
    ("event_created", pa.timestamp("us")),
    ("payment_id", pa.string()),
    ("order_id", pa.string()),
    ("amount", pa.decimal128(18, 2)),
    ("currency", pa.string()),
    ("status", pa.string()),
    ("payment_method", pa.string()),
    ("redacted", pa.bool_()),
    ("received_at", pa.timestamp("us")),
]
# Currencies without minor units (Stripe's zero-decimal list).
_ZERO_DECIMAL = set(
    [
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    ]
)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def has_card_number(value: str) -> bool:
    """A 13-19 digit run (spaces or dashes allowed between digits) passing the Luhn check."""
    for m in _PAN.finditer(value):
        digits = re.sub(r"\D", "", m.group(0))
        if 13 <= len(digits) <= 19 and _luhn(digits):
            return True
    return False


@dataclass(frozen=True)
class PaymentEvent:
    event_id: str
    event_type: str
    event_created: datetime
    payment_id: str | None
    order_id: str | None
    amount: Decimal | None
    currency: str | None
    status: str | None
    payment_method: str | None
    redacted: bool


def _token_id(method: Any) -> str | None:
    token = method.get("id") if isinstance(method, dict) else None
    return token if isinstance(token, str) else None


def payment_event(event: dict[str, Any]) -> PaymentEvent:
    """The tokenised fields of a Stripe event (ValueError when it is not one)."""
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not event.get("type"):
        raise ValueError("not a Stripe event (no id or type)")
    data = event.get("data")
    found = data.get("object") if isinstance(data, dict) else None
    obj: dict[str, Any] = found if isinstance(found, dict) else {}
    meta = obj.get("metadata")
    metadata: dict[str, Any] = meta if isinstance(meta, dict) else {}
    currency = obj.get("currency")
    raw_amount = obj.get("amount_received", obj.get("amount"))
    amount = None
    if isinstance(raw_amount, int) and not isinstance(raw_amount, bool):
        amount = Decimal(raw_amount) if str(currency).lower() in _ZERO_DECIMAL else Decimal(raw_amount) / 100
    method = obj.get("payment_method")
    fields: dict[str, Any] = {
        "payment_id": obj.get("id") if isinstance(obj.get("id"), str) else None,
        "order_id": str(metadata["order_id"]) if metadata.get("order_id") is not None else None,
        "currency": str(currency).upper() if currency else None,
        "status": obj.get("status") if isinstance(obj.get("status"), str) else None,
        # A token id (pm_...), or the id inside an expanded object; never its card details.
        "payment_method": method if isinstance(method, str) else _token_id(method),
    }
    redacted = False
    for key, value in fields.items():
        if isinstance(value, str) and has_card_number(value):
            fields[key] = REDACTED
            redacted = True
    created = event.get("created")
    return PaymentEvent(
        event_id=event["id"],
        event_type=str(event["type"]),
        event_created=datetime.fromtimestamp(int(created), UTC).replace(tzinfo=None)
        if isinstance(created, int)
        else datetime.now(UTC).replace(tzinfo=None),
        amount=amount,
        redacted=redacted,
        **fields,
    )


class Journal:
    """The durable, idempotent record of received events (one SQLite file).

    `submit` is the receiver's way in: a writer thread commits whatever deliveries are
    waiting in one transaction (group commit: one fsync for the batch) and resolves each
    delivery's future only once its batch is on disk.
    """

    MAX_BATCH = 1000

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, PaymentEvent, Future[str]] | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        self.con = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.con.execute("pragma journal_mode = wal")
        self.con.execute("pragma synchronous = full")  # committed = on disk, before the 200
        self.con.execute(
            """create table if not exists events (
                event_id text primary key, event_type text not null, event_created text not null,
                payment_id text, order_id text, amount text, currency text, status text,
                payment_method text, redacted integer not null, received_at text not null,
                landed_in text)"""
        )
        self.con.execute("create table if not exists signatures (signature text primary key, seen_at text)")

    def close(self) -> None:
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join(timeout=30)
            self._writer = None
        self.con.close()

    def submit(self, signature: str, event: PaymentEvent) -> Future[str]:
        """Queue a delivery; the future resolves, once committed, to "new", "duplicate"
        (the event id was recorded before) or "replay" (the signature was seen before:
        nothing recorded)."""
        with self._lock:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write, name="webhook-journal", daemon=True)
                self._writer.start()
        done: Future[str] = Future()
        self._queue.put((signature, event, done))
        return done

    def _write(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            try:
                with self._lock:
                    self.con.execute("begin immediate")
                    outcomes = [self._apply(signature, event) for signature, event, _ in batch]
                    self.con.execute("commit")  # one fsync for the whole batch
            except Exception as exc:
                with self._lock:
                    if self.con.in_transaction:
                        self.con.execute("rollback")
                for _, _, done in batch:
                    done.set_exception(exc)
                continue
            for (_, _, done), outcome in zip(batch, outcomes, strict=True):
                done.set_result(outcome)

    def _apply(self, signature: str, event: PaymentEvent) -> str:
        cur = self.con.execute("insert or ignore into signatures values (?, ?)", [signature, _now()])
        if cur.rowcount == 0:
            return "replay"
        return "new" if self._insert(event) else "duplicate"

    def record(self, event: PaymentEvent) -> bool:
        """Commit the event now; False when its id was already recorded (a retry)."""
        with self._lock:
            return self._insert(event)

    def _insert(self, event: PaymentEvent) -> bool:
        cur = self.con.execute(
            "insert or ignore into events values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, null)",
            [
                event.event_id,
                event.event_type,
                event.event_created.isoformat(),
                event.payment_id,
                event.order_id,
                None if event.amount is None else str(event.amount),
                event.currency,
                event.status,
                event.payment_method,
                int(event.redacted),
                _now(),
            ],
        )
        return cur.rowcount == 1

    def counts(self) -> dict[str, int]:
        rows = self.con.execute(
            "select count(*), count(landed_in), coalesce(sum(redacted), 0) from events"
        ).fetchone()
        return {"events": rows[0], "landed": rows[1], "redacted": rows[2]}

    def flush(self, settings: Settings, folder: str) -> str | None:
        """Land every unlanded event as one Parquet file; returns its path (None: nothing)."""
        with self._lock:
            rows = self.con.execute(
                "select * from events where landed_in is null order by received_at, event_id"
            ).fetchall()
        if not rows:
            return None
        names = [c for c, _ in COLUMNS]
        data: dict[str, list[Any]] = {c: [] for c in names}
        for r in rows:
            values = dict(zip([*names, "landed_in"], r, strict=True))
            data["event_id"].append(values["event_id"])
            data["event_type"].append(values["event_type"])
            data["event_created"].append(datetime.fromisoformat(values["event_created"]))
            for key in ("payment_id", "order_id", "currency", "status", "payment_method"):
                data[key].append(values[key])
            data["amount"].append(None if values["amount"] is None else Decimal(values["amount"]))
            data["redacted"].append(bool(values["redacted"]))
            data["received_at"].append(datetime.fromisoformat(values["received_at"]))
        table = pa.table({c: pa.array(data[c], type=t) for c, t in COLUMNS})
        batch = f"wh_{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
        path = f"{settings.landing.rstrip('/')}/{folder}/{batch}/part-000000.parquet"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.partial"
        pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        with self._lock:
            self.con.execute("begin")
            self.con.executemany(
                "update events set landed_in = ? where event_id = ?", [(path, r[0]) for r in rows]
            )
            self.con.execute("commit")
        return path


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat()


def parse_body(body: bytes) -> dict[str, Any]:
    event = json.loads(body)
    if not isinstance(event, dict):
        raise ValueError("the body is not a JSON object")
    return event
