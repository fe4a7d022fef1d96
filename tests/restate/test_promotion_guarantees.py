"""Promotion and rollback never lose or double-count an event, whatever loads do meanwhile."""

from __future__ import annotations

import json
import threading
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from interfaces.cli import app
from restate.actions import create_plan, finish_run, load_once, run_chunk, run_diff, start_run
from restate.dbt.distributed import release_warehouse
from restate.engines import connect
from restate.partitions.promotion import GateError, TransitionError, promote, rollback
from restate.plan.plans import PlanRequest, load_plan
from restate.settings import Settings, get_settings
from restate.state import changelog, locks
from tests.conftest import expected_daily_sql, land, make_settings, raw_glob, table_rows

pytestmark = pytest.mark.slow

PERIOD = (date(2026, 8, 10), date(2026, 9, 30))
IN_SCOPE = f"event_date between '{PERIOD[0]}' and '{PERIOD[1]}'"
DAILY = "select event_date, account_id, currency, gross_revenue, refunds, net_revenue from {} where {}"
LOADED_UNTIL = datetime(2026, 10, 20)


def store_passing_validation(s: Settings, rid: int) -> None:
    with connect(s) as e:
        e.execute(
            f"insert into {s.meta_schema}.validations values (?, ?, 'restatement', ?, true, null, null, ?)",
            [f"test-{rid}-{datetime.now().timestamp()}", rid, datetime.now(), json.dumps({"checks": []})],
        )


def make_restated(tmp_path: Path, until: datetime | None) -> tuple[Settings, int]:
    """Buggy production loaded up to `until` (all by default), a restatement of PERIOD
    recomputed and validated."""
    s = make_settings(tmp_path / "wh")
    land(s, None, until)
    load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
    rid = create_plan(
        s, PlanRequest("fct_revenue_daily+", *PERIOD, reason="refund bug", requested_by="ana")
    ).restatement_id
    plan = start_run(s, rid)
    for c in plan.chunks:
        run_chunk(s, rid, c.chunk_id)
    finish_run(s, rid)
    run_diff(s, rid)
    store_passing_validation(s, rid)
    return s, rid


@pytest.fixture
def restated(tmp_path: Path) -> tuple[Settings, int]:
    return make_restated(tmp_path, None)


@pytest.fixture
def restated_early(tmp_path: Path) -> tuple[Settings, int]:
    """As `restated`, with only what was processed up to LOADED_UNTIL loaded so far."""
    return make_restated(tmp_path, LOADED_UNTIL)


def finance_follows_the_move(s: Settings, from_day: date, to_day: date, event_id: str) -> None:
    """Finance's corrected exports: the invoice's amount leaves one day for the other."""
    con = duckdb.connect()
    amount, currency = con.execute(
        f"select amount, currency from read_parquet('{raw_glob(s)}', union_by_name = true) "
        "where event_id = ? limit 1",
        [event_id],
    ).fetchone()  # type: ignore[misc]
    for day, sign in ((from_day, -1), (to_day, 1)):
        csv = Path(s.finance) / f"revenue_{day:%Y-%m}.csv"
        lines = csv.read_text().splitlines()
        for i, line in enumerate(lines):
            d, cur, gross, refunds, net = line.split(",")
            if d == str(day) and cur == currency:
                delta = sign * Decimal(str(amount))
                lines[i] = f"{d},{cur},{Decimal(gross) + delta},{refunds},{Decimal(net) + delta}"
        csv.write_text("\n".join(lines) + "\n")


def move_an_invoice(s: Settings, from_day: date, to_day: date) -> str:
    """Land a corrected version of one invoice that moves it from from_day to to_day,
    processed after everything landed so far."""
    con = duckdb.connect()
    processed = con.execute(
        f"select max(coalesce(event_ingested_at, event_ts)) + interval 1 hour "
        f"from read_parquet('{raw_glob(s)}', union_by_name = true)"
    ).fetchone()[0]  # type: ignore[index]
    row = con.execute(
        f"select * exclude (event_date) from read_parquet('{raw_glob(s)}', union_by_name = true) "
        "where event_type = 'invoice_paid' and cast(event_ts as date) = ? order by event_id limit 1",
        [from_day],
    ).fetchone()
    assert row is not None
    event_id = row[0]
    folder = Path(s.landing) / "events" / f"event_date={to_day}"
    folder.mkdir(parents=True, exist_ok=True)
    con.execute(
        f"""copy (
            select event_id, account_id, event_type, amount, currency,
                event_ts + (date '{to_day}' - date '{from_day}') * interval 1 day as event_ts,
                timestamp '{processed}' as updated_at, timestamp '{processed}' as event_ingested_at,
                customer_email, date '{to_day}' as event_date
            from read_parquet('{raw_glob(s)}', union_by_name = true) where event_id = ?
            order by updated_at desc limit 1
        ) to '{folder}/correction_{event_id}.parquet' (format parquet)""",
        [event_id],
    )
    return str(event_id)


