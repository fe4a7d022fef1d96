"""Northstar's other systems, derived from the orders: payment webhooks and 3PL shipments.

The payment provider and the warehouse partners see the same orders as the shop, and a
real company's three systems disagree in known ways. This writes, into the landing, what
`restate webhooks flush` and the SFTP drops land (same folders, same columns):

- ``<landing>/payments/<batch>/part-000000.parquet``: one ``charge.succeeded`` per paid
  order (amount = gross + tax) and one ``charge.refunded`` per refund, each event id
  delivered once or, as a webhook retry, twice; received up to hours after it happened;
- ``<landing>/fulfilment/<batch>/<drop>.parquet``: one shipment per shipped order,
  the partner's receipt time beside it;

with the disagreements a reconciliation must find, counted in :class:`Disagreements`:
payments for orders the shop does not have, shipped orders no partner reported, orders
cancelled before payment that the provider charged anyway, and order ids the shop issued
twice (two stores, one id: ``GenerateSpec.id_collisions``).

Everything is computed from the generator's own record of the orders (``simulate``), never
from the warehouse, so a test compares the reconciliation with an independent truth.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from examples.northstar.generate import GenerateSpec, Version, latest_valid, simulate
from sources.stripe_webhooks import COLUMNS as JOURNAL_COLUMNS

# What `restate webhooks flush` lands, column for column.
PAYMENT_COLUMNS = pa.schema(JOURNAL_COLUMNS)
SHIPMENT_COLUMNS = pa.schema(
    [
        ("order_id", pa.string()),
        ("shipped_at", pa.timestamp("us")),
        ("carrier", pa.string()),
        ("units", pa.int32()),
        ("source_file", pa.string()),
        ("received_at", pa.timestamp("us")),
    ]
)
CARRIERS = ("dhl", "ups", "gls")


@dataclass(frozen=True)
class SystemsSpec:
    """How many of each disagreement to plant, and how often a webhook is retried."""

    orphan_payments: int = 4
    unreported_shipments: int = 5
    charged_after_cancel: int = 3
    orphan_shipments: int = 2
    wrong_amount_charges: int = 2
    retry_share: float = 0.03
    seed: int = 11
    fulfil_within_days: int = 5


@dataclass
class Disagreements:
    """The truth a cross-system reconciliation must find, order ids by kind."""

    payments_without_order: set[str] = field(default_factory=set)
    shipped_not_reported: set[str] = field(default_factory=set)
    # The rule applied to the generator's own records: charged, not cancelled, no shipment
    # reported, placed more than fulfil_within_days before the latest order. The planted
    # unreported shipments old enough, plus paid orders whose shipment has not happened.
    paid_never_fulfilled: set[str] = field(default_factory=set)
    charged_after_cancel: set[str] = field(default_factory=set)
    duplicate_order_ids: set[str] = field(default_factory=set)
    shipments_without_order: set[str] = field(default_factory=set)
    amount_mismatch: set[str] = field(default_factory=set)
    orders: int = 0
    payment_events: int = 0
    shipments: int = 0


def _event(
    kind: str, order_id: str, amount: Decimal, at: datetime, seq: int, rng: random.Random
) -> dict[str, object]:
    return {
        "event_id": f"evt_{seq:08d}",
        "event_type": kind,
        "event_created": at,
        "payment_id": f"pi_{order_id}",
        "order_id": order_id,
        "amount": amount,
        "currency": "usd",
        "status": "succeeded" if kind == "charge.succeeded" else "refunded",
        "payment_method": f"pm_{rng.randrange(16**8):08x}",
        "redacted": False,
        "received_at": at + timedelta(seconds=rng.randint(1, 6 * 3600)),
    }


def _first(versions: list[Version], status: str) -> Version | None:
    found = [v for v in versions if v.valid and v.status == status]
    return min(found, key=lambda v: v.updated_at) if found else None


def systems_rows(
    spec: GenerateSpec, systems: SystemsSpec
) -> tuple[list[dict[str, object]], list[dict[str, object]], Disagreements]:
    """Payment events and shipments for the orders `spec` generates, and what disagrees."""
    rng = random.Random(systems.seed)
    rows = simulate(spec)
    latest = latest_valid(rows)
    by_order: dict[str, list[Version]] = defaultdict(list)
    stores: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row.valid and row.order_id is not None:
            by_order[row.order_id].append(row)
            if row.status == "placed" and row.store_id:
                stores[row.order_id].add(row.store_id)
    truth = Disagreements(orders=len(latest))
    truth.duplicate_order_ids = {order_id for order_id, seen in stores.items() if len(seen) > 1}
    payments: list[dict[str, object]] = []
    shipments: list[dict[str, object]] = []
    seq = 0
    never_paid = sorted(
        o for o, v in latest.items() if v.status == "cancelled" and not _first(by_order[o], "paid")
    )
    charged_anyway = set(rng.sample(never_paid, min(systems.charged_after_cancel, len(never_paid))))
    shipped = sorted(o for o in latest if _first(by_order[o], "shipped"))
    unreported = set(rng.sample(shipped, min(systems.unreported_shipments, len(shipped))))
    paid_kept = sorted(
        o for o, v in latest.items() if v.status in ("paid", "shipped") and o not in charged_anyway
    )
    mischarged = set(rng.sample(paid_kept, min(systems.wrong_amount_charges, len(paid_kept))))
    for order_id in sorted(latest):
        order = latest[order_id]
        paid = _first(by_order[order_id], "paid")
        charge_at = paid.updated_at if paid else None
        if order_id in charged_anyway:
            charge_at = order.updated_at + timedelta(minutes=5)
            truth.charged_after_cancel.add(order_id)
        if charge_at is not None and order.gross_amount is not None:
            seq += 1
            total = order.gross_amount + order.tax_amount
            if order_id in mischarged:  # the provider charged another amount
                total += Decimal("1.00")
                truth.amount_mismatch.add(order_id)
            payments.append(_event("charge.succeeded", order_id, total, charge_at, seq, rng))
        if order.refund_amount > 0 and charge_at is not None and order.gross_amount is not None:
            # A cancelled order is refunded its whole charge; a return, what the shop refunded.
            cancelled = order.status == "cancelled"
            refund = order.gross_amount + order.tax_amount if cancelled else order.refund_amount
            seq += 1
            payments.append(_event("charge.refunded", order_id, refund, order.updated_at, seq, rng))
        ship = _first(by_order[order_id], "shipped")
        if ship is not None:
            if order_id in unreported:
                truth.shipped_not_reported.add(order_id)
            else:
                at = ship.updated_at
                shipments.append(
                    {
                        "order_id": order_id,
                        "shipped_at": at,
                        "carrier": rng.choice(CARRIERS),
                        "units": rng.randint(1, 5),
                        "source_file": f"shipments_{at:%Y%m%d}.csv",
                        "received_at": at + timedelta(hours=rng.randint(1, 20)),
                    }
                )
    last = max((r.updated_at for r in rows), default=datetime.combine(spec.end_date, datetime.min.time()))
    for n in range(systems.orphan_shipments):
        order_id = f"NS-S{n:06d}"
        at = last - timedelta(days=n + 2)
        shipments.append(
            {
                "order_id": order_id,
                "shipped_at": at,
                "carrier": CARRIERS[0],
                "units": 1,
                "source_file": f"shipments_{at:%Y%m%d}.csv",
                "received_at": at + timedelta(hours=2),
            }
        )
        truth.shipments_without_order.add(order_id)
    for n in range(systems.orphan_payments):
        seq += 1
        order_id = f"NS-X{n:06d}"
        payments.append(
            _event("charge.succeeded", order_id, Decimal("19.99"), last - timedelta(days=n + 1), seq, rng)
        )
        truth.payments_without_order.add(order_id)
    # Webhook retries: the same event delivered again later (same event id).
    retries = [
        dict(p, received_at=p["received_at"] + timedelta(minutes=7))
        for p in payments
        if rng.random() < systems.retry_share
    ]
    charged = {str(p["order_id"]) for p in payments if p["event_type"] == "charge.succeeded"}
    reported = {str(s["order_id"]) for s in shipments}
    newest = max(v.order_ts for v in latest.values())
    cutoff = newest - timedelta(days=systems.fulfil_within_days)
    truth.paid_never_fulfilled = {
        o
        for o, v in latest.items()
        if o in charged
        and v.status in ("paid", "shipped", "refunded")
        and o not in reported
        and v.order_ts < cutoff
    }
    truth.payment_events = len(payments)
    truth.shipments = len(shipments)
    return payments + retries, shipments, truth


def _batched(rows: list[dict[str, object]], schema: pa.Schema, folder: Path, name: str) -> list[Path]:
    by_day: dict[date, list[dict[str, object]]] = defaultdict(list)
    for row in rows:
        received = row["received_at"]
        assert isinstance(received, datetime)
        by_day[received.date()].append(row)
    files = []
    for day, day_rows in sorted(by_day.items()):
        path = folder / day.strftime("batch_%Y%m%d") / name
        path.parent.mkdir(parents=True, exist_ok=True)
        columns = {c: [r[c] for r in day_rows] for c in schema.names}
        pq.write_table(pa.Table.from_pydict(columns, schema=schema), path)
        files.append(path)
    return files


def write_systems(
    spec: GenerateSpec, landing: Path, systems: SystemsSpec | None = None, until: datetime | None = None
) -> Disagreements:
    """Land the payment events and shipments received by `until` (default: all)."""
    payments, shipments, truth = systems_rows(spec, systems or SystemsSpec())
    if until is not None:
        payments = [p for p in payments if p["received_at"] <= until]  # type: ignore[operator]
        shipments = [s for s in shipments if s["received_at"] <= until]  # type: ignore[operator]
    _batched(payments, PAYMENT_COLUMNS, landing / "payments", "part-000000.parquet")
    _batched(shipments, SHIPMENT_COLUMNS, landing / "fulfilment", "shipments.parquet")
    return truth
