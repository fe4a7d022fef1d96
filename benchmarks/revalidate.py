"""Re-validation of a 14-month restatement after one chunk changed: kept checks against all.

`make bench-revalidate` (data of an earlier `make bench` at the same BENCH_EVENTS is
reused, else prepared): on a copy of the buggy production, one warmed process plans the
14-month restatement and runs it to validation; then one chunk in the middle is marked
not done, as a run killed in it leaves it, and the restatement is run again. Printed:
the first validation, the re-validation the rerun made (partition-local checks on the
changed chunk's dates only, the others on the whole period), and then - alternately,
three times each, on the same data - the validation keeping what the first one passed
and the validation keeping nothing (medians). Writes nothing under version control.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from common import WORK, Scale, fresh_copy, say
from steps import prepare_data, restate_env, reuse_data


def main() -> int:
    scale = Scale.from_env()
    ds = reuse_data(scale) or prepare_data(scale)
    data_dir = fresh_copy(ds.baseline, WORK / "runs" / "revalidate")
    os.environ.update(restate_env(data_dir, ds.landing, ds.finance))

    from datetime import date

    import restate.actions as actions
    from restate.engines import connect
    from restate.plan.plans import PlanRequest, load_plan
    from restate.settings import apply_process_env, get_settings
    from restate.validation.contracts import run_validation
    from restate.validation.kept_checks import previous_validation

    settings = get_settings()
    apply_process_env(settings)
    actions.warm_up(settings)
    start, end = date.fromisoformat(ds.start), date.fromisoformat(ds.end)
    plan = actions.create_plan(
        settings,
        PlanRequest("fct_revenue_daily+", start, end, "benchmark: re-validation", "bench", "BENCH-2"),
        notify=False,
    )
    rid = plan.restatement_id
    first = actions.run_restatement(settings, rid)
    middle = sorted(plan.chunks, key=lambda c: c.start)[len(plan.chunks) // 2]
    with connect(settings) as engine:
        first_checks = previous_validation(engine, settings, rid)
        engine.execute(
            f"update {settings.meta_schema}.restatement_partitions set status = 'pending' "
            "where restatement_id = ? and chunk_id = ?",
            [rid, middle.chunk_id],
        )
    started = time.perf_counter()
    again = actions.run_restatement(settings, rid)
    rerun_s = time.perf_counter() - started
    with connect(settings) as engine:
        stored = {
            vid: json.loads(text)
            for vid, text in engine.query(
                f"select validation_id, result_json from {settings.meta_schema}.validations "
                "where restatement_id = ?",
                [rid],
            )
        }
        plan_now = load_plan(engine, settings, rid)
        timings: dict[str, list[float]] = {"kept": [], "nothing": []}
        for _ in range(3):
            for name, previous in (("kept", first_checks), ("nothing", None)):
                result = run_validation(
                    settings, engine, plan_now.restate_schema, start, end, rid, previous=previous
                )
                timings[name].append(result.duration_s)
                if previous is None:
                    full = result
    kept: dict[str, Any] = stored[again["validation"]["validation_id"]]
    figures = {
        "events": scale.events,
        "chunks": len(plan.chunks),
        "changed_chunk": f"{middle.start}..{middle.end}",
        "first_validation_s": stored[first["validation"]["validation_id"]]["duration_s"],
        "revalidation_s": kept["duration_s"],
        "kept_checks": kept["kept"].get("checks"),
        "checks": len(kept["checks"]),
        "span": kept["kept"].get("span"),
        "kept_validation_s": timings["kept"],
        "full_validation_same_data_s": timings["nothing"],
        "same_verdicts": {(c.dataset, c.check_type, c.column, c.qualifier): c.outcome for c in full.checks}
        == {
            (c["dataset"], c["check_type"], c["column"], c["qualifier"]): c["outcome"] for c in kept["checks"]
        },
        "rerun_wall_s": round(rerun_s, 3),
    }
    say(
        f"first validation {figures['first_validation_s']:.2f} s; in the rerun after one chunk changed "
        f"{figures['revalidation_s']:.2f} s ({figures['kept_checks']} of {figures['checks']} checks kept, "
        f"run again on {figures['span']}); then keeping {sorted(timings['kept'])[1]:.2f} s, "
        f"keeping nothing {sorted(timings['nothing'])[1]:.2f} s (medians of 3); "
        f"same verdicts: {figures['same_verdicts']}"
    )
    print(json.dumps(figures, default=str))
    return 0 if figures["same_verdicts"] else 1


if __name__ == "__main__":
    sys.exit(main())
