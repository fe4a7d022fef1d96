"""Snowflake cost of a restatement: warehouse-hours, credits and dollars from partition sizes.

Model (docs/scale.md works the seed's case through it):
    bytes            = rows in the period x bytes per row of the relation the chunks read
    warehouse-hours  = bytes / (throughput of an X-Small x size factor) + chunks x overhead
    credits          = warehouse-hours x credits per hour of the size
    dollars          = credits x credit price
Snowflake's credits per hour double with each size, and a scan-bound recompute runs about
twice as fast, so credits barely depend on the size; wall-clock time does. Chunks run
`concurrency` at a time on a multi-cluster warehouse, which divides wall-clock time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# Snowflake standard warehouse credits per hour by size.
WAREHOUSE_CREDITS: dict[str, int] = {
    "XSMALL": 1,
    "X-SMALL": 1,
    "SMALL": 2,
    "MEDIUM": 4,
    "LARGE": 8,
    "XLARGE": 16,
    "X-LARGE": 16,
    "2XLARGE": 32,
    "3XLARGE": 64,
    "4XLARGE": 128,
}


@dataclass(frozen=True)
class CostEstimate:
    source_rows: int
    source_bytes: int
    chunks: int
    warehouse_size: str
    mb_per_s_xsmall: float
    warehouse_hours: float
    wall_clock_hours: float
    concurrency: int
    credits: float
    usd: float
    budget_usd: float

    @property
    def over_budget(self) -> bool:
        return self.usd > self.budget_usd

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def credits_per_hour(warehouse_size: str) -> int:
    size = warehouse_size.upper().replace("_", "-")
    if size not in WAREHOUSE_CREDITS:
        raise ValueError(f"unknown warehouse size {warehouse_size!r}; one of {', '.join(WAREHOUSE_CREDITS)}")
    return WAREHOUSE_CREDITS[size]


def estimate_cost(
    *,
    source_rows: int,
    bytes_per_row: float,
    chunks: int,
    warehouse_size: str,
    mb_per_s_xsmall: float,
    chunk_overhead_s: float,
    concurrency: int,
    credit_price_usd: float,
    budget_usd: float,
) -> CostEstimate:
    """Warehouse-hours, credits and dollars of recomputing `source_rows` rows in `chunks` chunks."""
    rate = credits_per_hour(warehouse_size)
    source_bytes = int(source_rows * bytes_per_row)
    scan_s = source_bytes / (mb_per_s_xsmall * 1e6 * rate)
    hours = (scan_s + chunks * chunk_overhead_s) / 3600
    in_flight = max(1, min(concurrency, chunks))
    credits = hours * rate
    return CostEstimate(
        source_rows=source_rows,
        source_bytes=source_bytes,
        chunks=chunks,
        warehouse_size=warehouse_size.upper(),
        mb_per_s_xsmall=mb_per_s_xsmall,
        warehouse_hours=round(hours, 3),
        wall_clock_hours=round(hours / in_flight, 3),
        concurrency=in_flight,
        credits=round(credits, 3),
        usd=round(credits * credit_price_usd, 2),
        budget_usd=budget_usd,
    )
