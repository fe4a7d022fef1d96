"""Deterministic synthetic billing events and the matching finance exports.

Everything is set-based DuckDB SQL (no per-row Python), so ten million events are
written in seconds. Randomness comes from hash(seed, tag, key), never random(),
so the same seed gives the same files on every machine with the same DuckDB.

``python -m examples.billing.generate --months 14 --accounts 500 --events-per-day 2000``
writes them to the configured landing (RESTATE_LANDING_URI) and finance folder
(RESTATE_FINANCE_URI).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
from fsspec import AbstractFileSystem

ACCEPTED_CURRENCIES = ("USD", "EUR", "GBP")
EVENT_TYPES = (
    "subscription_created",
    "plan_changed",
    "invoice_paid",
    "refund_issued",
    "subscription_cancelled",
)


@dataclass(frozen=True)
class GenerateSpec:
    """What to generate: the period, the scale and the ingestion window to land."""

    end_date: date = date(2026, 10, 31)
    months: int = 14
    accounts: int = 500
    events_per_day: int = 2_000
    seed: int = 42
    bad_row_share: float = 0.003
    # Only rows whose processing time falls in (ingested_after, ingested_until] are
    # landed, so tests and demos can simulate successive arrivals.
    ingested_after: datetime | None = None
    ingested_until: datetime | None = None

    @property
    def start_date(self) -> date:
        year, month = self.end_date.year, self.end_date.month - self.months + 1
        while month <= 0:
            month += 12
            year -= 1
        return date(year, month, 1)

    @property
    def days(self) -> int:
        return (self.end_date - self.start_date).days + 1


@dataclass(frozen=True)
class GenerateResult:
    rows_landed: int
    rows_total: int
    finance_days: int
    batch_tag: str


# uniform(tag, key) in [0, 1): a deterministic per-row random number.
_U = "((hash({seed}, '{tag}', {key}) % 1000000) / 1000000.0)"


def _u(seed: int, tag: str, key: str) -> str:
    return _U.format(seed=seed, tag=tag, key=key)


def _build_events_sql(spec: GenerateSpec) -> str:
    """SQL for every raw row ever (all versions, bad rows included), unfiltered."""
    s = spec.seed
    n = spec.accounts
    early = max(1, int(n * 0.6))
    span = max(1, spec.days - 14)
    invoices_per_day = max(1, int(spec.events_per_day * 0.86))
    start = spec.start_date.isoformat()
    end_excl = (spec.end_date + timedelta(days=1)).isoformat()
    return f"""
    create or replace temp table gen_accounts as
    select
        i as account_index,
        'acct_' || lpad(i::varchar, 6, '0') as account_id,
        case when {_u(s, "cur", "i")} < 0.7 then 'USD'
             when {_u(s, "cur", "i")} < 0.9 then 'EUR' else 'GBP' end as currency,
        (29 + floor({_u(s, "plan", "i")} * 20) * 10)::decimal(18, 2) as plan_amount,
        case when i < {early} then i % 14
             else 14 + ((i - {early}) * {span} // greatest(1, {n - early})) end as created_day,
        'customer' || i || '@example.com' as customer_email
    from range({n}) t(i);

    -- One row per true business event (latest truth, before retries and corrections).
    create or replace temp table gen_truth as
    with invoice_slots as (
        select d, j,
            floor({_u(s, "acct", "d * 1000003 + j")} * {n})::bigint as account_index,
            timestamp '{start}' + to_days(d::int)
                + to_microseconds((({_u(s, "sec", "d * 1000003 + j")}) * 86400e6)::bigint) as event_ts
        from range({spec.days}) a(d), range({invoices_per_day}) b(j)
    ),
    invoices as (
        select 'inv_' || d || '_' || j as event_id, s.account_index, a.account_id,
            'invoice_paid' as event_type,
            round(a.plan_amount * (0.9 + 0.2 * {_u(s, "amt", "d * 1000003 + j")}), 2)
                ::decimal(18, 2) as amount,
            a.currency, s.event_ts, a.customer_email, d * 1000003 + j as k
        from invoice_slots s join gen_accounts a using (account_index)
        where a.created_day < s.d
    ),
    refunds as (
        select 'ref_' || substr(event_id, 5) as event_id, account_index, account_id,
            'refund_issued' as event_type,
            round(amount * (0.2 + 0.8 * {_u(s, "refamt", "k")}), 2)::decimal(18, 2) as amount,
            currency,
            event_ts + to_microseconds(((1 + 29 * {_u(s, "refdelay", "k")}) * 86400e6)::bigint)
                as event_ts,
            customer_email, k + 1 as k
        from invoices where {_u(s, "refund", "k")} < 0.07
    ),
    cancellations as (
        select 'can_' || substr(event_id, 5), account_index, account_id,
            'subscription_cancelled', amount, currency,
            event_ts + to_microseconds(((20 * {_u(s, "candelay", "k")}) * 86400e6 + 60e6)::bigint),
            customer_email, k + 2
        from invoices where {_u(s, "cancel", "k")} < 0.02
    ),
    plan_changes as (
        select 'chg_' || substr(event_id, 5), account_index, account_id, 'plan_changed',
            (amount + 10)::decimal(18, 2), currency,
            event_ts + to_microseconds(((10 * {_u(s, "chgdelay", "k")}) * 86400e6 + 60e6)::bigint),
            customer_email, k + 3
        from invoices where {_u(s, "change", "k")} < 0.03
    ),
    created as (
        select 'sub_' || account_index, account_index, account_id, 'subscription_created',
            plan_amount, currency,
            timestamp '{start}' + to_days(created_day::int)
                + to_microseconds(({_u(s, "subsec", "account_index")} * 3600e6)::bigint),
            customer_email, -1 - account_index
        from gen_accounts
    )
    select * from (
        select * from invoices union all select * from refunds
        union all select * from cancellations union all select * from plan_changes
        union all select * from created
    ) where event_ts < timestamp '{end_excl}';

    -- Every raw row: original versions with late arrival, retried duplicates,
    -- corrections (newer updated_at, changed amount) and bad rows.
    create or replace temp table gen_raw as
    with originals as (
        select event_id, account_id, event_type, amount, currency, event_ts,
            event_ts as updated_at,
            case when {_u(s, "late", "k")} < 0.85 then null
                 when {_u(s, "late", "k")} < 0.98
                    then event_ts + to_microseconds(((1 + 71 * {_u(s, "lag", "k")}) * 3600e6)::bigint)
                 else event_ts + to_microseconds(((3 + 27 * {_u(s, "lag", "k")}) * 86400e6)::bigint)
            end as event_ingested_at,
            customer_email, k
        from gen_truth
    ),
    corrections as (
        select event_id, account_id, event_type,
            round(amount * (0.9 + 0.2 * {_u(s, "fix", "k")}), 2)::decimal(18, 2) as amount,
            currency, event_ts,
            event_ts + to_microseconds(((1 + 9 * {_u(s, "fixat", "k")}) * 86400e6)::bigint)
                as updated_at,
            null::timestamp as event_ingested_at, customer_email, k
        from originals where {_u(s, "dup", "k")} < 0.005
    ),
    corrections_landed as (
        select * replace (
            updated_at + to_microseconds(({_u(s, "fixlag", "k")} * 7200e6)::bigint)
                as event_ingested_at)
        from corrections
    ),
    retries as (
        select * replace (
            greatest(coalesce(event_ingested_at, event_ts), event_ts)
                + to_microseconds(((1 + 47 * {_u(s, "retrylag", "k")}) * 3600e6)::bigint)
                as event_ingested_at)
        from originals where {_u(s, "dup", "k")} >= 0.005 and {_u(s, "dup", "k")} < 0.015
    ),
    bad as (
        select
            case when {_u(s, "badkind", "k")} < 0.17 then null else 'bad_' || event_id end
                as event_id,
            case when {_u(s, "badkind", "k")} between 0.17 and 0.33 then null else account_id end
                as account_id,
            case when {_u(s, "badkind", "k")} between 0.33 and 0.5 then 'invoice_pad'
                 else event_type end as event_type,
            case when {_u(s, "badkind", "k")} between 0.5 and 0.67 then -amount
                 when {_u(s, "badkind", "k")} between 0.67 and 0.83 then null
                 else amount end as amount,
            case when {_u(s, "badkind", "k")} > 0.83 then 'XXX' else currency end as currency,
            event_ts, updated_at, event_ingested_at, customer_email, k
        from originals where {_u(s, "bad", "k")} < {spec.bad_row_share}
    )
    select * exclude (k), coalesce(event_ingested_at, event_ts) as processed_at
    from (
        select * from originals union all select * from corrections_landed
        union all select * from retries union all select * from bad
    );
    """


def _truth_latest_sql() -> str:
    """The correct, deduplicated truth: latest version of every valid event."""
    return """
    select * from gen_raw
    where event_id is not null and not starts_with(event_id, 'bad_')
    qualify row_number() over (
        partition by event_id order by updated_at desc, event_ingested_at desc nulls last
    ) = 1
    """


def generate(
    spec: GenerateSpec,
    landing: str | Path,
    finance: str | Path,
    con: duckdb.DuckDBPyConnection,
    filesystem: AbstractFileSystem | None = None,
) -> GenerateResult:
    """Write raw event Parquet for the spec's ingestion window and all finance exports.

    An s3:// landing is written through an fsspec filesystem registered on `con`
    (`filesystem`, else s3fs on the standard AWS chain): DuckDB's httpfs cannot be
    installed offline.
    """
    if str(landing).startswith("s3://"):
        import fsspec

        con.register_filesystem(filesystem or fsspec.filesystem("s3"))
        landing_dir: str | Path = str(landing).rstrip("/") + "/events"
    else:
        landing_dir = Path(landing) / "events"
        landing_dir.mkdir(parents=True, exist_ok=True)
    finance_dir = Path(finance)
    finance_dir.mkdir(parents=True, exist_ok=True)
    con.execute(_build_events_sql(spec))

    conditions = []
    if spec.ingested_after is not None:
        conditions.append(f"processed_at > timestamp '{spec.ingested_after.isoformat(sep=' ')}'")
    if spec.ingested_until is not None:
        conditions.append(f"processed_at <= timestamp '{spec.ingested_until.isoformat(sep=' ')}'")
    where = " and ".join(conditions) or "true"
    tag = (spec.ingested_until or datetime(9999, 12, 31)).strftime("%Y%m%dT%H%M%S")
    if spec.ingested_after is not None:
        tag = spec.ingested_after.strftime("%Y%m%dT%H%M%S") + "_" + tag

    landed = con.execute(f"select count(*) from gen_raw where {where}").fetchall()[0]
    rows_landed = int(landed[0]) if landed else 0
    total = con.execute("select count(*) from gen_raw").fetchall()[0]
    if rows_landed:
        con.execute(
            f"""
            copy (
                select event_id, account_id, event_type, amount, currency, event_ts, updated_at,
                    event_ingested_at, customer_email, cast(event_ts as date) as event_date
                from gen_raw where {where}
                order by event_ts, event_id, updated_at, event_ingested_at
            ) to '{landing_dir}' (
                format parquet, partition_by (event_date),
                filename_pattern 'batch_{tag}_{{i}}', overwrite_or_ignore true
            )
            """
        )

    days = _write_finance_exports(con, finance_dir, spec)
    return GenerateResult(rows_landed, int(total[0]) if total else 0, days, tag)


def _write_finance_exports(con: duckdb.DuckDBPyConnection, finance_dir: Path, spec: GenerateSpec) -> int:
    """One CSV per month (date, currency, gross_revenue, refunds, net_revenue)."""
    con.execute(
        f"""
        create or replace temp table gen_finance as
        with truth as ({_truth_latest_sql()})
        select cast(event_ts as date) as date, currency,
            sum(case when event_type = 'invoice_paid' then amount else 0 end)::decimal(18, 2)
                as gross_revenue,
            sum(case when event_type = 'refund_issued' then amount else 0 end)::decimal(18, 2)
                as refunds,
            (gross_revenue - refunds)::decimal(18, 2) as net_revenue
        from truth
        where event_type in ('invoice_paid', 'refund_issued')
            and cast(event_ts as date) between date '{spec.start_date}' and date '{spec.end_date}'
        group by all
        """
    )
    months = con.execute("select distinct strftime(date, '%Y-%m') from gen_finance order by 1").fetchall()
    for (month,) in months:
        con.execute(
            f"""
            copy (select * from gen_finance where strftime(date, '%Y-%m') = '{month}'
                  order by date, currency)
            to '{finance_dir / f"revenue_{month}.csv"}' (header, delimiter ',')
            """
        )
    row = con.execute("select count(distinct date) from gen_finance").fetchall()[0]
    return int(row[0]) if row else 0


def _timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value)


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Generate into the landing and finance folders the settings name; print what was written."""
    from restate.engines.object_store import landing_filesystem
    from restate.settings import get_settings

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--months", type=int, default=GenerateSpec.months, help="months ending at --end-date")
    parser.add_argument(
        "--end-date", type=date.fromisoformat, default=GenerateSpec.end_date, help="last event date"
    )
    parser.add_argument("--accounts", type=int, default=GenerateSpec.accounts, help="customer accounts")
    parser.add_argument("--events-per-day", type=int, default=GenerateSpec.events_per_day)
    parser.add_argument("--seed", type=int, default=GenerateSpec.seed, help="same seed, same files")
    parser.add_argument("--ingested-after", type=_timestamp, help="land only rows processed after this time")
    parser.add_argument("--ingested-until", type=_timestamp, help="land only rows processed up to this time")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    for name in ("months", "accounts", "events_per_day"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    s = get_settings()
    spec = GenerateSpec(
        end_date=args.end_date,
        months=args.months,
        accounts=args.accounts,
        events_per_day=args.events_per_day,
        seed=args.seed,
        ingested_after=args.ingested_after,
        ingested_until=args.ingested_until,
    )
    con = duckdb.connect()
    con.execute("set enable_progress_bar = false")
    started = time.monotonic()
    result = generate(spec, s.landing, s.finance, con, filesystem=landing_filesystem(s))
    elapsed = time.monotonic() - started
    out: dict[str, object] = {
        "rows_landed": result.rows_landed,
        "rows_total": result.rows_total,
        "period": f"{spec.start_date}..{spec.end_date}",
        "finance_days": result.finance_days,
        "landing": s.landing,
        "finance": s.finance,
        "seconds": round(elapsed, 2),
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(
            f"landed {result.rows_landed:,} raw rows for {out['period']} in {elapsed:.1f}s -> "
            f"{s.landing}; finance exports for {result.finance_days} days -> {s.finance}"
        )
    return out


if __name__ == "__main__":
    main()
