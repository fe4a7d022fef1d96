"""What one dbt call costs through restate's in-process runner and through prefect-dbt's
PrefectDbtRunner (a Prefect task per node, assets, logs), inside a real flow run on a
temporary Prefect server: the whole incremental load (`dbt run`, 7 models) and one view
(the follow-on view a restatement rebuilds). BENCH_DBT_CALLS calls each (default 5) after
a first call, reported on its own (imports, parse cache and adapter are paid there).
Prints one JSON object; `make bench-prefect-dbt` runs it."""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CALLS = int(os.environ.get("BENCH_DBT_CALLS", "5"))


def main() -> None:
    from prefect import flow
    from prefect.testing.utilities import prefect_test_harness

    from flows.dbt_tasks import prefect_dbt_invoker
    from restate.actions import load_once
    from restate.dbt.runner import DbtProject, use_invoker
    from restate.settings import Settings, apply_process_env
    from tests.conftest import land

    work = Path(tempfile.mkdtemp(prefix="restate-bench-prefect-dbt-"))
    s = Settings(data_dir=work)  # type: ignore[call-arg]
    apply_process_env(s)
    land(s)
    load_once(s)  # production built once; every call below rebuilds the same models
    dbt = DbtProject(s)
    commands = {
        "load: dbt run (7 models)": ["run"],
        "follow-on view: dbt run --select fct_revenue_monthly": ["run", "--select", "fct_revenue_monthly"],
    }
    out: dict[str, Any] = {"calls": CALLS, "results": {}}

    @flow(name="bench-prefect-dbt")
    def measure() -> dict[str, Any]:
        found: dict[str, Any] = {}
        for label, command in commands.items():
            for runner, invoker in (("restate", None), ("prefect-dbt", prefect_dbt_invoker(s))):
                times = []
                with use_invoker(invoker):
                    started = time.perf_counter()
                    dbt.invoke(command)  # the first call in this process: parse cache, adapter, imports
                    first = time.perf_counter() - started
                    for _ in range(CALLS):
                        started = time.perf_counter()
                        dbt.invoke(command)
                        times.append(time.perf_counter() - started)
                found.setdefault(label, {})[runner] = {
                    "first_call_s": round(first, 3),
                    "median_s": round(statistics.median(times), 3),
                    "max_s": round(max(times), 3),
                }
            r = found[label]
            r["prefect_dbt_extra_s"] = round(r["prefect-dbt"]["median_s"] - r["restate"]["median_s"], 3)
        return found

    with prefect_test_harness(server_startup_timeout=120):
        out["results"] = measure()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
