"""restate's own figures alone (14 months, one day, rerun after a kill), for iterating on them.

`make bench-restate`: the same children and checks as `make bench`, without the floors,
peers and freshness; the data of an earlier run at the same BENCH_EVENTS is reused.
Prints the figures; writes nothing under version control (RESULTS.md comes from `make bench`).
"""

from __future__ import annotations

import json
import sys

from common import VENV_PY, WORK, Scale, say
from steps import (
    measure_freshness,
    measure_limit,
    measure_restate,
    measure_resume,
    prefect_server,
    prepare_data,
    reuse_data,
)


def main() -> int:
    if "--freshness" in sys.argv[1:]:
        return freshness_only()
    scale = Scale.from_env()
    for sub in ("logs", "out", "runs", "prefect-home"):
        (WORK / sub).mkdir(parents=True, exist_ok=True)
    ds = reuse_data(scale)
    expected = WORK / "out" / "limit_raw_project.parquet"
    if ds is None or not expected.exists():
        ds = prepare_data(scale)
        measure_limit(VENV_PY, ds, scale, "project")  # writes the expected table
    else:
        say(f"reusing the data prepared at {scale.events:,} events")
    figures = {}
    with prefect_server():
        figures["full"] = measure_restate(ds, "full", scale.slow_runs, expected)
        figures["day"] = measure_restate(ds, "day", scale.runs, expected)
        figures["rerun"] = measure_resume(ds, scale.slow_runs, expected)
        figures["full warm"] = measure_restate(ds, "full", scale.slow_runs, expected, warm=True)
        figures["day warm"] = measure_restate(ds, "day", scale.runs, expected, warm=True)
        figures["rerun warm"] = measure_resume(ds, scale.slow_runs, expected, warm=True)
    for name, fig in figures.items():
        say(f"{name}: {fig['median_s']:.2f} s, peak {fig['peak_rss_mb']:.0f} MB, parts {fig['parts']}")
    for tag in ("", " warm"):
        full = figures[f"full{tag}"]["median_s"]
        say(f"one day / 14 months{tag} {figures[f'day{tag}']['median_s'] / full:.3f}")
        say(f"rerun / full{tag} {figures[f'rerun{tag}']['median_s'] / full:.3f}")
    print(json.dumps(figures, default=str))
    return 0


def freshness_only() -> int:
    """`make bench-restate ARGS=--freshness`: loads idle and during a 14-month restatement,
    each load's wait for the file and the steps it waited on."""
    scale = Scale.from_env()
    for sub in ("logs", "out", "runs", "prefect-home"):
        (WORK / sub).mkdir(parents=True, exist_ok=True)
    ds = reuse_data(scale) or prepare_data(scale)
    with prefect_server():
        figures = measure_freshness(ds)
    for name in ("idle", "loaded"):
        fig = figures[name]
        runs = [round(x, 2) for x in fig["runs_s"]]
        say(f"{name}: {runs} s; waited {fig['waited_s']} s on {fig['waited_on']}")
    idle, loaded = figures["idle"]["median_s"], figures["loaded"]
    say(f"loaded / idle: median {loaded['median_s'] / idle:.2f}, worst {loaded['max_s'] / idle:.2f}")
    print(json.dumps(figures, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
