"""SIGKILL at every step boundary, then rerun: the tables, locks and notices converge.

A child process drives one restatement (tests/restate/crash_driver.py) and kills itself
at the next boundary (RESTATE_CRASH_AT, restate/state/faults.py); the next child reruns the
same steps from what the warehouse holds. After the last boundary an uninterrupted
rerun finishes the job, and the result must equal the uninterrupted outcome.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from restate.actions import load_once
from restate.dbt.distributed import release_warehouse
from restate.engines import connect
from restate.settings import TELEMETRY_OFF, Settings
from restate.state import changelog, locks
from restate.state.faults import CRASH_POINTS
from tests.conftest import expected_daily_sql, land, make_settings, raw_glob, table_rows
from tests.restate.crash_driver import PERIOD

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
IN_SCOPE = f"event_date between '{PERIOD[0]}' and '{PERIOD[1]}'"
DAILY = "select event_date, account_id, currency, gross_revenue, refunds, net_revenue from {} where {}"
TO_PROMOTED = CRASH_POINTS[: CRASH_POINTS.index("notice_sent") + 1]
TO_ROLLED_BACK = ("rollback_in_transaction", "rolled_back")


def drive(s: Settings, target: str, crash_at: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **TELEMETRY_OFF, "RESTATE_DATA_DIR": str(s.data_dir)}
    env.pop("RESTATE_CRASH_AT", None)
    if crash_at:
        env["RESTATE_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, "-m", "tests.restate.crash_driver", target],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def notices(s: Settings) -> dict[tuple[str, str], int]:
    """(notice, recipient) -> how many times it was delivered, from the changelog."""
    with connect(s) as e:
        sent = [r for r in changelog.entries(e, s.meta_schema) if r["event"] == "notice_sent"]
        pending = e.query(f"select event, recipient, status from {s.meta_schema}.notification_outbox")
    assert all(status == "sent" for _, _, status in pending), pending
    out: dict[tuple[str, str], int] = {}
    for r in sent:
        key = (r["payload"]["notice"], r["payload"]["recipient"])
        out[key] = out.get(key, 0) + 1
    return out


def test_a_kill_at_every_step_boundary_converges_on_rerun(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "wh")
    land(s)
    load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
    with connect(s) as e:
        reported = table_rows(e.con, DAILY.format("analytics.fct_revenue_daily", "true"))  # type: ignore[attr-defined]
    release_warehouse(s)  # the children need the file

    for point in TO_PROMOTED:
        run = drive(s, "promoted", point)
        assert run.returncode == -signal.SIGKILL, f"{point}: {run.returncode}\n{run.stderr[-3000:]}"
    done = drive(s, "promoted", None)
    assert done.returncode == 0, done.stderr[-3000:]

    with connect(s) as e:
        expected = f"({expected_daily_sql(raw_glob(s))}) x"
        assert table_rows(e.con, DAILY.format("analytics.fct_revenue_daily", IN_SCOPE)) == table_rows(  # type: ignore[attr-defined]
            e.con,
            DAILY.format(expected, IN_SCOPE),  # type: ignore[attr-defined]
        )
        outside = f"not ({IN_SCOPE})"
        assert table_rows(e.con, DAILY.format("analytics.fct_revenue_daily", outside)) == [  # type: ignore[attr-defined]
            r for r in reported if not (PERIOD[0] <= r[0] <= PERIOD[1])
        ]
        assert locks.current(e, s.meta_schema) is None
        assert e.scalar(f"select count(*) from {s.meta_schema}.archive_versions") == 1
        assert changelog.verify(e, s.meta_schema) is None
    promoted = notices(s)
    assert promoted and set(promoted.values()) == {1}, promoted
    assert {n.split("#")[0] for n, _ in promoted} == {"restatement_planned", "promoted"}

    for point in TO_ROLLED_BACK:
        run = drive(s, "rolled_back", point)
        assert run.returncode == -signal.SIGKILL, f"{point}: {run.returncode}\n{run.stderr[-3000:]}"
    done = drive(s, "rolled_back", None)
    assert done.returncode == 0, done.stderr[-3000:]
    with connect(s) as e:
        assert table_rows(e.con, DAILY.format("analytics.fct_revenue_daily", "true")) == reported  # type: ignore[attr-defined]
        assert locks.current(e, s.meta_schema) is None
        assert changelog.verify(e, s.meta_schema) is None
    after = notices(s)
    assert set(after.values()) == {1}, after
    assert {n.split("#")[0] for n, _ in after} == {"restatement_planned", "promoted", "rolled_back"}
