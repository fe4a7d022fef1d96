"""Shared fixtures: real DuckDB files, real dbt runs, generated landing data."""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path

import duckdb

from examples.billing.generate import GenerateSpec, generate
from restate.settings import TELEMETRY_OFF, Settings

os.environ.update(TELEMETRY_OFF)
# Prefect's temporary server can take long to start on a busy 2-core machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

# Prefect builds its console log handler on the sys.stderr of its first logging setup
# (importing prefect.main). Done here, that is the session's stream; done first inside a
# test, it would be that test's CliRunner or capsys stream, closed when the test ends, and
# every later flow run in the same worker would fail while logging (seen in CI: a
# RecursionError in the paused approval flow after tests/restate/test_cli_errors.py).
import prefect.main  # noqa: F401

SMALL = {"end_date": date(2026, 10, 31), "months": 3, "accounts": 60, "events_per_day": 150, "seed": 7}


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    return Settings(data_dir=data_dir, **overrides)  # type: ignore[arg-type]


def land(settings: Settings, after: datetime | None = None, until: datetime | None = None) -> int:
    """Land the generator's rows processed in (after, until] into the settings' landing."""
    con = duckdb.connect()
    spec = GenerateSpec(**SMALL, ingested_after=after, ingested_until=until)  # type: ignore[arg-type]
    return generate(spec, settings.landing, settings.finance, con).rows_landed


def raw_glob(settings: Settings) -> str:
    return f"{settings.landing}/events/*/*.parquet"


VALID_RAW = """
    event_id is not null and account_id is not null and event_ts is not null
    and event_type in ('subscription_created', 'plan_changed', 'invoice_paid',
                       'refund_issued', 'subscription_cancelled')
    and (event_type not in ('invoice_paid', 'refund_issued') or (amount is not null and amount > 0))
    and upper(currency) in ('USD', 'EUR', 'GBP')
"""


def expected_daily_sql(glob: str, net_logic: str = "v2") -> str:
    """fct_revenue_daily computed independently from the raw files (plain DuckDB SQL)."""
    net = "gross_revenue - refunds" if net_logic == "v2" else "gross_revenue"
    return f"""
    with raw as (select * from read_parquet('{glob}', union_by_name = true)),
    latest as (
        select * from raw where {VALID_RAW}
        qualify row_number() over (
            partition by event_id
            order by updated_at desc nulls last,
                coalesce(event_ingested_at, event_ts) desc nulls last) = 1
    ),
    agg as (
        select cast(event_ts as date) as event_date, account_id, currency,
            sum(case when event_type = 'invoice_paid' then amount else 0 end) as gross_revenue,
            sum(case when event_type = 'refund_issued' then amount else 0 end) as refunds
        from latest where event_type in ('invoice_paid', 'refund_issued')
        group by all
    )
    select event_date, account_id, currency, gross_revenue::decimal(18, 2) as gross_revenue,
        refunds::decimal(18, 2) as refunds, ({net})::decimal(18, 2) as net_revenue
    from agg
    """


def table_rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return sorted(con.execute(sql).fetchall(), key=lambda r: tuple(str(x) for x in r))
