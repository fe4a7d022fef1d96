"""Landing files no load would read correctly are quarantined with a reason.

- A file whose name holds glob characters (DuckDB's read_parquet would expand it and
  read another file twice).
- A Parquet file outside ``events/<folder>/<file>.parquet`` (deeper, shallower, an
  upper-case suffix), which the loads never read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from interfaces.cli import app
from restate.contract.project import project_contract
from restate.engines import connect
from restate.ingest import landing
from restate.settings import Settings, get_settings
from restate.state.meta import init_meta
from tests.conftest import make_settings

ROW = (
    "select '{id}' as event_id, 'acct_odd' as account_id, 'invoice_paid' as event_type, "
    "cast(10.00 as decimal(18, 2)) as amount, 'USD' as currency, "
    "timestamp '2026-10-01 10:00' as event_ts, timestamp '2026-10-01 10:00' as updated_at, "
    "timestamp '{ingested}' as event_ingested_at, 'a@b.c' as customer_email"
)


def _write(path: Path, event_id: str, ingested: str = "2026-10-01 11:00") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sql = ROW.format(id=event_id, ingested=ingested)
    duckdb.connect().execute(f"copy ({sql}) to '{path}' (format parquet)")


@pytest.fixture
def cli_env(tmp_path: Path) -> Iterator[Settings]:
    s = make_settings(tmp_path)
    mp = pytest.MonkeyPatch()
    mp.setenv("RESTATE_DATA_DIR", str(tmp_path))
    mp.setenv("COLUMNS", "250")
    mp.delenv("RESTATE_DUCKDB_PATH", raising=False)
    mp.delenv("RESTATE_LANDING_URI", raising=False)
    get_settings.cache_clear()
    try:
        yield s
    finally:
        mp.undo()
        get_settings.cache_clear()


def _quarantined_files(runner: CliRunner) -> dict[str, dict]:
    result = runner.invoke(app, ["quarantine", "--files", "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    return {r["path"]: r for r in json.loads(result.output)}


def test_file_names_with_glob_characters_are_quarantined_not_expanded(cli_env: Settings) -> None:
    s = cli_env
    folder = Path(s.landing) / "events" / "event_date=2026-10-01"
    _write(folder / "batch.parquet", "e1")
    _write(folder / "batch*.parquet", "e2")
    _write(folder / "b[a]tch.parquet", "e3")
    with connect(s) as e:
        init_meta(e, s.meta_schema)
        landing.refresh(e, s, landing.landing_of(project_contract(s)))
        rows = e.query("select event_id, filename from raw.events order by event_id")
    # batch.parquet is read once, by its own name only.
    assert rows == [("e1", str(folder / "batch.parquet"))]
    listed = {Path(p).name: r for p, r in _quarantined_files(CliRunner()).items()}
    assert set(listed) == {"batch*.parquet", "b[a]tch.parquet"}
    assert all(r["reason"] == "glob_characters_in_name" for r in listed.values()), listed


def test_parquet_files_in_unexpected_places_are_recorded_as_quarantined(cli_env: Settings) -> None:
    s = cli_env
    root = Path(s.landing)
    good = root / "events/event_date=2026-10-01/a.parquet"
    odd = [
        root / "events/event_date=2026-10-01/hour=03/b.parquet",
        root / "events/c.parquet",
        root / "events/event_date=2026-10-01/d.PARQUET",
    ]
    _write(good, "a")
    for i, path in enumerate(odd):
        _write(path, f"odd{i}")
    with connect(s) as e:
        init_meta(e, s.meta_schema)
        landing.refresh(e, s, landing.landing_of(project_contract(s)))
        read = e.query("select event_id from raw.events")
        recorded = dict(e.query(f"select path, status from {s.meta_schema}.landing_files"))
    assert read == [("a",)]
    assert recorded[str(good)] == "accepted"
    listed = _quarantined_files(CliRunner())
    assert set(listed) == {str(p) for p in odd}
    assert all(r["reason"] == "unexpected_location" for r in listed.values()), listed
