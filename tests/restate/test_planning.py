"""Chunking: month-aligned ranges x account buckets that cover the period exactly once."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from restate.plan.plans import PlanError, make_chunks
from restate.settings import Settings


@pytest.mark.parametrize(
    ("start", "end", "days", "buckets"),
    [
        (date(2025, 9, 1), date(2026, 10, 31), 31, 1),
        (date(2025, 9, 17), date(2025, 11, 3), 10, 3),
        (date(2026, 2, 28), date(2026, 2, 28), 31, 2),
    ],
)
def test_chunks_cover_each_day_and_bucket_once(start, end, days, buckets) -> None:
    chunks = make_chunks(start, end, days, buckets)
    covered = [(c.start + timedelta(d), c.bucket) for c in chunks for d in range((c.end - c.start).days + 1)]
    expected = [(start + timedelta(d), b) for d in range((end - start).days + 1) for b in range(buckets)]
    assert sorted(covered) == sorted(expected)
    assert all(c.start.month == c.end.month for c in chunks)
    assert all((c.end - c.start).days < days for c in chunks)
    assert len({c.chunk_id for c in chunks}) == len(chunks)


def test_end_before_start_is_refused() -> None:
    with pytest.raises(PlanError):
        make_chunks(date(2026, 1, 2), date(2026, 1, 1), 31, 1)


def test_warehouse_id_separates_copies_of_a_warehouse(tmp_path: Path) -> None:
    # Chunk results are cached by Prefect under a key that starts with the warehouse id:
    # a copy of the warehouse (same plan id, same watermark) must not reuse them.
    from tests.conftest import make_settings

    a, b = make_settings(tmp_path / "a"), make_settings(tmp_path / "b")
    assert a.warehouse_id != b.warehouse_id
    assert a.warehouse_id == make_settings(tmp_path / "a").warehouse_id
    assert a.warehouse_id != a.model_copy(update={"meta_schema": "other_meta"}).warehouse_id


@pytest.mark.parametrize("field", ["prod_schema", "meta_schema"])
def test_schema_names_are_plain_identifiers(field: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Settings(**{field: "analytics; drop table analytics.fct_revenue_daily"})  # type: ignore[arg-type]
    assert getattr(Settings(**{field: "finance_2026"}), field) == "finance_2026"  # type: ignore[arg-type]
