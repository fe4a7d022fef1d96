"""Child: freshness of the incremental flow, one 15-minute slice at a time.

For each staged slice: move its Parquet files into the landing folder (the slice
"arrives"), run the Prefect incremental-load flow, and record the latency from
arrival to the end of the load, with the wall-clock times of both (so the parent can
tell which loads overlapped its restatement). The first slice warms the process up
before anything else starts; with --go-file the rest wait for the parent's signal
(given once its restatement is writing). The parent runs this once with nothing else
going on (idle) and once while a 14-month restatement runs (loaded).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from common import emit_progress, emit_result

IMPORT_STARTED = time.perf_counter()
from flows.incremental import incremental_load  # noqa: E402
from restate.engines.duckdb import file_waits  # noqa: E402
from restate.ingest.loads import LoadResult  # noqa: E402
from restate.settings import apply_process_env, get_settings  # noqa: E402

IMPORT_S = time.perf_counter() - IMPORT_STARTED


def land_slice(slice_dir: Path, landing: Path) -> int:
    """Move a staged slice's files into the landing tree; returns how many arrived."""
    files = sorted(slice_dir.glob("events/*/*.parquet"))
    for f in files:
        target = landing / "events" / f.parent.name / f.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(f), target)
    return len(files)


def load_until_done(arrived: float, give_up_s: float = 600.0) -> tuple[LoadResult, int]:
    """Run the flow until a load succeeds, as a scheduler's retry would.

    A restatement holds the DuckDB file while it writes (one writer per file); a
    load that waits longer than the engine's 30 s gives up, so the latency a
    dashboard sees includes the retry.
    """
    attempts = 0
    while True:
        attempts += 1
        try:
            return incremental_load(), attempts
        except Exception as exc:
            if time.perf_counter() - arrived > give_up_s:
                raise
            emit_progress("load_retry", error=str(exc)[:200])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("slices", nargs="+", type=Path)
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between slices")
    parser.add_argument("--go-file", type=Path, help="after the warm-up slice, wait until this exists")
    args = parser.parse_args()
    settings = get_settings()
    apply_process_env(settings)
    landing = Path(settings.landing)
    latencies: list[float] = []
    rows: list[int] = []
    retries: list[int] = []
    arrived_at: list[float] = []
    finished_at: list[float] = []
    waits: list[list[tuple[float, float]]] = []  # per load: (wall start, seconds) it waited for the file
    for slice_dir in args.slices:
        arrived = time.perf_counter()
        arrived_at.append(time.time())
        files = land_slice(slice_dir, landing)
        result, attempts = load_until_done(arrived)
        latency = time.perf_counter() - arrived
        finished_at.append(time.time())
        waits.append(file_waits(since=arrived_at[-1]))
        latencies.append(latency)
        rows.append(result.rows_new)
        retries.append(attempts - 1)
        emit_progress(
            "slice_loaded",
            slice=slice_dir.name,
            files=files,
            latency_s=latency,
            attempts=attempts,
            waited_s=sum(s for _, s in waits[-1]),
        )
        if len(latencies) == 1:
            emit_progress("warmed_up")
            while args.go_file is not None and not args.go_file.exists():
                time.sleep(0.2)
        else:
            time.sleep(args.pause)
    emit_result(
        {
            "latencies_s": latencies,
            "rows_new": rows,
            "retries": retries,
            "arrived_at": arrived_at,
            "finished_at": finished_at,
            "waits": waits,
            "import_s": IMPORT_S,
        }
    )


if __name__ == "__main__":
    main()
