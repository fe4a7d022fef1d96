"""Deterministic synthetic Northstar order versions and the finance team's daily export.

The shop's order database emits one row per order *version*: an order is placed, then
paid, shipped, refunded or cancelled, each step a new version with a later updated_at.
The landing receives those versions in daily batches, ``<landing>/orders/<batch>/part-*.parquet``,
with the ways a real feed goes wrong:

- duplicates: a retry lands the same version twice (in a later batch);
- corrections: a later version changes the status or the amounts, and a few move the
  order to another day (its order_ts was stamped in the wrong time zone);
- late arrivals: ``order_ingested_at`` days after the version was written (null = on time);
- bad rows: no order_id, no store_id, a negative amount, an unknown status.

Only versions processed by the end of the period (the generator's "now") are landed.
Finance's export, one ``orders_YYYY-MM.csv`` per month with ``date,orders,gross,refunds,
tax,net`` per day over all stores, is computed here from the generator's own record of
the latest valid version of every order, with the correct rules: a cancelled order
counts nothing (no order, no gross, tax or refund).

Randomness comes from one ``random.Random(seed)``: the same arguments give the same files.
"""

from __future__ import annotations

import argparse
import csv
import random
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

CHANNELS = ("web", "app", "marketplace")
TAX_RATE = Decimal("0.08")
CENT = Decimal("0.01")

SCHEMA = pa.schema(
    [
        ("order_id", pa.string()),
        ("store_id", pa.string()),
        ("channel", pa.string()),
        ("status", pa.string()),
        ("order_ts", pa.timestamp("us")),
        ("updated_at", pa.timestamp("us")),
        ("order_ingested_at", pa.timestamp("us")),
        ("gross_amount", pa.decimal128(18, 2)),
        ("tax_amount", pa.decimal128(18, 2)),
        ("refund_amount", pa.decimal128(18, 2)),
    ]
)

# The shop's orders table as a PostgreSQL source declares it (a sources file's `columns`):
# the landed columns, and the soft-delete column the application sets.
SOURCE_COLUMNS = {
    "order_id": "varchar",
    "store_id": "varchar",
    "channel": "varchar",
    "status": "varchar",
    "order_ts": "timestamp",
    "updated_at": "timestamp",
    "order_ingested_at": "timestamp",
    "gross_amount": "decimal(18, 2)",
    "tax_amount": "decimal(18, 2)",
    "refund_amount": "decimal(18, 2)",
    "deleted_at": "timestamp",
}


@dataclass(frozen=True)
class Version:
    """One landed order version (a raw row)."""

    order_id: str | None
    store_id: str | None
    channel: str
    status: str
    order_ts: datetime
    updated_at: datetime
    order_ingested_at: datetime | None
    gross_amount: Decimal | None
    tax_amount: Decimal
    refund_amount: Decimal
    valid: bool = True

    @property
    def processed_at(self) -> datetime:
        return self.order_ingested_at or self.updated_at


@dataclass(frozen=True)
class GenerateSpec:
    """What to generate: the period, the scale and the shares of each kind of trouble."""

    end_date: date = date(2026, 10, 31)
    months: int = 3
    stores: int = 6
    orders_per_day: int = 120
    seed: int = 42
    duplicate_share: float = 0.04
    late_share: float = 0.06
    moved_share: float = 0.02
    bad_share: float = 0.005
    # Order ids the shop issued twice: a second order placed in another store under an id
    # already taken (a checkout retry after a timeout). Never the latest version of its id.
    id_collisions: int = 0

    @property
    def start_date(self) -> date:
        year, month = self.end_date.year, self.end_date.month - self.months + 1
        while month <= 0:
            month += 12
            year -= 1
        return date(year, month, 1)

    @property
    def now(self) -> datetime:
        """The end of the period: nothing processed later has landed yet."""
        return datetime.combine(self.end_date + timedelta(days=1), time())


@dataclass(frozen=True)
class GenerateResult:
    rows_landed: int
    orders: int
    files: list[Path]
    exports: list[Path]


def _money(low: float, high: float, rng: random.Random) -> Decimal:
    return Decimal(str(round(rng.uniform(low, high), 2))).quantize(CENT)


