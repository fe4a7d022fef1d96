"""Snowflake cost estimate: the seed's case (docs/scale.md) and the budget guard's threshold."""

from __future__ import annotations

import pytest

from restate.plan.cost import estimate_cost
from restate.settings import Settings

SEED = {"source_rows": 3_200_000_000, "bytes_per_row": 28e12 / 3.2e9, "chunks": 224, "chunk_overhead_s": 0.6}


def seed_estimate(**overrides: object):
    s = Settings()
    args = {
        **SEED,
        "warehouse_size": "MEDIUM",
        "mb_per_s_xsmall": s.snowflake_mb_per_s_xsmall,
        "concurrency": 8,
        "credit_price_usd": s.credit_price_usd,
        "budget_usd": s.budget_usd,
        **overrides,
    }
    return estimate_cost(**args)  # type: ignore[arg-type]


def test_seed_case_matches_docs_scale() -> None:
    e = seed_estimate()
    assert (e.warehouse_hours, e.wall_clock_hours, e.credits, e.usd) == (23.185, 2.898, 92.742, 278.23)
    assert e.budget_usd == 15_000 and not e.over_budget


def test_size_changes_wall_clock_not_credits() -> None:
    medium, large = seed_estimate(), seed_estimate(warehouse_size="LARGE")
    assert large.wall_clock_hours == pytest.approx(medium.wall_clock_hours / 2, rel=0.01)
    assert large.credits == pytest.approx(medium.credits, rel=0.01)


def test_a_slow_throughput_goes_over_budget() -> None:
    slow = seed_estimate(mb_per_s_xsmall=1.5)
    assert slow.usd > 15_000 and slow.over_budget


def test_unknown_warehouse_size_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown warehouse size"):
        seed_estimate(warehouse_size="HUGE")
