"""`restate report MODEL` (restate/ingest/reports.py): the sum of every declared metric per month
or day and declared dimension, read from the model's contract alone."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from restate.contract.spec import ModelContract, Upstream
from restate.engines.duckdb import DuckDBEngine
from restate.ingest.reports import metric_report

ROWS = [
    ("2026-03-01", "s1", "north", "10.00", 1),
    ("2026-03-01", "s2", "north", "5.50", 2),
    ("2026-03-31", "s1", "south", "1.25", 1),
    ("2026-04-01", "s1", "north", "100.00", 7),
]


def _contract(dimensions: tuple[str, ...]) -> ModelContract:
    return ModelContract(
        model="fct_sales",
        unique_id="model.shop.fct_sales",
        date_column="sold_on",
        keys=("sold_on", "store", "region"),
        metrics=("net_sales", "orders"),
        upstream=Upstream("int_sales", "processed_at"),
        entity_column="store",
        dimensions=dimensions,
    )


@pytest.fixture
def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    e = DuckDBEngine(tmp_path / "wh.duckdb")
    e.execute("create schema prod")
    e.execute(
        "create table prod.fct_sales (sold_on date, store varchar, region varchar, "
        "net_sales decimal(18, 2), orders integer)"
    )
    for r in ROWS:
        e.execute("insert into prod.fct_sales values (?, ?, ?, ?, ?)", list(r))
    yield e
    e.close()


def test_per_month_and_dimension(engine: DuckDBEngine) -> None:
    rows = metric_report(engine, "prod", _contract(("region",)))
    assert [(r["month"], r["region"], r["net_sales"], r["orders"]) for r in rows] == [
        ("2026-03", "north", Decimal("15.50"), 3),
        ("2026-03", "south", Decimal("1.25"), 1),
        ("2026-04", "north", Decimal("100.00"), 7),
    ]


def test_per_day_without_dimensions_inside_the_period(engine: DuckDBEngine) -> None:
    rows = metric_report(engine, "prod", _contract(()), "day", date(2026, 3, 2), date(2026, 4, 1))
    assert [(str(r["day"]), r["net_sales"], r["orders"]) for r in rows] == [
        ("2026-03-31", Decimal("1.25"), 1),
        ("2026-04-01", Decimal("100.00"), 7),
    ]
    assert set(rows[0]) == {"day", "net_sales", "orders"}


def test_a_month_report_starts_at_the_month_of_start(engine: DuckDBEngine) -> None:
    rows = metric_report(engine, "prod", _contract(()), "month", date(2026, 3, 31), date(2026, 3, 31))
    assert [(r["month"], r["net_sales"]) for r in rows] == [("2026-03", Decimal("16.75"))]


def test_an_unknown_period_is_refused(engine: DuckDBEngine) -> None:
    with pytest.raises(ValueError, match="week"):
        metric_report(engine, "prod", _contract(()), "week")
