"""Child: profile one restatement chunk's dbt call, with new --vars vs the same --vars.

restate passes each chunk's bounds to dbt as --vars; dbt cannot partially parse
when vars change, so every chunk re-parses the whole project. This probe runs the
same chunk command three ways in one process to show what that costs.
"""

from __future__ import annotations

import time
from typing import Any

from common import emit_result

from restate.dbt.runner import DbtProject
from restate.settings import apply_process_env, get_settings


def chunk_run(dbt: DbtProject, start: str, end: str) -> float:
    """The dbt command restate runs for one chunk, into a probe schema; returns its wall time."""
    settings = dbt.settings
    chunk = {"start": start, "end": end, "bucket": 0, "buckets": 1, "accounts": []}
    started = time.perf_counter()
    dbt.run_deferred(
        ["fct_revenue_daily"],
        vars={**settings.dbt_vars(), "restate_schema": "restate_probe", "restate_chunk": chunk},
    )
    return time.perf_counter() - started


def main() -> None:
    settings = get_settings()
    apply_process_env(settings)
    dbt = DbtProject(settings)
    timings: dict[str, Any] = {}
    timings["first_call_s"] = chunk_run(dbt, "2026-01-01", "2026-01-31")
    timings["new_vars_s"] = chunk_run(dbt, "2026-02-01", "2026-02-28")
    timings["same_vars_s"] = chunk_run(dbt, "2026-02-01", "2026-02-28")
    timings["new_vars_again_s"] = chunk_run(dbt, "2026-03-01", "2026-03-31")
    timings["same_vars_again_s"] = chunk_run(dbt, "2026-03-01", "2026-03-31")
    started = time.perf_counter()
    dbt.invoke(["parse"], vars={**settings.dbt_vars(), "restate_schema": "restate_probe", "p": 1})
    timings["parse_new_vars_s"] = time.perf_counter() - started
    emit_result(timings)


if __name__ == "__main__":
    main()
