"""The latest-version ordering must not depend on the engine's default NULL order.

Snowflake sorts NULLs first on ``desc``, DuckDB last. Every query that picks an
event's latest version (the dbt model, the Soda contract mirroring it, ``explain``
and the test reference) is run here under Snowflake's order: a version with a null
``updated_at`` (or a null tie-breaker) must never win over a real correction.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from tests.conftest import expected_daily_sql

ROOT = Path(__file__).resolve().parents[2]
# Where the latest version is chosen: (file, how many such windows it holds). The mart's
# contract no longer picks versions itself: it reads the deduplicated events.
SOURCES = {
    "dbt/billing/models/intermediate/int_deduped_events.sql": 1,
    "soda_checks/billing/fct_revenue_daily.yml": 0,
    "examples/billing/explain.py": 2,
}
_ORDER = re.compile(r"order by\s+(updated_at\b[^)]*)\)", re.S)

CANDIDATES = """
    select * from (values
        ('original', timestamp '2026-10-01 10:00', timestamp '2026-10-01 11:00', 'a.parquet', 1),
        ('correction', timestamp '2026-10-03 09:00', timestamp '2026-10-03 10:00', 'b.parquet', 1),
        ('no_updated_at', null, timestamp '2026-10-04 10:00', 'c.parquet', 1),
        ('no_ingested_at', timestamp '2026-10-03 09:00', null, 'd.parquet', 1)
    ) as t(version, updated_at, ingested_at, source_file, source_row_number)
"""
# Only for orderings that break ties on the file: same times as the correction.
NO_SOURCE = """
    union all select 'no_source', timestamp '2026-10-03 09:00', timestamp '2026-10-03 10:00', null, null
"""


@pytest.fixture
def snowflake_nulls() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    con.execute("set default_null_order = 'nulls_last_on_asc_first_on_desc'")
    # The setting is what it claims: desc puts nulls first, like Snowflake.
    first = con.execute("select x from (values (1), (null)) as t(x) order by x desc limit 1").fetchone()
    assert first == (None,)
    yield con
    con.close()


def _orderings(relative: str) -> list[str]:
    return _ORDER.findall((ROOT / relative).read_text())


@pytest.mark.parametrize("relative", sorted(SOURCES))
def test_every_latest_version_window_puts_nulls_last(
    relative: str, snowflake_nulls: duckdb.DuckDBPyConnection
) -> None:
    orderings = _orderings(relative)
    assert len(orderings) == SOURCES[relative], orderings
    for order in orderings:
        candidates = CANDIDATES + (NO_SOURCE if "source_file" in order else "")
        winner = snowflake_nulls.execute(
            f"select version from ({candidates}) order by {order} limit 1"
        ).fetchone()
        assert winner == ("correction",), (relative, order)


def test_the_test_reference_keeps_the_correction_under_snowflake_null_order(
    tmp_path: Path, snowflake_nulls: duckdb.DuckDBPyConnection
) -> None:
    folder = tmp_path / "events" / "event_date=2026-10-01"
    folder.mkdir(parents=True)
    snowflake_nulls.execute(
        f"""copy (select 'e1' as event_id, 'acct' as account_id, 'invoice_paid' as event_type,
            cast(amount as decimal(18, 2)) as amount, 'USD' as currency,
            timestamp '2026-10-01 10:00' as event_ts, updated_at, event_ingested_at,
            'a@b.c' as customer_email
        from (values (10.00, timestamp '2026-10-01 10:00', cast(null as timestamp)),
                     (12.00, timestamp '2026-10-03 09:00', timestamp '2026-10-03 10:00'),
                     (99.00, null, timestamp '2026-10-04 10:00'))
            as t(amount, updated_at, event_ingested_at)
        ) to '{folder}/a.parquet' (format parquet)"""
    )
    rows = snowflake_nulls.execute(expected_daily_sql(f"{tmp_path}/events/*/*.parquet")).fetchall()
    assert [r[3] for r in rows] == [12]
