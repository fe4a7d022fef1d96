"""A messy landing on real DuckDB + dbt + Soda: one bad file or row never fails the load.

Next to the generator's good files land a corrupt file (random bytes), a truncated
copy of a good file, an empty (0-byte) file, a file whose columns are all strings
with an amount and a timestamp that do not parse, and a file of non-monetary
events with zero and null amounts. The load succeeds; the good rows are in the mart
to the cent; the unreadable files and the bad rows are in quarantine with a reason;
the zero-amount events are kept; no landing file is moved or deleted.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from examples.billing.explain import explain
from interfaces.cli import app
from restate.engines import connect
from restate.settings import Settings, get_settings
from restate.validation.contracts import run_validation
from tests.conftest import VALID_RAW, expected_daily_sql, land, make_settings, table_rows

pytestmark = pytest.mark.slow

CUT = datetime(2026, 10, 5)
DAY = "event_date=2026-10-01"
DAILY = "select event_date, account_id, currency, gross_revenue, refunds, net_revenue from {}"


def _good_glob(s: Settings) -> str:
    return f"{s.landing}/events/*/batch_*.parquet"


def _write(con: duckdb.DuckDBPyConnection, sql: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    con.execute(f"copy ({sql}) to '{path}' (format parquet)")


def _land_bad_files(s: Settings) -> dict[str, Path]:
    folder = Path(s.landing) / "events" / DAY
    con = duckdb.connect()
    files = {
        "corrupt": folder / "corrupt.parquet",
        "truncated": folder / "truncated.parquet",
        "damaged": folder / "damaged.parquet",
        "empty": folder / "empty.parquet",
        "strings": folder / "strings.parquet",
        "non_monetary": folder / "non_monetary.parquet",
    }
    files["corrupt"].write_bytes(os.urandom(4096))
    good = sorted(folder.glob("batch_*.parquet"))[0].read_bytes()
    files["truncated"].write_bytes(good[: len(good) // 2])
    # Intact footer and time columns, damaged event_id pages: only reading all data shows it.
    chunk = pq.read_metadata(io.BytesIO(good)).row_group(0).column(0)
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    damaged = bytearray(good)
    damaged[start : start + chunk.total_compressed_size] = b"\xab" * chunk.total_compressed_size
    files["damaged"].write_bytes(bytes(damaged))
    files["empty"].write_bytes(b"")
    # Every column a string: one amount and one event time that do not parse.
    _write(
        con,
        """
        select * from (values
            ('typed_1', 'acct_x', 'invoice_paid', 'abc', 'USD',
             '2026-10-01 08:00:00', '2026-10-01 08:00:00', null::varchar, 'a@example.com'),
            ('typed_2', 'acct_x', 'invoice_paid', '10.00', 'USD',
             'not a time', '2026-10-01 08:00:00', null, 'a@example.com')
        ) as t(event_id, account_id, event_type, amount, currency, event_ts, updated_at,
               event_ingested_at, customer_email)
        """,
        files["strings"],
    )
    # Valid data: amounts mean nothing on these event types.
    _write(
        con,
        """
        select event_id, account_id, event_type, cast(amount as decimal(18, 2)) as amount, currency,
            cast(event_ts as timestamp) as event_ts, cast(event_ts as timestamp) as updated_at,
            cast(null as timestamp) as event_ingested_at, 'b@example.com' as customer_email
        from (values
            ('zero_1', 'acct_y', 'plan_changed', 0, 'USD', '2026-10-01 09:00:00'),
            ('zero_2', 'acct_y', 'subscription_cancelled', null, 'EUR', '2026-10-01 09:30:00'),
            ('zero_3', 'acct_y', 'subscription_created', 0, 'GBP', '2026-10-01 07:00:00')
        ) as t(event_id, account_id, event_type, amount, currency, event_ts)
        """,
        files["non_monetary"],
    )
    return files


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, dict[str, Path], list]]:
    """Two loads through the CLI: the bad files land with the first arrival."""
    data = tmp_path_factory.mktemp("messy")
    s = make_settings(data)
    mp = pytest.MonkeyPatch()
    mp.setenv("RESTATE_DATA_DIR", str(data))
    mp.setenv("COLUMNS", "250")
    mp.delenv("RESTATE_DUCKDB_PATH", raising=False)
    mp.delenv("RESTATE_LANDING_URI", raising=False)
    get_settings.cache_clear()
    runner = CliRunner()
    loads = []
    try:
        land(s, None, CUT)
        files = _land_bad_files(s)
        sizes = {name: path.stat().st_size for name, path in files.items()}
        for cut in (CUT, None):
            if cut is None:
                land(s, CUT, None)
            result = runner.invoke(app, ["load", "--json"])
            assert result.exit_code == 0, (result.output, result.exception)
            loads.append(json.loads(result.output))
        # Never moved, never deleted, never rewritten.
        assert {name: path.stat().st_size for name, path in files.items()} == sizes
        yield s, files, loads
    finally:
        mp.undo()
        get_settings.cache_clear()


def test_the_load_succeeds_and_the_good_rows_are_in_the_mart_to_the_cent(messy) -> None:
    s, _, loads = messy
    assert [load["status"] for load in loads] == ["success", "success"]
    with connect(s) as e:
        actual = table_rows(e.con, DAILY.format("analytics.fct_revenue_daily"))
        expected = table_rows(e.con, expected_daily_sql(_good_glob(s)))
    assert len(actual) > 500
    assert actual == expected


def test_unreadable_files_are_quarantined_with_a_reason(messy) -> None:
    s, _, _ = messy
    runner = CliRunner()
    result = runner.invoke(app, ["quarantine", "--files", "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    listed = {Path(r["path"]).name: r for r in json.loads(result.output)}
    assert set(listed) == {"corrupt.parquet", "truncated.parquet", "damaged.parquet", "empty.parquet"}
    assert listed["empty.parquet"]["reason"] == "empty_file"
    for name in ("corrupt.parquet", "truncated.parquet", "damaged.parquet"):
        assert listed[name]["reason"].startswith("unreadable_parquet"), listed[name]
    assert all(r["status"] == "quarantined" for r in listed.values())
    # The summary names them too.
    summary = runner.invoke(app, ["quarantine"])
    assert summary.exit_code == 0, (summary.output, summary.exception)
    assert "quarantined files" in summary.output and "empty_file" in summary.output
    # Every good file was checked and accepted once.
    with connect(s) as e:
        accepted = e.scalar(f"select count(*) from {s.meta_schema}.landing_files where status = 'accepted'")
    assert accepted == len(list(Path(s.landing).glob("events/*/batch_*.parquet"))) + 2


def test_rows_that_do_not_cast_are_quarantined_with_a_reason(messy) -> None:
    s, _, _ = messy
    with connect(s) as e:
        rows = e.query(
            "select event_id, rejection_reason from analytics.int_quarantined_events "
            "where event_id like 'typed_%' order by 1"
        )
    assert rows == [("typed_1", "bad_amount"), ("typed_2", "bad_event_ts")]


def test_zero_and_null_amounts_of_non_monetary_events_are_kept(messy) -> None:
    s, _, _ = messy
    with connect(s) as e:
        kept = e.query(
            "select event_id, amount from analytics.int_deduped_events where event_id like 'zero_%' order by 1"
        )
        rejected = e.scalar(
            "select count(*) from analytics.int_quarantined_events where event_id like 'zero_%'"
        )
    assert kept == [("zero_1", 0), ("zero_2", None), ("zero_3", 0)]
    assert rejected == 0


def test_every_raw_row_of_the_readable_files_is_accounted_for(messy) -> None:
    s, _, _ = messy
    glob = _good_glob(s)
    with connect(s) as e:
        raw_good = e.scalar(f"select count(*) from read_parquet('{glob}')")
        valid = e.scalar(f"select count(*) from read_parquet('{glob}') where {VALID_RAW}")
        distinct_valid = e.scalar(
            f"select count(distinct event_id) from read_parquet('{glob}') where {VALID_RAW}"
        )
        kept = e.scalar("select count(*) from analytics.int_deduped_events")
        quarantined = e.scalar("select count(*) from analytics.int_quarantined_events")
        # The contract's own accounting (raw = kept + superseded + quarantined) passes too.
        result = run_validation(s, e, s.prod_schema, date(2026, 8, 1), date(2026, 10, 31), None)
    assert raw_good + 2 + 3 == kept + (valid - distinct_valid) + quarantined
    accounting = result.check("raw rows = kept")
    assert accounting.outcome == "passed", accounting
    amount_missing = [
        c for c in result.checks if c.column == "amount" and c.dataset.endswith("int_deduped_events")
    ]
    assert amount_missing and all(c.passed for c in amount_missing), amount_missing
    assert not result.errors, result.errors


def test_explain_counts_the_same_rows_as_the_pipeline(messy) -> None:
    s, _, _ = messy
    with connect(s) as e:
        found = explain(e, s, date(2026, 10, 1), date(2026, 10, 1))
        kept = e.scalar("select count(*) from analytics.int_deduped_events where event_date = '2026-10-01'")
        quarantined = e.scalar(
            "select count(*) from analytics.int_quarantined_events where event_date = '2026-10-01'"
        )
    rows = found.rows
    assert rows["raw"] == rows["kept"] + rows["superseded_duplicates"] + rows["quarantined"]
    assert (rows["kept"], rows["quarantined"]) == (kept, quarantined)
    problems = {Path(f["file"]).name: f["problem"] for f in found.schema_drift if f["column"] == "*"}
    assert problems["empty.parquet"] == "quarantined: empty_file"
    assert problems["corrupt.parquet"].startswith("quarantined: unreadable_parquet")
    strings = {
        (f["column"], f["problem"]) for f in found.schema_drift if f["file"].endswith("strings.parquet")
    }
    assert ("amount", "type string, expected numeric") in strings