def gross_total(e: object, relation: str) -> Decimal:
    return e.scalar(f"select sum(gross_revenue) from {relation}")  # type: ignore[attr-defined]


def test_a_correction_that_moves_an_event_out_of_a_restated_chunk_is_counted_once(
    restated: tuple[Settings, int],
) -> None:
    s, rid = restated
    # After the recompute, a correction moves an invoice from a restated day to a day
    # outside the period; a load (old logic) applies it to production.
    moved = move_an_invoice(s, date(2026, 9, 15), date(2026, 10, 12))
    finance_follows_the_move(s, date(2026, 9, 15), date(2026, 10, 12), moved)
    load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
    with connect(s) as e:
        out = promote(e, s, load_plan(e, s, rid))
        assert any(c.startswith("20260901") for c in out["refreshed_chunks"]), out["refreshed_chunks"]
        expected = f"({expected_daily_sql(raw_glob(s))}) x"
        # Gross revenue does not depend on the logic fix: every invoice is counted once.
        assert gross_total(e, "analytics.fct_revenue_daily") == gross_total(e, expected)
        assert table_rows(e.con, DAILY.format("analytics.fct_revenue_daily", IN_SCOPE)) == table_rows(
            e.con, DAILY.format(expected, IN_SCOPE)
        )
        events = [r["event"] for r in changelog.entries(e, s.meta_schema, rid)]
        assert "revalidated" in events  # what was refreshed was validated before the switch


def test_refreshed_chunks_that_fail_validation_are_not_promoted(restated: tuple[Settings, int]) -> None:
    s, rid = restated
    # A correction moves an invoice between two restated days; finance's exports do not
    # follow it, so the refreshed restatement disagrees with finance on both days.
    move_an_invoice(s, date(2026, 9, 15), date(2026, 9, 16))
    load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
    with connect(s) as e:
        before = table_rows(e.con, "select * from analytics.fct_revenue_daily")
        with pytest.raises(GateError, match="failed validation"):
            promote(e, s, load_plan(e, s, rid))
        assert table_rows(e.con, "select * from analytics.fct_revenue_daily") == before
        assert e.scalar("select status from restate_meta.restatements where restatement_id = ?", [rid]) != (
            "promoted"
        )
        assert locks.current(e, s.meta_schema) is None