def _lifecycle(order_id: str, store_id: str, order_ts: datetime, rng: random.Random) -> list[Version]:
    """The versions one order goes through, in updated_at order (without landing troubles)."""
    gross = _money(5, 400, rng)
    tax = (gross * TAX_RATE).quantize(CENT)
    channel = rng.choice(CHANNELS)
    base = Version(order_id, store_id, channel, "placed", order_ts, order_ts, None, gross, tax, Decimal(0))
    versions = [base]
    roll = rng.random()
    if roll < 0.05:  # cancelled before payment: nothing to refund
        versions.append(replace(base, status="cancelled", updated_at=order_ts + timedelta(minutes=40)))
        return versions
    paid = replace(base, status="paid", updated_at=order_ts + timedelta(minutes=rng.randint(1, 30)))
    versions.append(paid)
    if roll < 0.08:  # paid, then cancelled and refunded in full
        when = paid.updated_at + timedelta(hours=rng.randint(2, 30))
        versions.append(replace(paid, status="cancelled", updated_at=when, refund_amount=gross))
        return versions
    shipped = replace(
        paid, status="shipped", updated_at=paid.updated_at + timedelta(hours=rng.randint(6, 48))
    )
    versions.append(shipped)
    if roll < 0.22:  # refunded after shipping, in full or in part
        share = 1 if rng.random() < 0.5 else rng.uniform(0.1, 0.9)
        refund = (gross * Decimal(str(round(share, 2)))).quantize(CENT)
        when = shipped.updated_at + timedelta(days=rng.randint(2, 12))
        versions.append(replace(shipped, status="refunded", updated_at=when, refund_amount=refund))
    return versions


def _troubles(versions: list[Version], spec: GenerateSpec, rng: random.Random) -> list[Version]:
    """Landed rows of one order: moves, late arrivals, duplicates and bad rows added."""
    if rng.random() < spec.moved_share:
        # A correction restamps order_ts to another day from the next version on.
        shift = timedelta(days=rng.choice((-1, 1)), hours=rng.randint(0, 6))
        cut = rng.randint(1, len(versions))
        # The fix is made when someone notices, days later.
        fixed_at = versions[-1].updated_at + timedelta(days=rng.randint(1, 10), hours=rng.randint(0, 23))
        correction = replace(versions[-1], updated_at=fixed_at)
        versions = [
            *versions[:cut],
            *(replace(v, order_ts=v.order_ts + shift) for v in versions[cut:]),
            replace(correction, order_ts=correction.order_ts + shift),
        ]
    landed: list[Version] = []
    for version in versions:
        if rng.random() < spec.late_share:
            version = replace(
                version, order_ingested_at=version.updated_at + timedelta(days=rng.randint(1, 6))
            )
        landed.append(version)
        if rng.random() < spec.duplicate_share:
            if rng.random() < 0.5:
                landed.append(version)  # the producer's retry: the very same row again
            else:  # the same version sent again by a later extract
                resent = version.processed_at + timedelta(hours=rng.randint(12, 60))
                landed.append(replace(version, order_ingested_at=resent))
    if rng.random() < spec.bad_share * 4:
        # A later version the feed garbled: rejected, so the earlier version stays.
        last = landed[-1]
        landed.append(
            replace(last, status="on_hold", updated_at=last.updated_at + timedelta(hours=1), valid=False)
        )
    return landed


def _bad_rows(day: date, spec: GenerateSpec, rng: random.Random, seq: int) -> list[Version]:
    """Rows no order can be built from."""
    ts = datetime.combine(day, time(12)) + timedelta(minutes=rng.randint(0, 600))
    store = f"store_{rng.randrange(spec.stores) + 1:02d}"
    base = Version(
        f"NS-BAD-{seq:06d}",
        store,
        "web",
        "paid",
        ts,
        ts,
        None,
        Decimal("10.00"),
        Decimal("0.80"),
        Decimal(0),
        False,
    )
    kind = rng.randrange(4)
    if kind == 0:
        return [replace(base, order_id=None)]
    if kind == 1:
        return [replace(base, store_id=None)]
    if kind == 2:
        return [replace(base, gross_amount=Decimal("-10.00"))]
    return [replace(base, status="lost")]


def simulate(spec: GenerateSpec) -> list[Version]:
    """Every row the landing receives by spec.now, in no particular order."""
    rng = random.Random(spec.seed)
    rows: list[Version] = []
    day, seq, bad_seq = spec.start_date, 0, 0
    while day <= spec.end_date:
        count = max(1, round(spec.orders_per_day * rng.uniform(0.7, 1.3)))
        for _ in range(count):
            seq += 1
            store = f"store_{rng.randrange(spec.stores) + 1:02d}"
            ts = datetime.combine(day, time()) + timedelta(seconds=rng.randrange(86_400))
            rows += _troubles(_lifecycle(f"NS-{seq:07d}", store, ts, rng), spec, rng)
        if rng.random() < spec.bad_share * count:
            bad_seq += 1
            rows += _bad_rows(day, spec, rng, bad_seq)
        day += timedelta(days=1)
    rows += _collisions(rows, spec)
    return [r for r in rows if r.processed_at <= spec.now]


