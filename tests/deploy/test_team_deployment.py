"""`make serve` on a fresh PostgreSQL database: deploy, run the restatement deployment
through the worker, and see two warm `restate worker` processes share its partition
chunks; then a restatement queued from the CLI (`restate run ID --on-worker`) runs whole
on one of them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from restate.settings import PROJECT_ROOT
from tests.conftest import expected_daily_sql, land, make_settings, raw_glob, table_rows

pytestmark = pytest.mark.slow

PG = ["psql", "-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "-d", "postgres", "-qtA"]
PERIOD = ("2026-09-01", "2026-10-31")


def _postgres_up() -> bool:
    try:
        return subprocess.run([*PG, "-c", "select 1"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(what: str, check: Any, timeout: float, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-6000:] if log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}; make serve output:\n{tail}")


def _processes() -> Iterator[tuple[int, int, int, list[str]]]:
    """(pid, ppid, pgid, argv) of every process (Linux /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            argv = (entry / "cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        yield int(entry.name), int(fields[1]), int(fields[2]), argv


def _has(argv: list[str], args: tuple[str, ...]) -> bool:
    return any(tuple(argv[i : i + len(args)]) == args for i in range(len(argv)))


def _group_pids(pgid: int, *args: str) -> set[int]:
    """Processes in our `make serve` process group whose argv contains args in a row."""
    return {pid for pid, _, group, argv in _processes() if group == pgid and _has(argv, args)}


def _flow_run_pids(pgid: int) -> set[int]:
    """Flow-run processes the worker started (they get their own session)."""
    workers = _group_pids(pgid, "worker", "start")
    return {pid for pid, ppid, _, argv in _processes() if ppid in workers and _has(argv, ("prefect.engine",))}


@pytest.fixture
def fresh_database() -> Iterator[str]:
    if not _postgres_up():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    name = f"restate_prefect_test_{uuid.uuid4().hex[:10]}"
    yield name  # `make serve` creates it when missing
    subprocess.run([*PG, "-c", f'drop database if exists "{name}" with (force)'], check=True)


def test_make_serve_runs_restatement_deployment_on_two_restate_workers(
    tmp_path: Path, fresh_database: str
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    s = make_settings(tmp_path / "wh", chunk_days=15)
    land(s, None, None)
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RESTATE_"))}
    env.update(
        {
            "PREFECT_HOME": str(tmp_path / "prefect"),
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "RESTATE_DATA_DIR": str(s.data_dir),
            "RESTATE_CHUNK_DAYS": "15",
            "PYTHONUNBUFFERED": "1",
            "PYTHONFAULTHANDLER": "1",
        }
    )
    # Production with the old logic, built by the CLI in its own process (one DuckDB writer).
    cli = [str(PROJECT_ROOT / ".venv/bin/restate")]
    subprocess.run(
        [*cli, "load"],
        env={**env, "RESTATE_PROJECT_VARS": '{"revenue_logic": "v1"}'},
        check=True,
        cwd=tmp_path,
    )

    log = tmp_path / "serve.log"
    with log.open("w") as out:
        serve = subprocess.Popen(
            [
                "make",
                "-o",
                ".venv/.installed",  # never reinstall from inside a test
                "serve",
                f"SERVE_DB={fresh_database}",
                f"SERVE_PORT={port}",
                "SERVE_DEPLOY=--name restatement",
            ],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one process group: the teardown signals exactly it
        )
    try:
        with temporary_settings({PREFECT_API_URL: api}):
            with get_client(sync_client=True) as client:

                def deployed() -> Any:
                    try:
                        return client.read_deployment_by_name("restatement/restatement")
                    except Exception:
                        return None

                deployment = _wait("the restatement deployment", deployed, 180, log)
                task_workers = _wait(
                    "two restate workers",
                    lambda: (pids := _group_pids(serve.pid, "worker", "--limit")) and len(pids) == 2 and pids,
                    60,
                    log,
                )
                _wait(
                    "restate workers warm and subscribed, and the flow-run worker started",
                    lambda: (
                        log.read_text().count("Subscribing to runs of task(s)") == 2
                        and log.read_text().count("serving restatement runs and chunks") == 2
                        and "Worker 'ProcessWorker" in log.read_text()
                    ),
                    120,
                    log,
                )
                assert deployment.work_pool_name == "restate"
                assert deployment.parameters["await_approval"] is True
                form = deployment.parameter_openapi_schema["properties"]
                assert {"selector", "start", "end", "accounts", "reason", "ticket", "requested_by"} <= set(
                    form
                )

                started = time.monotonic()
                run = run_deployment(
                    "restatement/restatement",
                    parameters={
                        "start": PERIOD[0],
                        "end": PERIOD[1],
                        "reason": "refunds left out of net revenue",
                        "ticket": "FIN-142",
                        "requested_by": "ana",
                    },
                    timeout=0,
                )

                def finished() -> Any:
                    state = client.read_flow_run(run.id).state
                    return state if state is not None and state.is_final() else None

                final = _wait("the restatement run to finish", finished, 240, log)
                elapsed = time.monotonic() - started
                assert final.is_completed(), f"{final}\n{log.read_text()[-6000:]}"
                lingering = _flow_run_pids(serve.pid)
                try:
                    _wait("the flow-run process to exit", lambda: not _flow_run_pids(serve.pid), 30, log)
                except AssertionError:
                    for pid in lingering:
                        os.kill(pid, signal.SIGABRT)  # PYTHONFAULTHANDLER=1: thread dump in the log
                    time.sleep(2)
                    raise
                artifacts = client.read_artifacts(
                    artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["restatement-1-chunks"]))
                )
        assert len(artifacts) == 1
        rows = artifacts[0].data if isinstance(artifacts[0].data, list) else json.loads(artifacts[0].data)
        by_pid = Counter(int(r["worker"].rsplit(":", 1)[1]) for r in rows)
        # Every chunk ran on one of the two task workers, and each ran at least one.
        assert set(by_pid) == task_workers, (by_pid, task_workers)
        assert min(by_pid.values()) >= 1
        print(f"restatement run {elapsed:.0f}s; chunks per task worker: {dict(by_pid)}")

        # A second restatement, queued from the CLI for a warm worker: run whole there.
        cli_env = {**env, "PREFECT_API_URL": api}
        planned = subprocess.run(
            [*cli, "plan", "-s", "fct_revenue_daily+", "--start", "2026-08-01", "--end", "2026-08-31",
             "--reason", "refunds left out of net revenue", "--requested-by", "ana"],
            env=cli_env, capture_output=True, text=True, cwd=tmp_path, timeout=300,
        )  # fmt: skip
        assert planned.returncode == 0, planned.stdout + planned.stderr
        queued = subprocess.run(
            [*cli, "run", "2", "--on-worker"],
            env=cli_env, capture_output=True, text=True, cwd=tmp_path, timeout=300,
        )  # fmt: skip
        assert queued.returncode == 0, queued.stdout + queued.stderr + log.read_text()[-4000:]
        assert "validation passed" in queued.stdout, queued.stdout
        con = duckdb.connect(str(s.warehouse_path), read_only=True)
        try:
            runners = con.execute(
                "select distinct runner from restate_meta.restatement_partitions where restatement_id = 2"
            ).fetchall()
            status = con.execute("select status from restate_meta.restatements where restatement_id = 2")
            assert status.fetchone() == ("validated",)
        finally:
            con.close()
        assert len(runners) == 1 and int(runners[0][0].split(":")[1]) in task_workers, (runners, task_workers)
    finally:
        _stop(serve)

    # Correct results: the restated schema equals the fixed logic computed from raw.
    con = duckdb.connect(str(s.warehouse_path), read_only=True)
    try:
        partitions = con.execute(
            "select restatement_id, status, count(*) from restate_meta.restatement_partitions "
            "group by all order by 1"
        ).fetchall()
        assert partitions[0] == (1, "done", len(rows)) and partitions[1][:2] == (2, "done")
        assert con.execute("select status from restate_meta.restatements").fetchall() == [("validated",)] * 2
        cols = "event_date, account_id, currency, gross_revenue, refunds, net_revenue"
        for rid, (start, end) in ((1, PERIOD), (2, ("2026-08-01", "2026-08-31"))):
            where = f"event_date between '{start}' and '{end}'"
            restated = table_rows(con, f"select {cols} from restate_{rid}.fct_revenue_daily where {where}")
            expected = table_rows(
                con, f"select {cols} from ({expected_daily_sql(raw_glob(s))}) where {where}"
            )
            assert restated == expected and len(restated) > 0, rid
    finally:
        con.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop `make serve` and everything it started (its own process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
    deadline = time.monotonic() + 10
    while _group_pids(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    if _group_pids(proc.pid):
        os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(1)
