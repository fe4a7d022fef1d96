"""Readers during promotion and rollback see all-old or all-new; a load waits, then applies."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from restate.actions import load_once
from restate.engines import connect
from restate.engines.base import Engine
from restate.partitions import promotion
from restate.plan.plans import load_plan
from restate.settings import Settings
from restate.state import changelog, locks
from tests.conftest import expected_daily_sql, land, raw_glob, table_rows
from tests.restate.test_promotion_guarantees import DAILY, IN_SCOPE, LOADED_UNTIL, make_restated

pytestmark = pytest.mark.slow

TOTALS = f"select count(*), sum(net_revenue), sum(refunds) from analytics.fct_revenue_daily where {IN_SCOPE}"


class Poller(threading.Thread):
    """Reads the period's totals as fast as it can from its own session until stopped."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(daemon=True)
        self.session = engine.sibling()
        self.seen: set[tuple[Any, ...]] = set()
        self.reads = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.seen.add(tuple(self.session.query(TOTALS)[0]))
            self.reads += 1

    def finish(self) -> set[tuple[Any, ...]]:
        self.stop.set()
        self.join()
        self.session.close()
        return self.seen


def test_readers_never_see_a_mixed_state(tmp_path: Path) -> None:
    s, rid = make_restated(tmp_path, None)
    with connect(s) as e:
        before = tuple(e.query(TOTALS)[0])
        poller = Poller(e)
        poller.start()
        promotion.promote(e, s, load_plan(e, s, rid))
        seen_promote = poller.finish()
        after = tuple(e.query(TOTALS)[0])
        assert before != after
        poller = Poller(e)
        poller.start()
        promotion.rollback(e, s, load_plan(e, s, rid), actor="bo")
        seen_rollback = poller.finish()
        assert tuple(e.query(TOTALS)[0]) == before
    assert seen_promote <= {before, after}, seen_promote - {before, after}
    assert seen_rollback <= {before, after}, seen_rollback - {before, after}
    assert poller.reads > 1


def test_a_load_started_during_a_promotion_waits_then_applies_on_top(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s: Settings
    s, rid = make_restated(tmp_path, LOADED_UNTIL)
    land(s, LOADED_UNTIL, None)  # later events have landed; a load will pick them up
    load_refused = threading.Event()
    real_try = locks.try_acquire

    def watching_try(engine: Engine, schema: str, name: str, holder: str, ttl_s: float) -> bool:
        got = real_try(engine, schema, name, holder, ttl_s)
        if not got and holder.startswith("load:"):
            load_refused.set()
        return got

    real_late = promotion.late_chunks

    def slow_late(engine: Engine, settings: Settings, plan: Any) -> list[str]:
        # The promotion holds the lock here: let the load arrive and be refused first.
        started.set()
        assert load_refused.wait(120), "the load never asked for the lock"
        return real_late(engine, settings, plan)

    started = threading.Event()
    monkeypatch.setattr(locks, "try_acquire", watching_try)
    monkeypatch.setattr(promotion, "late_chunks", slow_late)
    results: dict[str, Any] = {}

    def run_load() -> None:
        assert started.wait(300)
        results["load"] = load_once(s)
        results["load_done"] = datetime.now()

    loader = threading.Thread(target=run_load)
    loader.start()
    with connect(s) as e:
        results["promotion"] = promotion.promote(e, s, load_plan(e, s, rid))
    loader.join(600)
    assert results["promotion"]["status"] == "promoted"
    assert results["promotion"]["refreshed_chunks"] == []  # the load had not run yet
    assert results["load"].status == "success" and results["load"].rows_new > 0
    with connect(s) as e:
        promoted_at = next(
            r["recorded_at"] for r in changelog.entries(e, s.meta_schema, rid) if r["event"] == "promoted"
        )
        load_started = e.scalar(
            f"select started_at from {s.meta_schema}.loads where load_id = ?", [results["load"].load_id]
        )
        assert load_started >= promoted_at  # it waited for the promotion's lock
        # Applied on top: the period is the fixed logic over every event loaded so far.
        expected = f"({expected_daily_sql(raw_glob(s))}) x"
        assert table_rows(e.con, DAILY.format("analytics.fct_revenue_daily", IN_SCOPE)) == table_rows(  # type: ignore[attr-defined]
            e.con,
            DAILY.format(expected, IN_SCOPE),  # type: ignore[attr-defined]
        )
