"""A resumed run keeps the checks that already ran on the same chunks, and only those.

Real DuckDB, dbt and Soda: a restatement run to validation, then run again in the ways a
resume meets it (nothing changed; a chunk recomputed since; killed before the status
recorded the validation)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from restate.actions import create_plan, load_once, run_restatement
from restate.engines import connect
from restate.plan.plans import PlanRequest
from restate.settings import Settings
from tests.conftest import land, make_settings

pytestmark = pytest.mark.slow


def validations(s: Settings, rid: int) -> int:
    with connect(s) as e:
        return int(e.scalar("select count(*) from restate_meta.validations where restatement_id = ?", [rid]))


def test_a_rerun_with_every_chunk_unchanged_keeps_the_validation(validated: tuple[Settings, int]) -> None:
    s, rid = validated
    again = run_restatement(s, rid)
    assert again["reused"] == len(again["chunks"])
    assert again["validation"]["kept"] and again["validation"]["passed"]
    assert "kept (passed)" in again["validation"]["report"]
    assert validations(s, rid) == 1
    assert again["recompute"]["rows_written"] > 0


def test_a_chunk_recomputed_since_the_validation_is_checked_again(validated: tuple[Settings, int]) -> None:
    s, rid = validated
    with connect(s) as e:
        e.execute(
            "update restate_meta.restatement_partitions set status = 'pending' where restatement_id = ? "
            "and chunk_id = (select min(chunk_id) from restate_meta.restatement_partitions "
            "where restatement_id = ?)",
            [rid, rid],
        )
    again = run_restatement(s, rid)
    assert again["reused"] == len(again["chunks"]) - 1
    assert not again["validation"].get("kept") and again["validation"]["passed"]
    assert validations(s, rid) == 2


def test_a_validation_the_status_never_recorded_is_run_again(validated: tuple[Settings, int]) -> None:
    """Killed after storing the result but before the status transaction: not kept."""
    s, rid = validated
    with connect(s) as e:
        e.execute(
            "update restate_meta.restatements set status = 'recomputed' where restatement_id = ?", [rid]
        )
    again = run_restatement(s, rid)
    assert not again["validation"].get("kept")
    assert validations(s, rid) == 2


def test_a_finance_file_that_changed_since_the_validation_is_checked_again(
    validated: tuple[Settings, int],
) -> None:
    """The checks read the finance exports too: a corrected export means checking again."""
    s, rid = validated
    export = next(p for p in Path(s.finance).rglob("*") if p.is_file())
    export.touch()
    again = run_restatement(s, rid)
    assert not again["validation"].get("kept")
    assert validations(s, rid) == 2


def test_loads_since_the_plan_are_caught_up_before_the_checks_and_never_kept_over(tmp_path: Path) -> None:
    """A load that lands late events of the period after the plan: the next validation
    recomputes the chunks it changed before checking (so conservation compares like with
    like), and a rerun never keeps a validation made before such a load."""
    s = make_settings(tmp_path / "wh")
    land(s, None, datetime(2026, 10, 20))
    load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
    plan = create_plan(
        s, PlanRequest("fct_revenue_daily+", date(2026, 10, 1), date(2026, 10, 19), "refund bug", "ana", "FIN-1"),
        notify=False,
    )  # fmt: skip
    rid = plan.restatement_id
    first = run_restatement(s, rid)
    assert not first["validation"].get("refreshed")  # nothing loaded since the plan
    land(s, datetime(2026, 10, 20), datetime(2026, 11, 30))  # late events of the period among them
    loaded = load_once(s)
    with connect(s) as e:
        touched = e.scalar(
            "select count(*) from restate_meta.load_partitions where load_id = ? and partition_date between ? and ?",
            [loaded.load_id, date(2026, 10, 1), date(2026, 10, 19)],
        )
    assert touched, "the second landing has no late events for the period: this test would prove nothing"
    again = run_restatement(s, rid)
    assert again["reused"] == len(again["chunks"])  # the chunks were done before the load
    assert not again["validation"].get("kept")
    assert again["validation"]["refreshed"]  # recomputed under the lock, then checked
    assert again["validation"]["passed"]  # the late events are conserved in the refreshed chunks
    third = run_restatement(s, rid)  # nothing loaded since: now the validation is kept
    assert third["validation"].get("kept")


def test_a_promoted_restatement_is_not_validated_again(validated: tuple[Settings, int]) -> None:
    from restate.actions import promote, run_validation_step

    s, rid = validated
    promote(s.model_copy(update={"approvers": ["bob"]}), rid, approved_by="bob")
    with pytest.raises(ValueError, match="is promoted: only a recomputed restatement is validated"):
        run_validation_step(s, rid)
    with connect(s) as e:
        assert (
            e.scalar("select status from restate_meta.restatements where restatement_id = ?", [rid])
            == "promoted"
        )


def test_a_refresh_placeholder_is_neither_kept_nor_forced(validated: tuple[Settings, int]) -> None:
    """Killed between recomputing chunks for loads and checking them: the placeholder
    validation it leaves is checked again, never kept or forced."""
    from restate.actions import force_validation

    s, rid = validated
    with connect(s) as e:
        e.execute(
            "insert into restate_meta.validations (validation_id, restatement_id, scope, checked_at, passed, "
            "result_json) values ('refreshed-test', ?, 'restatement', ?, false, '{\"pending\": \"not validated yet\"}')",
            [rid, datetime.now(UTC).replace(tzinfo=None) + timedelta(minutes=1)],  # stored times are UTC
        )
        e.execute(
            "update restate_meta.restatements set status = 'validation_failed' where restatement_id = ?",
            [rid],
        )
    with pytest.raises(ValueError, match="not checked yet"):
        force_validation(s, rid, "carol", "looks fine")
    again = run_restatement(s, rid)
    assert not again["validation"].get("kept") and again["validation"]["passed"]


def test_a_run_finishing_after_a_promotion_leaves_it_promoted(validated: tuple[Settings, int]) -> None:
    """A rerun's chunks finish after another process promoted (or cancelled) the
    restatement: the run records nothing and the status stays."""
    from restate.dbt.runner import DbtProject
    from restate.partitions.recompute import finish_recompute
    from restate.plan.plans import load_plan

    s, rid = validated
    with connect(s) as e:
        e.execute("update restate_meta.restatements set status = 'promoted' where restatement_id = ?", [rid])
        with pytest.raises(ValueError, match="was promoted while its chunks ran"):
            finish_recompute(s, e, DbtProject(s), load_plan(e, s, rid))
        assert (
            e.scalar("select status from restate_meta.restatements where restatement_id = ?", [rid])
            == "promoted"
        )


def test_a_hand_edit_of_the_restated_rows_since_the_validation_is_checked_again(
    validated: tuple[Settings, int],
) -> None:
    """Every chunk unchanged, but a row of the restatement schema edited by hand after the
    validation: the rerun sees the rows' digests differ, checks again and fails."""
    s, rid = validated
    with connect(s) as e:
        schema = e.scalar(
            "select restate_schema from restate_meta.restatements where restatement_id = ?", [rid]
        )
        e.execute(
            f"update {schema}.fct_revenue_daily set gross_revenue = gross_revenue + 1000 "
            f"where event_date = (select min(event_date) from {schema}.fct_revenue_daily)"
        )
    again = run_restatement(s, rid)
    assert again["reused"] == len(again["chunks"])
    assert not again["validation"].get("kept")
    assert not again["validation"]["passed"]
    assert validations(s, rid) == 2


def test_other_contract_variables_since_the_validation_are_checked_again(
    validated: tuple[Settings, int],
) -> None:
    """Every chunk unchanged, but the tolerance the finance checks use (a setting, no file
    touched) differs from the validation's: the rerun checks again."""
    s, rid = validated
    again = run_restatement(s.model_copy(update={"tolerance_pct": s.tolerance_pct / 10}), rid)
    assert again["reused"] == len(again["chunks"])
    assert not again["validation"].get("kept")
    assert validations(s, rid) == 2