def _collisions(rows: list[Version], spec: GenerateSpec) -> list[Version]:
    """spec.id_collisions extra 'placed' versions reusing an order id in another store."""
    rng = random.Random(spec.seed + 1)  # its own stream: the orders above stay as they were
    placed = sorted(
        (r for r in rows if r.valid and r.status == "placed" and r.order_id and r.store_id),
        key=lambda r: str(r.order_id),
    )
    extra = []
    for row in rng.sample(placed, min(spec.id_collisions, len(placed))):
        other = f"store_{(int(str(row.store_id)[-2:]) % spec.stores) + 1:02d}"
        extra.append(replace(row, store_id=other, updated_at=row.updated_at + timedelta(seconds=1)))
    return extra


def latest_valid(rows: list[Version]) -> dict[str, Version]:
    """The generator's own truth: the latest valid version of every order."""
    latest: dict[str, Version] = {}
    for row in rows:
        if not row.valid or row.order_id is None:
            continue
        kept = latest.get(row.order_id)
        if kept is None or (row.updated_at, row.processed_at) > (kept.updated_at, kept.processed_at):
            latest[row.order_id] = row
    return latest


def finance_daily(rows: list[Version]) -> dict[date, dict[str, Decimal]]:
    """Finance's figures per day over all stores, by the correct rules."""
    days: dict[date, dict[str, Decimal]] = defaultdict(
        lambda: {k: Decimal(0) for k in ("orders", "gross", "refunds", "tax")}
    )
    for order in latest_valid(rows).values():
        day = days[order.order_ts.date()]
        if order.status == "cancelled":
            continue
        assert order.gross_amount is not None
        day["orders"] += 1
        day["gross"] += order.gross_amount
        day["refunds"] += order.refund_amount
        day["tax"] += order.tax_amount
    for figures in days.values():
        figures["net"] = figures["gross"] - figures["refunds"]
    return dict(days)


def _write_batches(rows: list[Version], landing: Path) -> list[Path]:
    batches: dict[date, list[Version]] = defaultdict(list)
    for row in rows:
        batches[row.processed_at.date()].append(row)
    files = []
    for batch, batch_rows in sorted(batches.items()):
        batch_rows.sort(key=lambda r: (r.processed_at, r.order_id or ""))
        folder = landing / "orders" / batch.strftime("batch_%Y%m%d")
        folder.mkdir(parents=True, exist_ok=True)
        columns = {name: [getattr(r, name) for r in batch_rows] for name in SCHEMA.names}
        path = folder / "part-0.parquet"
        pq.write_table(pa.Table.from_pydict(columns, schema=SCHEMA), path)
        files.append(path)
    return files


def _write_exports(figures: dict[date, dict[str, Decimal]], exports: Path) -> list[Path]:
    exports.mkdir(parents=True, exist_ok=True)
    months: dict[str, list[date]] = defaultdict(list)
    for day in figures:
        months[day.strftime("%Y-%m")].append(day)
    paths = []
    for month, days in sorted(months.items()):
        path = exports / f"orders_{month}.csv"
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["date", "orders", "gross", "refunds", "tax", "net"])
            for day in sorted(days):
                f = figures[day]
                writer.writerow(
                    [day.isoformat(), int(f["orders"]), f["gross"], f["refunds"], f["tax"], f["net"]]
                )
        paths.append(path)
    return paths


def generate(spec: GenerateSpec, landing: Path, exports: Path) -> GenerateResult:
    """Write the landing batches and finance's monthly exports; return what was written."""
    rows = simulate(spec)
    files = _write_batches(rows, landing)
    finance = {
        day: figures
        for day, figures in finance_daily(rows).items()
        if spec.start_date <= day <= spec.end_date
    }
    return GenerateResult(len(rows), len(latest_valid(rows)), files, _write_exports(finance, exports))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("landing", type=Path, help="landing root (orders/<batch>/ is written under it)")
    parser.add_argument("exports", type=Path, help="folder for finance's orders_YYYY-MM.csv files")
    parser.add_argument("--end-date", type=date.fromisoformat, default=GenerateSpec.end_date)
    parser.add_argument("--months", type=int, default=GenerateSpec.months)
    parser.add_argument("--stores", type=int, default=GenerateSpec.stores)
    parser.add_argument("--orders-per-day", type=int, default=GenerateSpec.orders_per_day)
    parser.add_argument("--seed", type=int, default=GenerateSpec.seed)
    args = parser.parse_args()
    spec = GenerateSpec(args.end_date, args.months, args.stores, args.orders_per_day, args.seed)
    result = generate(spec, args.landing, args.exports)
    print(
        f"{result.rows_landed} rows landed in {len(result.files)} batches, {result.orders} orders, "
        f"{len(result.exports)} finance exports"
    )


if __name__ == "__main__":
    main()
