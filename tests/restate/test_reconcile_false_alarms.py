"""Nightly reconciliation raises drift only on disagreement with finance or broken row
conservation; a heuristic (the daily refund-rate bounds) only warns, and a draft
covers exactly the drifted months. Real DuckDB + dbt + Soda."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest

from restate.actions import load_once, reconcile_once
from restate.engines import connect
from restate.settings import Settings
from tests.conftest import land, make_settings

pytestmark = pytest.mark.slow

TODAY = date(2026, 11, 2)  # yesterday, 2026-11-01, is the low-volume day
LOW_DAY = "2026-11-01"


def clean_prod_with_a_low_volume_day(tmp_path: Path) -> Settings:
    """Correct production; on 2026-11-01 one invoice of 100.00 and a refund of 80.00
    (refund rate 0.8), which finance reports exactly the same."""
    s = make_settings(tmp_path / "wh")
    land(s)
    con = duckdb.connect()
    account = con.execute(
        f"select account_id from read_parquet('{s.landing}/events/*/*.parquet') "
        "where event_type = 'invoice_paid' and currency = 'USD' and account_id is not null "
        "order by account_id limit 1"
    ).fetchall()[0][0]
    folder = Path(s.landing) / "events" / f"event_date={LOW_DAY}"
    folder.mkdir(parents=True)
    con.execute(
        f"""
        copy (
            select event_id, ? as account_id, event_type, cast(amount as decimal(18, 2)) as amount,
                'USD' as currency, cast(event_ts as timestamp) as event_ts,
                cast(event_ts as timestamp) as updated_at, cast(null as timestamp) as event_ingested_at,
                'low@example.com' as customer_email
            from (values
                ('low_inv', 'invoice_paid', 100.00, '{LOW_DAY} 09:00:00'),
                ('low_ref', 'refund_issued', 80.00, '{LOW_DAY} 15:00:00')
            ) as t(event_id, event_type, amount, event_ts)
        ) to '{folder}/low_volume.parquet' (format parquet)
        """,
        [account],
    )
    (Path(s.finance) / "revenue_2026-11.csv").write_text(
        f"date,currency,gross_revenue,refunds,net_revenue\n{LOW_DAY},USD,100.00,80.00,20.00\n"
    )
    assert load_once(s).status == "success"
    return s


def _drafts(s: Settings) -> list[tuple]:
    with connect(s) as e:
        return e.query(f"select period_start, period_end from {s.meta_schema}.restatements")


def test_a_low_volume_day_with_a_high_refund_rate_warns_and_drafts_nothing(tmp_path: Path) -> None:
    s = clean_prod_with_a_low_volume_day(tmp_path)

    rec = reconcile_once(s, days=120, today=TODAY)

    assert rec.passed, rec.failed_checks
    assert rec.drift_days == [] and rec.failed_checks == []
    assert rec.draft_restatement_id is None and _drafts(s) == []
    warned = [w for w in rec.warnings if "refund rate between" in w["check"]]
    assert warned and warned[0]["partitions"] == [LOW_DAY], rec.warnings
    with connect(s) as e:
        assert e.query(f"select passed from {s.meta_schema}.reconciliations") == [(True,)]
        assert e.scalar(f"select count(*) from {s.meta_schema}.notification_outbox") == 0
        events = [r[0] for r in e.query(f"select event from {s.meta_schema}.changelog")]
    assert "drift_detected" not in events and "reconciled" in events


def test_a_drift_in_one_month_drafts_exactly_that_month(tmp_path: Path) -> None:
    s = clean_prod_with_a_low_volume_day(tmp_path)
    with connect(s) as e:
        e.execute(
            f"update {s.prod_schema}.fct_revenue_daily set net_revenue = net_revenue + 100 "
            "where event_date = '2026-09-15'"
        )

    rec = reconcile_once(s, days=120, today=TODAY, notify=False)

    assert not rec.passed
    assert {str(d["day"]) for d in rec.drift_days} == {"2026-09-15"}
    assert rec.drift_months == ["2026-09"]
    assert (rec.draft_start, rec.draft_end) == (date(2026, 9, 1), date(2026, 9, 30))
    assert _drafts(s) == [(date(2026, 9, 1), date(2026, 9, 30))]
    assert all("refund rate between" not in c["check"] for c in rec.failed_checks)


def test_broken_row_conservation_drafts_exactly_that_month(tmp_path: Path) -> None:
    s = clean_prod_with_a_low_volume_day(tmp_path)
    with connect(s) as e:
        # A non-monetary event vanishes: revenue still matches finance, the row accounting does not.
        e.execute(
            f"delete from {s.prod_schema}.int_deduped_events where event_id = ("
            f"select min(event_id) from {s.prod_schema}.int_deduped_events "
            "where event_type = 'subscription_created' and event_date between '2026-08-01' and '2026-08-31')"
        )

    rec = reconcile_once(s, days=120, today=TODAY, notify=False)

    assert not rec.passed and rec.drift_days == []
    assert [c["check"] for c in rec.failed_checks] == [
        "raw rows = kept + superseded + quarantined per event_date"
    ]
    assert (rec.draft_start, rec.draft_end) == (date(2026, 8, 1), date(2026, 8, 31))
    assert _drafts(s) == [(date(2026, 8, 1), date(2026, 8, 31))]
