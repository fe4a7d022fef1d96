"""One writer per DuckDB file: a long job that reopens the file step after step (a
restatement's chunks) lets a process waiting for it (a 15-minute load) in between two
steps, instead of starving it until the job ends. Real processes, real DuckDB file."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from restate.engines.duckdb import DuckDBEngine, file_waits, waiting_writers, yield_to_waiting_writers

STEPS = 60

JOB = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from restate.engines.duckdb import DuckDBEngine, yield_to_waiting_writers
    path, steps, yield_s = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    for step in range(steps):
        engine = DuckDBEngine(path)
        engine.execute("insert into steps values (?, 'job', now())", [step])
        time.sleep(0.05)  # a chunk's work, holding the file
        print(step, flush=True)
        engine.close()
        yield_to_waiting_writers(path, yield_s)  # the next step reopens the file at once
    """
)


def start_job(db: Path, yield_s: float) -> subprocess.Popen[str]:
    engine = DuckDBEngine(db)
    engine.execute("create table steps (step integer, who varchar, written_at timestamp)")
    engine.close()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    job = subprocess.Popen(
        [sys.executable, "-c", JOB, str(db), str(STEPS), str(yield_s)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert job.stdout is not None
    for line in job.stdout:  # until the job has written its fifth step
        if int(line) >= 4:
            return job
    raise AssertionError("the job never started writing")


def test_a_waiting_writer_gets_in_between_two_steps(tmp_path: Path) -> None:
    db = tmp_path / "warehouse.duckdb"
    job = start_job(db, yield_s=30.0)
    try:
        started = time.monotonic()
        engine = DuckDBEngine(db, wait_s=60)  # the load: waits for the file
        waited = time.monotonic() - started
        done = engine.scalar("select count(*) from steps")
        engine.execute("insert into steps values (-1, 'load', now())")
        engine.close()
    finally:
        assert job.wait(timeout=120) == 0
    assert done < STEPS, "the load only got in once the job had finished"
    assert waited < 1.0, f"the load waited {waited:.2f} s for steps of 0.05 s"
    assert not waiting_writers(db)  # the load's marker is gone once it is in


def test_a_marker_nobody_holds_is_ignored_and_removed(tmp_path: Path) -> None:
    """A waiter that died leaves its marker unlocked; so does one whose pid now belongs to
    another process (pid reuse): neither makes anyone wait."""
    db = tmp_path / "warehouse.duckdb"
    DuckDBEngine(db).close()
    folder = db.with_name(f"{db.name}.waiting")
    folder.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (folder / f"w-{dead.pid}-1").touch()
        (folder / f"w-{alive.pid}-1").touch()  # a live pid that is not waiting
        (folder / "w-not-a-pid").touch()
        assert waiting_writers(db) == []
        assert yield_to_waiting_writers(db, 5.0) < 0.5
        assert not list(folder.glob("w-*"))
    finally:
        alive.kill()
        alive.wait()


WAITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from restate.engines.duckdb import _announce_waiter
    waiter = _announce_waiter(Path(sys.argv[1]))
    print("waiting", flush=True)
    time.sleep(30)
    """
)


def test_a_process_that_still_holds_the_file_does_not_wait_for_waiters(tmp_path: Path) -> None:
    """Waiting while holding the file would only stall both processes: it returns at once."""
    db = tmp_path / "warehouse.duckdb"
    engine = DuckDBEngine(db)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    waiter = subprocess.Popen(
        [sys.executable, "-c", WAITER, str(db)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert waiter.stdout is not None and waiter.stdout.readline().strip() == "waiting"
        assert waiting_writers(db) == [waiter.pid]
        assert yield_to_waiting_writers(db, 5.0) < 0.5
        engine.close()
        assert 0.9 < yield_to_waiting_writers(db, 1.0) < 2.0  # file free: it waits for the waiter
    finally:
        waiter.kill()
        waiter.wait()
    assert waiting_writers(db) == []  # killed: its lock went with it


@pytest.mark.parametrize("marker", ["announced", "no marker folder"])
def test_a_process_records_how_long_it_waited_for_the_file(tmp_path: Path, marker: str) -> None:
    """What a load reports of its wait (benchmarks/freshness.py): one wait, as long as the
    other process held the file; also when it could not announce itself (its marker
    folder cannot be made: a file stands at its path)."""
    db = tmp_path / "warehouse.duckdb"
    DuckDBEngine(db).close()
    if marker == "no marker folder":
        db.with_name(f"{db.name}.waiting").write_text("not a folder")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(db)!r}); print('held', flush=True); "
            "time.sleep(1.5); c.close()",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    since = time.time()
    started = time.monotonic()
    DuckDBEngine(db, wait_s=30).close()
    waited = time.monotonic() - started
    assert holder.wait(timeout=30) == 0
    recorded = file_waits(since)
    assert len(recorded) == 1, recorded
    assert 0.3 < recorded[0][1] <= waited, (recorded, waited)
    assert since <= recorded[0][0] <= since + 5
    DuckDBEngine(db).close()  # nobody holds it now: no wait recorded
    assert len(file_waits(since)) == 1
