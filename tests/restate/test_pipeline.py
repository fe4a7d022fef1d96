"""Incremental pipeline on real DuckDB + dbt: accounting, correctness, idempotency."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from restate.actions import load_once
from restate.contract.project import project_contract
from restate.dbt.runner import DbtProject, ProductionGuardError
from restate.engines import connect
from restate.ingest.loads import plan_window
from restate.settings import Settings
from tests.conftest import VALID_RAW, expected_daily_sql, land, make_settings, raw_glob, table_rows

pytestmark = pytest.mark.slow

CUTS = [datetime(2026, 9, 10), datetime(2026, 10, 5), None]
DAILY = "select event_date, account_id, currency, gross_revenue, refunds, net_revenue from {}"


@pytest.fixture(scope="module")
def incremental(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Three arrivals (late events, retries and corrections between them), a load after each."""
    s = make_settings(tmp_path_factory.mktemp("incremental"))
    previous = None
    for cut in CUTS:
        land(s, previous, cut)
        result = load_once(s)
        assert result.status == "success"
        previous = cut
    return s


def _con(s: Settings) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(s.warehouse_path))


def test_every_raw_row_is_accounted_for(incremental: Settings) -> None:
    with connect(incremental) as e:
        glob = raw_glob(incremental)
        raw = e.scalar(f"select count(*) from read_parquet('{glob}')")
        valid = e.scalar(f"select count(*) from read_parquet('{glob}') where {VALID_RAW}")
        distinct_valid = e.scalar(
            f"select count(distinct event_id) from read_parquet('{glob}') where {VALID_RAW}"
        )
        kept = e.scalar("select count(*) from analytics.int_deduped_events")
        quarantined = e.scalar("select count(*) from analytics.int_quarantined_events")
    superseded = valid - distinct_valid
    assert superseded > 0 and quarantined > 0  # the data really has duplicates and bad rows
    assert raw == kept + superseded + quarantined


def test_bad_rows_are_quarantined_with_a_reason(incremental: Settings) -> None:
    with connect(incremental) as e:
        invalid = e.scalar(
            f"select count(*) from read_parquet('{raw_glob(incremental)}') where not coalesce({VALID_RAW}, false)"
        )
        reasons = dict(
            e.query("select rejection_reason, count(*) from analytics.int_quarantined_events group by 1")
        )
    assert sum(reasons.values()) == invalid
    assert None not in reasons and len(reasons) >= 4


def test_daily_revenue_equals_raw_recomputation_to_the_cent(incremental: Settings) -> None:
    with connect(incremental) as e:
        actual = table_rows(e.con, DAILY.format("analytics.fct_revenue_daily"))
        expected = table_rows(e.con, expected_daily_sql(raw_glob(incremental)))
    assert len(actual) > 1000
    assert actual == expected


def test_incremental_equals_a_from_scratch_build(incremental: Settings, tmp_path: Path) -> None:
    scratch = make_settings(tmp_path / "scratch")
    land(scratch)  # everything at once
    load_once(scratch)
    with connect(scratch) as e:
        fresh = table_rows(e.con, DAILY.format("analytics.fct_revenue_daily"))
    with connect(incremental) as e:
        assert table_rows(e.con, DAILY.format("analytics.fct_revenue_daily")) == fresh


def test_loading_again_changes_nothing(incremental: Settings) -> None:
    with connect(incremental) as e:
        before = table_rows(e.con, "select * from analytics.fct_revenue_daily")
        deduped = table_rows(e.con, "select * from analytics.int_deduped_events")
    assert load_once(incremental).status == "no_new_data"
    # Re-run the last window by hand too: same window, same tables.
    dbt = DbtProject(incremental)
    dbt.invoke(
        ["run"],
        vars={
            **incremental.dbt_vars(),
            "ingested_since": "2026-10-01 00:00:00",
            "ingested_until": "2027-01-01 00:00:00",
        },
    )
    with connect(incremental) as e:
        assert table_rows(e.con, "select * from analytics.fct_revenue_daily") == before
        assert table_rows(e.con, "select * from analytics.int_deduped_events") == deduped


def test_a_load_that_fails_half_way_is_rerun_to_the_same_result(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "crash")
    land(s, None, CUTS[0])
    load_once(s)
    land(s, CUTS[0], None)
    with connect(s) as e:
        window = plan_window(e, s, project_contract(s))
    # Crash after the dedupe model: marts untouched, no watermark recorded.
    DbtProject(s).invoke(
        ["run", "--select", "stg_billing__events", "int_deduped_events"],
        vars={**s.dbt_vars(), **window.dbt_vars()},
    )
    assert load_once(s).status == "success"
    with connect(s) as e:
        actual = table_rows(e.con, DAILY.format("analytics.fct_revenue_daily"))
        expected = table_rows(e.con, expected_daily_sql(raw_glob(s)))
    assert actual == expected


def test_full_refresh_of_production_is_refused(incremental: Settings) -> None:
    with pytest.raises(ProductionGuardError):
        DbtProject(incremental).invoke(["run", "--full-refresh"])


def test_a_retried_load_window_is_reprocessed_not_refused(tmp_path: Path) -> None:
    """A task retry runs the same window (same load_id) again: it must succeed, once."""
    from restate.actions import execute_window, prepare_window

    s = make_settings(tmp_path / "retry")
    land(s, None, CUTS[0])
    window = prepare_window(s)
    assert execute_window(s, window).status == "success"
    assert execute_window(s, window).status == "success"  # the retry
    with connect(s) as e:
        assert e.scalar("select count(*) from restate_meta.loads where load_id = ?", [window.load_id]) == 1
        partitions = e.scalar(
            "select count(*) - count(distinct (model, partition_date)) from restate_meta.load_partitions "
            "where load_id = ?",
            [window.load_id],
        )
        assert partitions == 0
        actual = table_rows(e.con, DAILY.format("analytics.fct_revenue_daily"))
        assert actual == table_rows(e.con, expected_daily_sql(raw_glob(s)))
