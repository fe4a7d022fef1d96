"""A restatement driven to a target state, resuming from whatever the warehouse holds.

Run as `python -m tests.restate.crash_driver TARGET` with RESTATE_DATA_DIR set (and
RESTATE_CRASH_AT to kill it at a step boundary). Each step is what a user reruns after
a crash: `restate run` (recompute reusing done chunks, validate, diff), `restate
promote`, `restate rollback`, and `restate notify` for the step's notice.
"""

from __future__ import annotations

import sys
from datetime import date

from notifications.lifecycle import notify_restatement
from restate.actions import create_plan, finish_run, run_chunk, run_diff, run_validation_step, start_run
from restate.engines import connect
from restate.partitions.promotion import promote, rollback
from restate.plan.plans import PlanRequest, load_plan
from restate.settings import Settings
from restate.state.meta import init_meta

PERIOD = (date(2026, 8, 10), date(2026, 9, 30))


def status(s: Settings) -> tuple[int | None, str | None]:
    with connect(s) as e:
        init_meta(e, s.meta_schema)
        rows = e.query(f"select restatement_id, status from {s.meta_schema}.restatements")
    return (int(rows[0][0]), str(rows[0][1])) if rows else (None, None)


def main(target: str) -> None:
    s = Settings()
    rid, state = status(s)
    if rid is None:
        rid = create_plan(
            s, PlanRequest("fct_revenue_daily+", *PERIOD, reason="refund bug", requested_by="ana")
        ).restatement_id
        state = "planned"
    notify_restatement(s, rid, "restatement_planned")
    if state not in ("promoted", "rolled_back"):
        plan = start_run(s, rid)
        for chunk in plan.chunks:
            run_chunk(s, rid, chunk.chunk_id)
        finish_run(s, rid)
        if not run_validation_step(s, rid)["passed"]:
            raise SystemExit("validation failed")
        run_diff(s, rid)
    if state != "rolled_back":
        with connect(s) as e:
            promote(e, s, load_plan(e, s, rid))
        notify_restatement(s, rid, "promoted")
    if target == "rolled_back":
        _, state = status(s)
        if state == "promoted":
            with connect(s) as e:
                rollback(e, s, load_plan(e, s, rid), actor="bo", reason="crash test")
        notify_restatement(s, rid, "rolled_back")
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
