"""Restatement lifecycle on real DuckDB + dbt: isolation, promotion, rollback, audit."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from restate.actions import create_plan, finish_run, load_once, run_chunk, run_diff, start_run
from restate.engines import connect
from restate.partitions.promotion import GateError, promote, rollback
from restate.plan.plans import PlanRequest, load_plan
from restate.settings import Settings
from restate.state import changelog
from tests.conftest import expected_daily_sql, land, make_settings, raw_glob, table_rows

pytestmark = pytest.mark.slow

PERIOD = (date(2026, 8, 10), date(2026, 9, 30))
IN_SCOPE = f"event_date between '{PERIOD[0]}' and '{PERIOD[1]}'"
DAILY = "select event_date, account_id, currency, gross_revenue, refunds, net_revenue from {} where {}"


def store_passing_validation(s: Settings, rid: int) -> None:
    """The promotion gate reads a stored validation result (the Soda step writes it)."""
    with connect(s) as e:
        e.execute(
            f"insert into {s.meta_schema}.validations values (?, ?, 'restatement', ?, true, null, null, ?)",
            [f"test-{rid}-{datetime.now().timestamp()}", rid, datetime.now(), json.dumps({"checks": []})],
        )


def recompute(s: Settings, rid: int) -> int:
    plan = start_run(s, rid)
    reused = sum(run_chunk(s, rid, c.chunk_id)["reused"] for c in plan.chunks)
    finish_run(s, rid)
    run_diff(s, rid)
    return reused


@pytest.fixture
def buggy_prod(tmp_path: Path) -> Settings:
    s = make_settings(tmp_path / "wh")
    land(s, None, datetime(2026, 10, 20))
    load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
    return s


def plan_fix(s: Settings) -> int:
    return create_plan(
        s, PlanRequest("fct_revenue_daily+", *PERIOD, reason="refund bug", requested_by="ana", ticket="FIN-1")
    ).restatement_id


def test_promotion_matches_fixed_logic_and_keeps_the_rest(buggy_prod: Settings) -> None:
    s = buggy_prod
    with connect(s) as e:
        outside_before = table_rows(
            e.con, f"select * from analytics.fct_revenue_daily where not ({IN_SCOPE})"
        )
        reported = table_rows(e.con, DAILY.format("analytics.fct_revenue_daily", IN_SCOPE))
    rid = plan_fix(s)
    recompute(s, rid)
    with connect(s) as e, pytest.raises(GateError):
        promote(e, s, load_plan(e, s, rid))  # no validation yet
    # production untouched by the recompute
    with connect(s) as e:
        assert table_rows(e.con, DAILY.format("analytics.fct_revenue_daily", IN_SCOPE)) == reported
    store_passing_validation(s, rid)
    before_promotion = datetime.now()
    with connect(s) as e:
        out = promote(e, s, load_plan(e, s, rid))
        assert out["status"] == "promoted"
        expected = table_rows(e.con, DAILY.format(f"({expected_daily_sql(raw_glob(s))})", IN_SCOPE))
        assert table_rows(e.con, DAILY.format("analytics.fct_revenue_daily", IN_SCOPE)) == expected
        assert expected != reported  # the bug really changed numbers
        assert (
            table_rows(e.con, f"select * from analytics.fct_revenue_daily where not ({IN_SCOPE})")
            == outside_before
        )
        as_of = table_rows(
            e.con,
            DAILY.format("analytics.fct_revenue_daily_as_of", IN_SCOPE)
            + f" and (valid_from is null or valid_from <= '{before_promotion}')"
            f" and (valid_to is null or valid_to > '{before_promotion}')",
        )
        assert as_of == reported
        # running the step again is a no-op
        assert promote(e, s, load_plan(e, s, rid))["status"] == "already_promoted"
        # rollback restores as-reported values exactly, and re-promotion works
        rollback(e, s, load_plan(e, s, rid), actor="ana", reason="test")
        assert table_rows(e.con, DAILY.format("analytics.fct_revenue_daily", IN_SCOPE)) == reported
        promote(e, s, load_plan(e, s, rid))
        assert table_rows(e.con, DAILY.format("analytics.fct_revenue_daily", IN_SCOPE)) == expected
        assert changelog.verify(e, s.meta_schema) is None
        entries = changelog.entries(e, s.meta_schema, rid)
        assert [r["payload"]["notice"] for r in entries if r["event"] == "notice_sent"]
        events = [r["event"] for r in entries if r["event"] != "notice_sent"]
        assert events[:3] == ["planned", "recomputed", "diffed"] and events.count("promoted") == 2
        pii = e.query(
            "select table_schema, table_name, column_name from information_schema.columns "
            "where table_schema like 'restate%' and column_name ilike '%email%' and column_name not ilike '%hash%'"
        )
        assert pii == []


def test_a_failed_promotion_leaves_prod_exactly_as_before(buggy_prod: Settings) -> None:
    s = buggy_prod
    rid = plan_fix(s)
    recompute(s, rid)
    store_passing_validation(s, rid)
    with connect(s) as e:
        before = table_rows(e.con, "select * from analytics.fct_revenue_daily")
        # Sabotage: the restated table loses a column, so the insert fails after the delete.
        e.execute(f"alter table restate_{rid}.fct_revenue_daily drop column refund_count")
        with pytest.raises(Exception, match=r"(?i)refund_count"):
            promote(e, s, load_plan(e, s, rid))
        assert table_rows(e.con, "select * from analytics.fct_revenue_daily") == before
        assert (
            e.scalar(f"select status from {s.meta_schema}.restatements where restatement_id = ?", [rid])
            != "promoted"
        )


def test_late_events_during_the_restatement_are_promoted_once(buggy_prod: Settings) -> None:
    s = buggy_prod
    rid = plan_fix(s)
    recompute(s, rid)
    store_passing_validation(s, rid)
    # Events land and are loaded (by the old code) while the restatement waits.
    landed = land(s, datetime(2026, 10, 20), None)
    assert landed > 0
    load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
    with connect(s) as e:
        late = e.scalar(
            f"select count(*) from analytics.int_deduped_events where {IN_SCOPE} and ingested_at > '2026-10-20'"
        )
        assert late > 0
        out = promote(e, s, load_plan(e, s, rid))
        assert out["refreshed_chunks"]
        expected = table_rows(e.con, DAILY.format(f"({expected_daily_sql(raw_glob(s))})", IN_SCOPE))
        assert table_rows(e.con, DAILY.format("analytics.fct_revenue_daily", IN_SCOPE)) == expected


def test_rerunning_a_finished_recompute_reuses_every_chunk(buggy_prod: Settings) -> None:
    s = buggy_prod
    rid = plan_fix(s)
    recompute(s, rid)
    chunks = len(load_plan_for(s, rid).chunks)
    assert recompute(s, rid) == chunks


def load_plan_for(s: Settings, rid: int):
    with connect(s) as e:
        return load_plan(e, s, rid)


def test_closed_periods_need_a_flag(buggy_prod: Settings) -> None:
    from restate.plan.plans import PlanError

    s = buggy_prod.model_copy(update={"close_date": date(2026, 9, 1)})
    with pytest.raises(PlanError, match="allow-closed-period"):
        create_plan(s, PlanRequest("fct_revenue_daily", *PERIOD, reason="x", requested_by="y"))
    plan = create_plan(
        s, PlanRequest("fct_revenue_daily", *PERIOD, reason="x", requested_by="y", allow_closed_period=True)
    )
    assert plan.period_start == PERIOD[0] and timedelta(0) <= plan.period_end - plan.period_start
