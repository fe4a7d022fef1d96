"""`make bench`: restatement speed against the engine's limit, dbt microbatch and SQLMesh.

One run, one generated 14-month data set, every tool checked against the limit
query's table. Scale with BENCH_EVENTS (raw rows, default 1,000,000), repetitions
with BENCH_RUNS (fast steps, default 3) and BENCH_SLOW_RUNS (slow steps, default 1).
Writes benchmarks/results.json, benchmarks/RESULTS.md and benchmarks/results.png.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import VENV_PY, WORK, Scale, say
from report import results_paths, write_reports
from steps import (
    ensure_sqlmesh_venv,
    measure_freshness,
    measure_limit,
    measure_microbatch,
    measure_restate,
    measure_resume,
    measure_sqlmesh,
    prefect_server,
    prepare_data,
    probe_dbt_parse,
    sqlmesh_version,
)


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM and OS of this machine (from /proc on Linux)."""
    cpu = platform.processor() or platform.machine()
    ram_kb = 0
    cpuinfo, meminfo = Path("/proc/cpuinfo"), Path("/proc/meminfo")
    if cpuinfo.exists():
        names = [x for x in cpuinfo.read_text().splitlines() if x.startswith("model name")]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    if meminfo.exists():
        total = [x for x in meminfo.read_text().splitlines() if x.startswith("MemTotal")]
        ram_kb = int(total[0].split()[1]) if total else 0
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(ram_kb / 2**20, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def project_versions() -> dict[str, str]:
    """Versions as installed in the project's virtualenv (the interpreter that runs the tools)."""
    names = ["duckdb", "dbt-core", "dbt-duckdb", "prefect", "soda-core"]
    code = f"from importlib.metadata import version as v; print(' '.join(v(n) for n in {names!r}))"
    out = subprocess.run([str(VENV_PY), "-c", code], capture_output=True, text=True, check=True)
    return dict(zip(names, out.stdout.split(), strict=True))


def main() -> int:
    started = time.monotonic()
    scale = Scale.from_env()
    for sub in ("logs", "out", "runs", "prefect-home"):
        (WORK / sub).mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "versions": {"python": platform.python_version(), **project_versions()},
        "scale": scale.__dict__ | {"events_per_day": scale.events_per_day},
        "skipped": {},
    }
    say(f"scale: {scale}")
    ds = prepare_data(scale)
    results["dataset"] = ds.info
    expected = WORK / "out" / "limit_raw_project.parquet"
    results["limit"] = {"project": measure_limit(VENV_PY, ds, scale, "project")}
    say(f"limit (raw floor): {results['limit']['project']['raw']['median_s']:.2f}s")

    sqlmesh_problem = ensure_sqlmesh_venv()
    if sqlmesh_problem is None:
        from steps import SQLMESH_PY

        results["versions"]["sqlmesh"] = sqlmesh_version()
        results["limit"]["sqlmesh"] = measure_limit(SQLMESH_PY, ds, scale, "sqlmesh")
    else:
        results["skipped"]["SQLMesh"] = sqlmesh_problem

    with prefect_server() as server:
        results["prefect_server_startup_s"] = server["startup_s"]
        results["restate"] = {
            "full": measure_restate(ds, "full", scale.slow_runs, expected),
            "day": measure_restate(ds, "day", scale.runs, expected),
            "account": measure_restate(ds, "account", scale.slow_runs, expected),
        }
        results["resume"] = measure_resume(ds, scale.slow_runs, expected)
        # The same in a warm process, as a `restate worker` runs them (warm-up untimed).
        results["restate_warm"] = {
            "full": measure_restate(ds, "full", scale.slow_runs, expected, warm=True),
            "day": measure_restate(ds, "day", scale.runs, expected, warm=True),
        }
        results["resume_warm"] = measure_resume(ds, scale.slow_runs, expected, warm=True)
        results["freshness"] = measure_freshness(ds)
    results["dbt_probe"] = probe_dbt_parse(ds)
    results["microbatch"] = measure_microbatch(ds, scale.slow_runs, expected)
    if sqlmesh_problem is None:
        try:
            results["sqlmesh"] = measure_sqlmesh(ds, scale.runs, expected)
        except Exception as exc:  # a broken SQLMesh install must not hide the other figures
            if "differs from the limit" in str(exc):
                raise
            results["skipped"]["SQLMesh"] = f"sqlmesh failed: {str(exc)[-400:]}"
    results["elapsed_s"] = time.monotonic() - started
    ratios = write_reports(results)
    written = results_paths(scale.events)[0]
    print(f"\nwrote {written.relative_to(written.parents[1])}")
    for name, value in ratios.items():
        print(f"  {name:55s} {'n/a' if value is None else f'{value:.3f}'}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:
        traceback.print_exc()
        say("benchmark FAILED")
        sys.exit(1)
