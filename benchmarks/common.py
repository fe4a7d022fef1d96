"""Shared plumbing of the benchmark: paths, scale, child processes, medians.

Every measurement runs in its own child process, so its peak memory is that
child's ru_maxrss and no DuckDB file stays open across steps (DuckDB allows one
writing process per file). This module only uses the standard library, so the
children that run in the SQLMesh virtualenv can import it too.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
WORK = BENCH_DIR / "work"
VENV_PY = PROJECT_ROOT / ".venv" / "bin" / "python"
RESULT_PREFIX = "BENCH_RESULT "
PROGRESS_PREFIX = "BENCH_PROGRESS "

# No network here, and finance data must not leave the machine: telemetry off for
# every tool the benchmark drives (dbt, SQLMesh, Prefect, Soda).
TELEMETRY_OFF = {
    "DO_NOT_TRACK": "1",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "SODA_CORE_TELEMETRY_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "SQLMESH__DISABLE_ANONYMIZED_ANALYTICS": "true",
}


@dataclass(frozen=True)
class Scale:
    """How big one benchmark run is (BENCH_EVENTS) and how often each step repeats."""

    events: int
    accounts: int
    months: int
    runs: int
    slow_runs: int

    @property
    def events_per_day(self) -> int:
        # Measured: the generator lands ~0.765 raw rows per events_per_day unit and day.
        return max(10, round(self.events / (self.months * 30.4) / 0.765))

    @classmethod
    def from_env(cls) -> Scale:
        runs = int(os.environ.get("BENCH_RUNS", "3"))
        return cls(
            events=int(os.environ.get("BENCH_EVENTS", "1000000")),
            accounts=int(os.environ.get("BENCH_ACCOUNTS", "500")),
            months=14,
            runs=runs,
            slow_runs=int(os.environ.get("BENCH_SLOW_RUNS", "1")),
        )


@dataclass
class ChildRun:
    """One child process: wall time, peak memory and the JSON result it printed."""

    name: str
    wall_s: float
    peak_rss_mb: float
    returncode: int
    result: dict[str, Any] = field(default_factory=dict)
    output_tail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ChildError(RuntimeError):
    """A benchmark child failed; the message carries the end of its output."""


def base_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every child: telemetry off, unbuffered, our own Prefect home."""
    env = {**os.environ, **TELEMETRY_OFF, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    env["PREFECT_HOME"] = str(WORK / "prefect-home")
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), str(BENCH_DIR)])
    env.update(extra or {})
    return env


def run_child(
    name: str,
    argv: Sequence[str],
    env: dict[str, str] | None = None,
    on_line: Callable[[str, subprocess.Popen[str]], None] | None = None,
    check: bool = True,
    log: Path | None = None,
) -> ChildRun:
    """Run argv to completion; its peak RSS comes from wait4(), so it is this child's own."""
    started = time.monotonic()
    proc = subprocess.Popen(
        list(argv),
        env=env or base_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=PROJECT_ROOT,
    )
    result: dict[str, Any] = {}
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
        if on_line is not None:
            on_line(line, proc)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    tail = "".join(lines[-40:])
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("".join(lines))
    run = ChildRun(name, wall, usage.ru_maxrss / 1024.0, proc.returncode, result, tail)
    if check and proc.returncode != 0:
        raise ChildError(f"{name} failed with exit code {proc.returncode}:\n{tail}")
    return run


def py_child(script: str, *args: str) -> list[str]:
    """argv for a benchmark module run with the project's interpreter."""
    return [str(VENV_PY), str(BENCH_DIR / script), *args]


def emit_result(data: dict[str, Any]) -> None:
    """A child's one machine-readable answer to the parent (last such line wins)."""
    print(RESULT_PREFIX + json.dumps(data, default=str), flush=True)


def emit_progress(event: str, **fields: Any) -> None:
    """A progress line the parent may act on (e.g. kill after half the chunks)."""
    print(PROGRESS_PREFIX + json.dumps({"event": event, **fields}, default=str), flush=True)


def parse_progress(line: str) -> dict[str, Any] | None:
    """The event in a progress line; inside Prefect tasks the line carries a log prefix."""
    at = line.find(PROGRESS_PREFIX)
    if at < 0:
        return None
    parsed: dict[str, Any] = json.loads(line[at + len(PROGRESS_PREFIX) :])
    return parsed


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def fresh_copy(src: Path, dst: Path) -> Path:
    """Replace dst with a copy of src (file or tree): every run starts from the same state."""
    if dst.is_dir():
        shutil.rmtree(dst)
    elif dst.exists():
        dst.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy2(src, dst)
    return dst


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """Elapsed seconds since entering the block, readable inside and after it."""
    started = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - started
    end.append(time.perf_counter())


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