def test_rollback_never_drops_events_loaded_after_the_promotion(
    restated_early: tuple[Settings, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    s, rid = restated_early
    with connect(s) as e:
        reported = table_rows(e.con, DAILY.format("analytics.fct_revenue_daily", IN_SCOPE))
        promote(e, s, load_plan(e, s, rid))
    # Later events (some inside the restated period) are loaded on top of the promotion.
    assert land(s, LOADED_UNTIL, None) > 0
    load_once(s)
    with connect(s) as e:
        touched = [
            r[0]
            for r in e.query(
                f"select distinct event_date from analytics.int_deduped_events "
                f"where {IN_SCOPE} and ingested_at > ? order by 1",
                [LOADED_UNTIL],
            )
        ]
        assert touched
        after_loads = table_rows(e.con, DAILY.format("analytics.fct_revenue_daily", "true"))
        with pytest.raises(GateError, match="keep-later-loads") as refused:
            rollback(e, s, load_plan(e, s, rid), actor="bo")
        assert str(touched[0]) in str(refused.value)
        assert table_rows(e.con, DAILY.format("analytics.fct_revenue_daily", "true")) == after_loads

    monkeypatch.setenv("RESTATE_DATA_DIR", str(s.data_dir))
    get_settings.cache_clear()
    try:
        done = CliRunner().invoke(app, ["rollback", str(rid), "--by", "bo", "--keep-later-loads"])
    finally:
        get_settings.cache_clear()
    assert done.exit_code == 0, done.output
    with connect(s) as e:
        entry = [r for r in changelog.entries(e, s.meta_schema, rid) if r["event"] == "rolled_back"][-1]
        kept = {date.fromisoformat(d) for d in entry["payload"]["kept_as_loaded"]}
        # The owners are told which days did not go back to the reported numbers.
        notices = e.query(
            "select payload_json from restate_meta.notification_outbox where event like 'rolled_back%'"
        )
        assert notices
        for (payload,) in notices:
            detail = json.loads(payload)["context"]["detail"]
            assert "Not rolled back" in detail and str(min(kept)) in detail
        # Every day that received a later event is kept as loaded (the load's own record
        # may name more: its lookback re-reads a few days).
        assert set(touched) <= kept
        # Nothing lost: every invoice loaded so far is still counted exactly once ...
        expected = f"({expected_daily_sql(raw_glob(s))}) x"
        assert gross_total(e, "analytics.fct_revenue_daily") == gross_total(e, expected)
        now = table_rows(e.con, DAILY.format("analytics.fct_revenue_daily", IN_SCOPE))
        # ... the kept days are what the later load computed, every other day is as reported.
        assert [r for r in now if r[0] in kept] == [
            r for r in after_loads if r[0] in kept and PERIOD[0] <= r[0] <= PERIOD[1]
        ]
        assert [r for r in now if r[0] not in kept] == [r for r in reported if r[0] not in kept]
        assert [r for r in now if r[0] not in kept] != [r for r in after_loads if r[0] not in kept]


def test_rolling_back_a_restatement_that_was_never_promoted_is_an_error(
    restated: tuple[Settings, int],
) -> None:
    s, rid = restated
    with connect(s) as e, pytest.raises(TransitionError, match="not promoted"):
        rollback(e, s, load_plan(e, s, rid), actor="bo")


def test_two_promotions_of_the_same_restatement_swap_once(restated: tuple[Settings, int]) -> None:
    s, rid = restated
    results: list[object] = []
    with connect(s) as first:
        plan = load_plan(first, s, rid)
        second = first.sibling()  # another session on the same warehouse
        barrier = threading.Barrier(2)

        def go(engine: object) -> None:
            barrier.wait()
            try:
                results.append(promote(engine, s, plan)["status"])  # type: ignore[arg-type]
            except Exception as exc:
                results.append(exc)

        threads = [threading.Thread(target=go, args=(x,)) for x in (first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        second.close()
        assert sorted(map(str, results)) == ["already_promoted", "promoted"], results
        assert (
            first.scalar("select count(*) from restate_meta.archive_versions where action = 'promote'") == 1
        )
        promoted = [r for r in changelog.entries(first, s.meta_schema, rid) if r["event"] == "promoted"]
        assert len(promoted) == 1
        assert locks.current(first, s.meta_schema) is None


def test_a_lock_left_by_a_killed_process_is_taken_over_and_unlock_is_audited(
    restated_early: tuple[Settings, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    s, _ = restated_early
    # A real process takes the lock and is SIGKILLed while holding it.
    script = (
        "import sys, time\n"
        "from restate.engines import connect\n"
        "from restate.settings import Settings\n"
        "from restate.state import locks\n"
        f"s = Settings(data_dir={str(s.data_dir)!r})\n"
        "e = connect(s)\n"
        "assert locks.try_acquire(e, s.meta_schema, locks.PROD_WRITE_LOCK, locks.new_holder('load:x'), 3600)\n"
        "e.close()\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n"
    )
    release_warehouse(s)  # dbt keeps the file open in this process; the child needs it
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    with connect(s) as e:
        holder = locks.current(e, s.meta_schema)
        assert holder is not None and holder.holder.startswith("load:x:")
        # While the holder lives, unlock refuses without --force and a load would wait.
        with pytest.raises(locks.LockError, match="--force"):
            locks.unlock(e, s.meta_schema, by="ops", reason="test")
        assert not locks.try_acquire(e, s.meta_schema, locks.PROD_WRITE_LOCK, locks.new_holder("t"), 60)
    child.kill()
    child.wait()
    # The next load does not wait an hour: the dead holder's lock is taken over, audited.
    land(s, LOADED_UNTIL, None)
    assert load_once(s).status == "success"
    with connect(s) as e:
        taken = [r for r in changelog.entries(e, s.meta_schema) if r["event"] == "lock_taken_over"]
        assert taken and taken[-1]["payload"]["previous_holder"] == holder.holder
        assert locks.current(e, s.meta_schema) is None
        # A lock whose lease ran out can be released by hand through the CLI, audited.
        e.execute(
            "update restate_meta.locks set holder = 'load:y:otherhost:1:ab', expires_at = now() "
            "where lock_name = 'prod_write'"
        )
    monkeypatch.setenv("RESTATE_DATA_DIR", str(s.data_dir))
    get_settings.cache_clear()
    try:
        out = CliRunner().invoke(app, ["unlock", "--by", "ops", "--reason", "host lost"])
    finally:
        get_settings.cache_clear()
    assert out.exit_code == 0, out.output
    with connect(s) as e:
        released = [r for r in changelog.entries(e, s.meta_schema) if r["event"] == "lock_released"]
        assert released[-1]["actor"] == "ops" and released[-1]["payload"]["holder"] == "load:y:otherhost:1:ab"
        assert changelog.verify(e, s.meta_schema) is None


def test_a_refresh_whose_validation_never_finished_is_not_promoted_on_retry(
    restated: tuple[Settings, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from restate.actions import run_validation_step
    from restate.validation import contracts as validation

    s, rid = restated
    moved = move_an_invoice(s, date(2026, 9, 15), date(2026, 10, 12))
    finance_follows_the_move(s, date(2026, 9, 15), date(2026, 10, 12), moved)
    load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
    with connect(s) as e:
        before = table_rows(e.con, "select * from analytics.fct_revenue_daily")
        # Other logic than the plan's would mix two versions: refused before any refresh.
        with pytest.raises(GateError, match="code differs"):
            promote(e, s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}), load_plan(e, s, rid))
        # The re-validation of the refreshed chunks dies (Soda down, token expired, ...).
        real = validation.run_validation
        monkeypatch.setattr(
            validation, "run_validation", lambda *a, **k: (_ for _ in ()).throw(OSError("down"))
        )
        with pytest.raises(OSError):
            promote(e, s, load_plan(e, s, rid))
        monkeypatch.setattr(validation, "run_validation", real)
        # The retry finds nothing left to refresh, but must not reuse the old pass.
        with pytest.raises(GateError, match="failed validation"):
            promote(e, s, load_plan(e, s, rid))
        assert table_rows(e.con, "select * from analytics.fct_revenue_daily") == before
    assert run_validation_step(s, rid)["passed"]
    with connect(s) as e:
        assert promote(e, s, load_plan(e, s, rid))["status"] == "promoted"
        expected = f"({expected_daily_sql(raw_glob(s))}) x"
        assert gross_total(e, "analytics.fct_revenue_daily") == gross_total(e, expected)


def test_a_write_under_a_lost_lock_is_refused(tmp_path: Path) -> None:
    from restate.engines.duckdb import DuckDBEngine
    from restate.state.meta import init_meta

    e = DuckDBEngine(tmp_path / "w.duckdb")
    init_meta(e, "restate_meta")
    a, b = locks.new_holder("promote:1"), locks.new_holder("promote:1")
    assert locks.try_acquire(e, "restate_meta", locks.PROD_WRITE_LOCK, a, 60)
    locks.assert_held(e, "restate_meta", a)
    assert not locks.try_acquire(e, "restate_meta", locks.PROD_WRITE_LOCK, b, 60)
    # A's lease runs out (its heartbeat stalled) and B takes the lock over.
    e.execute("update restate_meta.locks set expires_at = now() - interval 1 second")
    with pytest.raises(locks.LockLostError, match="runs out"):
        locks.assert_held(e, "restate_meta", a)
    assert locks.try_acquire(e, "restate_meta", locks.PROD_WRITE_LOCK, b, 60)
    with pytest.raises(locks.LockLostError, match="no longer held"):
        locks.assert_held(e, "restate_meta", a)
    locks.assert_held(e, "restate_meta", b)
    e.close()


def test_a_refused_cascade_rolls_nothing_back(restated_early: tuple[Settings, int]) -> None:
    s, first = restated_early
    with connect(s) as e:
        promote(e, s, load_plan(e, s, first))
    land(s, LOADED_UNTIL, None)
    load_once(s)  # later events inside the period: the first promotion's partitions changed
    second = create_plan(
        s, PlanRequest("fct_revenue_daily+", *PERIOD, reason="again", requested_by="ana")
    ).restatement_id
    plan = start_run(s, second)
    for c in plan.chunks:
        run_chunk(s, second, c.chunk_id)
    finish_run(s, second)
    store_passing_validation(s, second)
    with connect(s) as e:
        promote(e, s, load_plan(e, s, second))
        prod = table_rows(e.con, "select * from analytics.fct_revenue_daily")
        with pytest.raises(GateError, match="keep-later-loads"):
            rollback(e, s, load_plan(e, s, first), actor="bo", cascade=True)
        statuses = e.query("select restatement_id, status from restate_meta.restatements order by 1")
        assert statuses == [(first, "promoted"), (second, "promoted")]
        assert table_rows(e.con, "select * from analytics.fct_revenue_daily") == prod


def test_an_approval_does_not_carry_over_to_a_promotion_after_a_rollback(
    restated: tuple[Settings, int],
) -> None:
    s, rid = restated
    s = s.model_copy(update={"approvers": ["cfo"]})
    with connect(s) as e:
        e.execute("update restate_meta.restatements set requires_approval = true")
        assert promote(e, s, load_plan(e, s, rid), approved_by="cfo")["status"] == "promoted"
        rollback(e, s, load_plan(e, s, rid), actor="bo")
        # The requester alone cannot re-publish the rolled-back numbers on the old approval.
        with pytest.raises(GateError, match="approv"):
            promote(e, s, load_plan(e, s, rid))
        assert promote(e, s, load_plan(e, s, rid), approved_by="cfo")["status"] == "promoted"
        approvals = [r for r in changelog.entries(e, s.meta_schema, rid) if r["event"] == "approved"]
        assert len(approvals) == 2
