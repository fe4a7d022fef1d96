"""fct_orders_daily computed independently of dbt, in plain Python, from the landed files.

Reads every ``orders/<batch>/*.parquet`` file with pyarrow, drops the rows the staging
model rejects, keeps the latest version of each order_id (latest updated_at, then
latest processing time, then latest file and row), and sums per order_date x store_id
with Decimal, to the cent. ``refund_logic="v1"`` reproduces the historical bug (a
cancelled order's refund subtracted although the order is already dropped), so a test
can tell which days the bug moves.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

STATUSES = ("placed", "paid", "shipped", "cancelled", "refunded")
ZERO = Decimal("0.00")


@dataclass(frozen=True)
class DailyRow:
    """One fct_orders_daily row's metrics."""

    orders: int
    gross_sales: Decimal
    refunds: Decimal
    tax: Decimal
    net_sales: Decimal


def landed_files(landing: Path) -> list[Path]:
    return sorted(landing.glob("orders/*/*.parquet"))


def read_rows(files: Iterable[Path]) -> list[dict[str, Any]]:
    """Every landed row with its file, row number and processing time."""
    rows = []
    for path in files:
        for number, row in enumerate(pq.read_table(path).to_pylist()):
            row["source_file"] = str(path)
            row["source_row_number"] = number
            row["processed_at"] = row["order_ingested_at"] or row["updated_at"]
            rows.append(row)
    return rows


def rejection_reason(row: dict[str, Any]) -> str | None:
    """Why the staging model rejects a raw row (None: valid), for typed landed values."""
    status = (row["status"] or "").lower()
    amounts = [row["gross_amount"], row["tax_amount"] or ZERO, row["refund_amount"] or ZERO]
    if row["order_id"] is None:
        return "missing_order_id"
    if row["store_id"] is None:
        return "missing_store_id"
    if row["order_ts"] is None:
        return "missing_order_ts"
    if status not in STATUSES:
        return "unknown_status"
    if row["gross_amount"] is None:
        return "missing_gross_amount"
    if any(a < 0 for a in amounts):
        return "negative_amount"
    if amounts[2] > amounts[0]:
        return "refund_exceeds_gross"
    return None


def latest_versions(rows: list[dict[str, Any]], until: datetime | None = None) -> dict[str, dict[str, Any]]:
    """The kept version of each order among the valid rows processed up to `until`."""

    def rank(row: dict[str, Any]) -> tuple[datetime, datetime, str, int]:
        return (row["updated_at"], row["processed_at"], row["source_file"], row["source_row_number"])

    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        if rejection_reason(row) is not None or (until is not None and row["processed_at"] > until):
            continue
        kept = latest.get(row["order_id"])
        if kept is None or rank(row) > rank(kept):
            latest[row["order_id"]] = row
    return latest


def expected_daily(
    landing: Path, refund_logic: str = "v2", until: datetime | None = None
) -> dict[tuple[date, str], DailyRow]:
    """fct_orders_daily as (order_date, store_id) -> metrics."""
    sums: dict[tuple[date, str], list[Any]] = {}
    for order in latest_versions(read_rows(landed_files(landing)), until).values():
        key = (order["order_ts"].date(), order["store_id"])
        acc = sums.setdefault(key, [0, ZERO, ZERO, ZERO])
        refund = order["refund_amount"] or ZERO
        if order.get("deleted_at") is not None:  # deleted at the source: counts nothing
            sums.setdefault(key, [0, ZERO, ZERO, ZERO])
            continue
        if order["status"].lower() == "cancelled":
            if refund_logic == "v1":
                acc[2] += refund
            continue
        acc[0] += 1
        acc[1] += order["gross_amount"]
        acc[2] += refund
        acc[3] += order["tax_amount"] or ZERO
    return {
        key: DailyRow(orders, gross, refunds, tax, gross - refunds)
        for key, (orders, gross, refunds, tax) in sums.items()
    }
