"""Nightly reconciliation on real DuckDB + dbt + Soda against the generated finance exports."""

from __future__ import annotations

import csv
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from restate.actions import load_once, reconcile_once
from restate.engines import connect
from restate.settings import Settings
from restate.validation.reconcile import DRAFT_REQUESTER
from tests.conftest import land, make_settings

pytestmark = pytest.mark.slow

TODAY = date(2026, 11, 2)  # the generated history ends 2026-10-31


def build_prod(tmp_path: Path, logic: str) -> Settings:
    s = make_settings(tmp_path / "wh")
    land(s)
    load_once(s.model_copy(update={"project_vars": {"revenue_logic": logic}}))
    return s


def refund_days(s: Settings) -> set[tuple[str, str]]:
    """(day, currency) where leaving refunds out moves net revenue beyond the tolerance."""
    out = set()
    for path in Path(s.finance).glob("revenue_*.csv"):
        with path.open() as fh:
            for row in csv.DictReader(fh):
                refunds, net = Decimal(row["refunds"]), Decimal(row["net_revenue"])
                if refunds > Decimal(str(s.tolerance_pct)) / 100 * abs(net):
                    out.add((row["date"], row["currency"]))
    return out


def test_buggy_production_flags_the_refund_months_and_drafts_a_plan(tmp_path: Path) -> None:
    s = build_prod(tmp_path, "v1")
    expected_days = refund_days(s)
    expected_months = sorted({d[:7] for d, _ in expected_days})
    assert expected_days, "the generated data has refunds"

    rec = reconcile_once(s, days=120, today=TODAY)

    assert not rec.passed
    assert {(str(d["day"]), d["currency"]) for d in rec.drift_days} == expected_days
    assert {d["metric"] for d in rec.drift_days} == {"net_revenue"}  # the declared drift metric
    assert rec.drift_months == expected_months
    assert any("finance" in c["check"] for c in rec.failed_checks)
    assert (rec.draft_start, rec.draft_end) == (
        date.fromisoformat(expected_months[0] + "-01"),
        date(2026, 10, 31),
    )
    # Root cause: all of it is the old logic (refunds left out), none is late data.
    assert rec.explanation is not None and rec.explanation["code"]["changed"] is True
    for cur in rec.explanation["currencies"]:
        assert Decimal(cur["late_arrivals"]) == 0 and Decimal(cur["source_residual"]) == 0
        assert Decimal(cur["transformation_logic"]) == Decimal(cur["difference"]) > 0
        assert cur["adds_up"]

    with connect(s) as e:
        draft = e.query_dicts(
            f"select status, requested_by, period_start, period_end, selector from {s.meta_schema}.restatements "
            "where restatement_id = ?",
            [rec.draft_restatement_id],
        )[0]
        assert draft["status"] == "planned" and draft["requested_by"] == DRAFT_REQUESTER
        assert (draft["period_start"], draft["period_end"]) == (rec.draft_start, rec.draft_end)
        stored = e.query(f"select passed from {s.meta_schema}.reconciliations")
        assert stored == [(False,)]
        notices = e.query(
            f"select recipient, status from {s.meta_schema}.notification_outbox "
            "where restatement_id = ? and event = 'drift_detected' order by 1",
            [rec.draft_restatement_id],
        )
    assert notices and all(status == "sent" for _, status in notices)
    assert rec.notices["sent"] == len(notices)

    # The next night: same drift, same draft, no second alert.
    again = reconcile_once(s, days=120, today=TODAY)
    assert again.draft_restatement_id == rec.draft_restatement_id
    assert again.notices["sent"] == 0
    with connect(s) as e:
        assert e.scalar(f"select count(*) from {s.meta_schema}.reconciliations") == 2
        assert e.scalar(f"select count(*) from {s.meta_schema}.restatements") == 1
        assert e.scalar(
            f"select count(*) from {s.meta_schema}.notification_outbox where event = 'drift_detected'"
        ) == len(notices)


def test_correct_production_passes_and_drafts_nothing(tmp_path: Path) -> None:
    s = build_prod(tmp_path, "v2")
    rec = reconcile_once(s, days=120, today=TODAY)
    assert rec.passed, rec.failed_checks
    assert rec.drift_days == [] and rec.draft_restatement_id is None
    with connect(s) as e:
        assert e.scalar(f"select count(*) from {s.meta_schema}.restatements") == 0
        assert e.query(f"select passed from {s.meta_schema}.reconciliations") == [(True,)]


def test_a_day_missing_from_production_is_drift(tmp_path: Path) -> None:
    s = build_prod(tmp_path, "v2")
    with connect(s) as e:
        e.execute(f"delete from {s.prod_schema}.fct_revenue_daily where event_date = '2026-09-15'")
    rec = reconcile_once(s, days=120, today=TODAY, notify=False)
    assert not rec.passed
    assert {str(d["day"]) for d in rec.drift_days} == {"2026-09-15"}
    assert (rec.draft_start, rec.draft_end) == (date(2026, 9, 1), date(2026, 9, 30))
