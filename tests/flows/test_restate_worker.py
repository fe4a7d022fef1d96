"""`restate worker` against a real Prefect server: a restatement queued from the CLI
(`restate run ID --on-worker`) runs whole in the worker's warm process; a worker killed
in the middle ends the CLI's wait with one line (exit 1) instead of a wait forever, and
the same command on a new worker resumes, keeping the chunks already done; the result
equals the fixed logic computed from the raw landing. With no worker up the wait ends
too, and the queued run is withdrawn."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from tests.conftest import expected_daily_sql, land, make_settings, raw_glob, table_rows

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "interfaces.cli"]
PERIOD = ("2025-11-01", "2026-10-31")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


@pytest.fixture
def prefect_api(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real `prefect server start` on a free port: (API URL, its PREFECT_HOME)."""
    home = tmp_path / "prefect"
    home.mkdir()
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "false", "DO_NOT_TRACK": "1"})
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
         "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{api}/health", timeout=2):
                    break
            assert server.poll() is None and time.monotonic() < deadline, (
                tmp_path / "server.log"
            ).read_text()[-3000:]
            time.sleep(0.5)
        yield api, home
    finally:
        _stop(server)


def test_a_restatement_runs_on_a_warm_worker_and_a_killed_worker_is_reported_and_resumed(
    tmp_path: Path, prefect_api: tuple[str, Path]
) -> None:
    api, home = prefect_api
    s = make_settings(tmp_path / "wh", chunk_days=31)
    land(s, None, None)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RESTATE_"))}
    env.update(
        {
            "PREFECT_API_URL": api,
            "PREFECT_HOME": str(home),  # one home: task parameters and results are shared
            "RESTATE_DATA_DIR": str(s.data_dir),
            "RESTATE_CHUNK_DAYS": "31",
            "COLUMNS": "200",
        }
    )

    def restate(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args], env={**env, **extra}, capture_output=True, text=True, timeout=600
        )

    def worker(name: str, **extra: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [*CLI, "worker"],
            env={**env, **extra},
            stdout=(tmp_path / f"{name}.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 180
        while "Subscribing to runs of task(s)" not in (tmp_path / f"{name}.log").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, (
                tmp_path / f"{name}.log"
            ).read_text()[-3000:]
            time.sleep(0.5)
        return proc

    assert restate("load", RESTATE_PROJECT_VARS='{"revenue_logic": "v1"}').returncode == 0
    planned = restate(
        "plan", "-s", "fct_revenue_daily+", "--start", PERIOD[0], "--end", PERIOD[1],
        "--reason", "refunds left out of net revenue", "--requested-by", "ana",
    )  # fmt: skip
    assert planned.returncode == 0, planned.stdout + planned.stderr

    # Without a Prefect API there is no worker to reach: one line, exit 1.
    alone = restate("run", "1", "--on-worker", PREFECT_API_URL="")
    assert alone.returncode == 1 and "needs PREFECT_API_URL" in alone.stderr, alone.stderr

    # No worker up: the wait ends in one line, and the queued run is withdrawn, so the
    # worker started next does not run it unattended (it takes the next queued run only).
    nobody = restate("run", "1", "--on-worker", "--pickup-timeout", "5")
    assert nobody.returncode == 1, nobody.stdout + nobody.stderr
    assert "no restate worker took restatement 1's run within 5 s" in nobody.stderr, nobody.stderr
    assert "it was withdrawn" in nobody.stderr

    # A worker that dies after its first chunk (SIGKILL: no cleanup at all).
    doomed = worker("doomed", RESTATE_CRASH_AT="chunk_done")
    try:
        first = restate("run", "1", "--on-worker")
    finally:
        _stop(doomed)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "the restate worker running restatement 1 stopped" in first.stderr, first.stderr
    assert f":{doomed.pid}:" in first.stderr  # it names the process that is gone
    with duckdb.connect(str(s.warehouse_path), read_only=True) as con:
        done = con.execute(
            "select count(*) from restate_meta.restatement_partitions "
            "where restatement_id = 1 and status = 'done'"
        ).fetchone()
    assert done == (1,)
    # it refused the withdrawn run first, and ran only the run queued after it
    assert "queued run was withdrawn; nothing was done" in (tmp_path / "doomed.log").read_text()

    healthy = worker("healthy")
    try:
        second = restate("run", "1", "--on-worker")
        assert second.returncode == 0, second.stdout + second.stderr
        assert "(1 reused from an earlier run)" in second.stdout, second.stdout
        assert "validation passed" in second.stdout
    finally:
        _stop(healthy)
    log = (tmp_path / "healthy.log").read_text()
    assert "warm in" in log and "run_on_worker" in log

    with duckdb.connect(str(s.warehouse_path), read_only=True) as con:
        runners = con.execute(
            "select distinct split_part(runner, ':', 2) from restate_meta.restatement_partitions "
            "where restatement_id = 1"
        ).fetchall()
        where = f"event_date between '{PERIOD[0]}' and '{PERIOD[1]}'"
        cols = "event_date, account_id, currency, gross_revenue, refunds, net_revenue"
        restated = table_rows(con, f"select {cols} from restate_1.fct_revenue_daily where {where}")
        expected = table_rows(con, f"select {cols} from ({expected_daily_sql(raw_glob(s))}) where {where}")
    # Every chunk ran in one of the two workers' processes, never in the CLI's.
    assert {int(r[0]) for r in runners} <= {doomed.pid, healthy.pid} and len(runners) == 2, runners
    assert restated == expected and len(restated) > 0
