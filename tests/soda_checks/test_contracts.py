"""The Soda contracts pass on a correct pipeline and fail, naming the partition, on
data broken in exactly the way each one guards.

One module fixture generates a small pipeline (in-process generate + load). Each
test breaks a copy of the tables in its own schema (broken_*) or a copy of the
finance files, and validates that copy; production stays intact. Expected
partitions and figures come from SQL on the same warehouse, never from the
generator's parameters.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from collections.abc import Iterator
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import duckdb
import pytest

from examples.billing.generate import GenerateSpec, generate
from restate.actions import load_once
from restate.engines import connect
from restate.engines.base import Engine
from restate.settings import Settings, apply_process_env
from restate.validation.contracts import (
    DATASOURCES_DIR,
    ValidationResult,
    contract_variables,
    format_report,
    run_validation,
    store_validation,
)
from restate.validation.reference import ReferenceExportError, load_reference_exports

pytestmark = pytest.mark.slow

SPEC = GenerateSpec(end_date=date(2026, 10, 31), months=2, accounts=50, events_per_day=200, seed=11)
PROD = "analytics"
INT_TABLES = ("int_deduped_events", "int_quarantined_events")

ROW_ACCOUNTING = "raw rows = kept + superseded + quarantined"
FINANCE_DAILY = "daily totals within"
FINANCE_MONTHLY = "monthly totals within"
REFUND_VS_UPSTREAM = "daily refund rate matches the deduplicated events"
REFUND_BOUNDS = "daily refund rate between"
GRAIN = "grain keys"
DEDUPE = "duplicate event_id"
SUBSCRIBED = "subscription_created event"
REFUND_AFTER_INVOICE = "earlier paid invoice"
FCT_SCHEMA = "fct_revenue_daily has the expected columns"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data_dir = tmp_path_factory.mktemp("validation")
    s = Settings(data_dir=data_dir)
    apply_process_env(s)
    con = duckdb.connect()
    generate(SPEC, s.landing, s.finance, con)
    con.close()
    result = load_once(s)
    assert result.status == "success"
    return s


@pytest.fixture(scope="module")
def engine(settings: Settings) -> Iterator[Engine]:
    with connect(settings) as e:
        yield e


def validate(
    settings: Settings,
    engine: Engine,
    schema: str = PROD,
    start: date = SPEC.start_date,
    end: date = SPEC.end_date,
) -> ValidationResult:
    return run_validation(settings, engine, schema, start, end, None)


def failed_names(result: ValidationResult) -> set[str]:
    return {c.name for c in result.failed_checks}


def copy_schema(engine: Engine, schema: str, tables: tuple[str, ...] = ("fct_revenue_daily",)) -> None:
    """A fresh schema holding copies of production tables."""
    engine.execute(f"drop schema if exists {schema} cascade")
    engine.execute(f"create schema {schema}")
    for table in tables:
        engine.execute(f"create table {schema}.{table} as select * from {PROD}.{table}")


def in_period(column: str = "event_date") -> str:
    return f"{column} between date '{SPEC.start_date}' and date '{SPEC.end_date}'"


# ----------------------------------------------------------------------------- correct data


def test_contracts_pass_on_the_loaded_pipeline(settings: Settings, engine: Engine) -> None:
    started = time.monotonic()
    result = validate(settings, engine)
    elapsed = time.monotonic() - started

    assert result.passed, format_report(result)
    assert not result.errors
    assert not result.warned_checks
    # Every contract ran, with its dataset-level checks.
    datasets = {c.dataset for c in result.checks}
    assert datasets == {
        f"{PROD}.fct_revenue_daily",
        f"{PROD}.int_deduped_events",
        f"{settings.meta_schema}.reference_finance_revenue",
    }
    # Soda measured the real tables.
    rows = engine.scalar(f"select count(*) from {PROD}.fct_revenue_daily where {in_period()}")
    assert result.check("the period has revenue rows").measured == rows
    events = engine.scalar(f"select count(*) from {PROD}.int_deduped_events where {in_period()}")
    assert result.check("the period has deduplicated events").measured == events
    assert elapsed < 30, f"validation took {elapsed:.1f}s"


def test_restated_copy_of_one_month_passes_and_is_stored(settings: Settings, engine: Engine) -> None:
    copy_schema(engine, "restate_901")
    month_end = date(SPEC.start_date.year, SPEC.start_date.month + 1, 1).toordinal() - 1
    result = validate(settings, engine, "restate_901", SPEC.start_date, date.fromordinal(month_end))

    assert result.passed, format_report(result)
    assert result.check("the period has revenue rows").dataset == "restate_901.fct_revenue_daily"
    # The intermediate models were not rebuilt, so production's are checked.
    assert result.check(ROW_ACCOUNTING).dataset == f"{PROD}.int_deduped_events"

    validation_id = store_validation(engine, settings, result)
    stored = engine.query_dicts(
        f"select * from {settings.meta_schema}.validations where validation_id = ?",
        [validation_id],
    )[0]
    assert stored["passed"] is True
    assert stored["scope"] == "restatement"
    evidence = json.loads(stored["result_json"])
    assert evidence["schema"] == "restate_901"
    assert len(evidence["checks"]) == len(result.checks)


def test_restatement_of_some_accounts_is_checked_merged_with_production(
    settings: Settings, engine: Engine
) -> None:
    """A restatement of listed accounts holds only their rows; the finance and refund
    checks compare what promotion would publish (those rows + production's others)."""
    account = engine.scalar(
        f"select account_id from {PROD}.fct_revenue_daily group by 1 order by count(*) desc limit 1"
    )
    copy_schema(engine, "restate_902")
    engine.execute("delete from restate_902.fct_revenue_daily where account_id <> ?", [account])
    meta = settings.meta_schema
    engine.execute(f"delete from {meta}.restatements where restatement_id = 902")
    engine.execute(
        f"""insert into {meta}.restatements (restatement_id, created_at, status, selector, models,
            period_start, period_end, accounts, reason, requested_by, requires_approval,
            source_watermark, plan_json, restate_schema, updated_at)
        values (902, now(), 'recomputed', 'fct_revenue_daily', 'fct_revenue_daily', ?, ?, ?,
            'test', 'tests', false,
            (select max(ingested_until) from {meta}.loads where status = 'success'),
            '{{}}', 'restate_902', now())""",
        [SPEC.start_date, SPEC.end_date, account],
    )
    try:
        merged = run_validation(settings, engine, "restate_902", SPEC.start_date, SPEC.end_date, 902)
        alone = run_validation(settings, engine, "restate_902", SPEC.start_date, SPEC.end_date, None)
    finally:
        engine.execute(f"delete from {meta}.restatements where restatement_id = 902")

    assert merged.passed, format_report(merged)
    # Without the account list the restated rows alone are far from the finance totals.
    assert not alone.passed
    assert not alone.check(FINANCE_DAILY).passed


def test_missing_restated_table_fails_with_an_error(settings: Settings, engine: Engine) -> None:
    engine.execute("drop schema if exists restate_903 cascade")
    engine.execute("create schema restate_903")

    result = validate(settings, engine, "restate_903")

    assert not result.passed
    assert result.errors[0] == "restate_903.fct_revenue_daily does not exist"
    assert all(
        c.outcome == "not_evaluated" for c in result.checks if c.dataset == "restate_903.fct_revenue_daily"
    )
    assert "FAILED" in format_report(result)


# ----------------------------------------------------------------------------- broken data


def test_removed_refund_fails_refund_rate_and_finance_on_its_date(settings: Settings, engine: Engine) -> None:
    copy_schema(engine, "broken_refund")
    # The refund whose removal moves its day's refunds (in its currency) the most.
    refund = engine.query_dicts(
        f"""
        with refunds as (
            select event_id, account_id, currency, event_date, amount,
                sum(amount) over (partition by event_date, currency) as day_refunds
            from {PROD}.int_deduped_events
            where event_type = 'refund_issued' and {in_period()}
        )
        select * from refunds order by amount / day_refunds desc, event_id limit 1
        """
    )[0]
    assert refund["amount"] * 100 > Decimal(str(settings.tolerance_pct)) * refund["day_refunds"]
    engine.execute(
        """update broken_refund.fct_revenue_daily
           set refunds = refunds - ?, net_revenue = net_revenue + ?, refund_count = refund_count - 1
           where event_date = ? and account_id = ? and currency = ?""",
        [
            refund["amount"],
            refund["amount"],
            refund["event_date"],
            refund["account_id"],
            refund["currency"],
        ],
    )

    result = validate(settings, engine, "broken_refund")

    day = refund["event_date"].isoformat()
    assert not result.passed
    failed = failed_names(result)
    assert any(REFUND_VS_UPSTREAM in n for n in failed)
    assert all(any(k in n for k in (REFUND_VS_UPSTREAM, FINANCE_DAILY, FINANCE_MONTHLY)) for n in failed), (
        failed
    )
    assert result.check(REFUND_VS_UPSTREAM).partitions == [day]
    finance = result.check(FINANCE_DAILY)
    assert finance.partitions == [day]
    flagged = {(d["currency"], d["metric"]) for d in finance.details}
    assert (refund["currency"], "refunds") in flagged
    assert flagged <= {(refund["currency"], "refunds"), (refund["currency"], "net_revenue")}
    diff = next(d for d in finance.details if d["metric"] == "refunds")["diff"]
    assert Decimal(str(diff)) == -refund["amount"]
    assert day in format_report(result)


def test_duplicated_fct_row_fails_the_grain_key_check(settings: Settings, engine: Engine) -> None:
    copy_schema(engine, "broken_grain")
    row = engine.query_dicts(
        "select event_date, account_id, currency from broken_grain.fct_revenue_daily "
        "order by event_date desc, account_id limit 1"
    )[0]
    engine.execute(
        "insert into broken_grain.fct_revenue_daily select * from broken_grain.fct_revenue_daily "
        "where event_date = ? and account_id = ? and currency = ?",
        [row["event_date"], row["account_id"], row["currency"]],
    )

    result = validate(settings, engine, "broken_grain")

    grain = result.check(GRAIN)
    assert not grain.passed
    assert grain.measured == 1
    assert grain.partitions == [row["event_date"].isoformat()]
    assert grain.details[0]["account_id"] == row["account_id"]


def test_duplicated_event_fails_row_accounting_and_warns_dedupe(settings: Settings, engine: Engine) -> None:
    copy_schema(engine, "broken_dup", ("fct_revenue_daily", *INT_TABLES))
    event = engine.query_dicts(
        f"select event_id, event_date from {PROD}.int_deduped_events where {in_period()} "
        "order by event_date, event_id limit 1"
    )[0]
    engine.execute(
        "insert into broken_dup.int_deduped_events "
        "select * from broken_dup.int_deduped_events where event_id = ?",
        [event["event_id"]],
    )

    result = validate(settings, engine, "broken_dup")

    day = event["event_date"].isoformat()
    assert failed_names(result) == {result.check(ROW_ACCOUNTING).name}
    accounting = result.check(ROW_ACCOUNTING)
    assert accounting.dataset == "broken_dup.int_deduped_events"
    assert accounting.partitions == [day]
    assert accounting.details[0]["unaccounted_rows"] < 0
    dedupe = result.check(DEDUPE)
    assert dedupe.outcome == "warned"  # one copy is far below 0.1%
    assert dedupe.partitions == [day]


def test_duplicates_above_a_tenth_of_a_percent_fail_dedupe(settings: Settings, engine: Engine) -> None:
    copy_schema(engine, "broken_dups", ("fct_revenue_daily", *INT_TABLES))
    total = engine.scalar(f"select count(*) from {PROD}.int_deduped_events where {in_period()}")
    needed = total // 1000 + 1  # strictly more than 0.1% of the rows are copies
    day = engine.scalar(
        f"select event_date from {PROD}.int_deduped_events where {in_period()} "
        f"group by 1 having count(*) >= {needed} order by 1 limit 1"
    )
    engine.execute(
        f"""insert into broken_dups.int_deduped_events
            select * from broken_dups.int_deduped_events where event_date = ?
            order by event_id limit {needed}""",
        [day],
    )

    result = validate(settings, engine, "broken_dups")

    dedupe = result.check(DEDUPE)
    assert dedupe.outcome == "failed"
    assert dedupe.measured is not None and dedupe.measured >= 0.1
    assert dedupe.partitions == [day.isoformat()]
    assert result.check(ROW_ACCOUNTING).partitions == [day.isoformat()]


def test_dropped_partition_fails_finance_and_refund_rate_on_its_date(
    settings: Settings, engine: Engine
) -> None:
    copy_schema(engine, "broken_drop_fct")
    day = engine.scalar(
        f"select event_date from {PROD}.fct_revenue_daily where {in_period()} "
        "group by 1 having sum(refunds) > 0 order by 1 desc limit 1"
    )
    engine.execute("delete from broken_drop_fct.fct_revenue_daily where event_date = ?", [day])

    result = validate(settings, engine, "broken_drop_fct")

    assert not result.passed
    assert result.check(FINANCE_DAILY).partitions == [day.isoformat()]
    missing = {d["metric"] for d in result.check(FINANCE_DAILY).details if d["value"] is None}
    assert missing == {"gross_revenue", "refunds", "net_revenue"}
    assert result.check(FINANCE_MONTHLY).partitions == [day.strftime("%Y-%m")]
    assert result.check(REFUND_VS_UPSTREAM).partitions == [day.isoformat()]
    assert result.check(ROW_ACCOUNTING).passed  # the sources are intact


def test_dropped_event_partition_fails_row_accounting(settings: Settings, engine: Engine) -> None:
    copy_schema(engine, "broken_drop_int", ("fct_revenue_daily", *INT_TABLES))
    day = engine.scalar(f"select max(event_date) from {PROD}.int_deduped_events where {in_period()}")
    engine.execute("delete from broken_drop_int.int_deduped_events where event_date = ?", [day])

    result = validate(settings, engine, "broken_drop_int")

    # The raw accounting names the day; the mart, intact, no longer matches its upstream
    # on that day either; nothing else fails.
    assert failed_names(result) == {result.check(ROW_ACCOUNTING).name, result.check(REFUND_VS_UPSTREAM).name}
    assert result.check(REFUND_VS_UPSTREAM).partitions == [day.isoformat()]
    accounting = result.check(ROW_ACCOUNTING)
    assert accounting.partitions == [day.isoformat()]
    row = accounting.details[0]
    raw = engine.scalar(
        "select count(*) from raw.events where cast(event_ts as date) = ?",
        [day],
    )
    assert row["raw_rows"] == raw
    # Nothing is kept any more, so nothing is superseded either: all valid rows are missing.
    assert row["kept_rows"] == row["superseded_rows"] == 0
    assert row["unaccounted_rows"] == raw - row["quarantined_rows"] > 0


def test_changed_column_type_fails_the_schema_check(settings: Settings, engine: Engine) -> None:
    engine.execute("drop schema if exists broken_type cascade")
    engine.execute("create schema broken_type")
    engine.execute(
        "create table broken_type.fct_revenue_daily as "
        f"select * replace (cast(net_revenue as double) as net_revenue) from {PROD}.fct_revenue_daily"
    )

    result = validate(settings, engine, "broken_type")

    schema_check = result.check(FCT_SCHEMA)
    assert failed_names(result) == {schema_check.name}
    assert schema_check.details == [
        {
            "column": "net_revenue",
            "problem": "data type",
            "expected": schema_check.details[0]["expected"],
            "actual": schema_check.details[0]["actual"],
        }
    ]
    assert "decimal" in schema_check.details[0]["expected"]
    assert "double" in schema_check.details[0]["actual"]
    assert "net_revenue" in format_report(result)


def _finance_copy(settings: Settings, tmp_path: Path, pct: Decimal) -> tuple[Settings, date, str]:
    """Finance exports with one day's gross (and net) revenue raised by pct percent."""
    folder = tmp_path / "finance"
    shutil.copytree(settings.finance, folder)
    target = sorted(folder.glob("revenue_*.csv"))[-1]
    with target.open() as fh:
        rows = list(csv.DictReader(fh))
    row = max(rows, key=lambda r: Decimal(r["gross_revenue"]))
    gross = Decimal(row["gross_revenue"])
    delta = (gross * pct / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    row["gross_revenue"] = str(gross + delta)
    row["net_revenue"] = str(Decimal(row["net_revenue"]) + delta)
    with target.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    broken = Settings(data_dir=settings.data_dir, finance_uri=str(folder))
    return broken, date.fromisoformat(row["date"]), row["currency"]


def test_finance_total_off_by_a_tenth_of_a_percent_fails_its_date(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    broken, day, currency = _finance_copy(settings, tmp_path, Decimal("0.1"))
    try:
        result = validate(broken, engine)
    finally:
        load_reference_exports(engine, settings)

    daily = result.check(FINANCE_DAILY)
    assert failed_names(result) == {daily.name}
    assert daily.partitions == [day.isoformat()]
    gross = next(d for d in daily.details if d["metric"] == "gross_revenue")
    assert gross["currency"] == currency
    expected_pct = abs(gross["diff"]) * 100 / gross["reference"]
    assert gross["diff_pct"] == pytest.approx(expected_pct)
    assert gross["diff_pct"] > settings.tolerance_pct
    assert day.isoformat() in format_report(result)


def test_finance_difference_inside_tolerance_passes(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    broken, _, _ = _finance_copy(settings, tmp_path, Decimal("0.04"))
    try:
        result = validate(broken, engine)
    finally:
        load_reference_exports(engine, settings)

    assert result.passed, format_report(result)


def test_refund_rate_outside_the_bounds_warns_on_its_date(settings: Settings, engine: Engine) -> None:
    copy_schema(engine, "broken_rate")
    day = engine.scalar(
        f"select min(event_date) from {PROD}.fct_revenue_daily where {in_period()} and gross_revenue > 0"
    )
    engine.execute(
        """update broken_rate.fct_revenue_daily
           set refunds = cast(gross_revenue * 0.9 as decimal(18, 2)),
               net_revenue = gross_revenue - cast(gross_revenue * 0.9 as decimal(18, 2))
           where event_date = ?""",
        [day],
    )

    result = validate(settings, engine, "broken_rate")

    bounds = result.check(REFUND_BOUNDS)
    # A heuristic: it warns and names the day, it never fails a validation by itself.
    assert bounds.outcome == "warned" and bounds.passed
    assert bounds.name not in failed_names(result)
    assert bounds.partitions == [day.isoformat()]
    assert bounds.details[0]["refund_rate"] > float(settings.soda_variables.get("refund_rate_max", 0.5))


def test_refund_rate_bounds_come_from_the_settings(settings: Settings, engine: Engine) -> None:
    rates = engine.query(
        f"""select event_date, sum(refunds) / sum(gross_revenue) as rate
            from {PROD}.fct_revenue_daily where {in_period()}
            group by 1 having sum(gross_revenue) > 0 order by rate desc"""
    )
    ceiling = (rates[2][1] + rates[3][1]) / 2  # about three days lie above it
    above = sorted(d.isoformat() for d, rate in rates if rate > ceiling)
    assert above
    strict = settings.model_copy(update={"soda_variables": {"refund_rate_max": float(ceiling)}})

    result = validate(strict, engine)

    bounds = result.check(REFUND_BOUNDS)
    assert bounds.partitions == above
    assert bounds.outcome == "warned"
    assert result.passed and failed_names(result) == set()


def test_referential_violations_warn_with_their_rows(settings: Settings, engine: Engine) -> None:
    copy_schema(engine, "broken_refs", ("fct_revenue_daily", *INT_TABLES))
    # An account loses its subscription_created event (type changed, counts unchanged).
    account = engine.scalar(
        f"select min(account_id) from {PROD}.int_deduped_events where event_type = 'subscription_created'"
    )
    engine.execute(
        "update broken_refs.int_deduped_events set event_type = 'plan_changed' "
        "where account_id = ? and event_type = 'subscription_created'",
        [account],
    )
    # A refund loses every earlier paid invoice of its account.
    refund = engine.query_dicts(
        f"select event_id, account_id, event_ts, event_date from {PROD}.int_deduped_events "
        f"where event_type = 'refund_issued' and account_id <> ? and {in_period()} "
        "order by event_ts, event_id limit 1",
        [account],
    )[0]
    engine.execute(
        "update broken_refs.int_deduped_events set event_type = 'plan_changed' "
        "where account_id = ? and event_type = 'invoice_paid' and event_ts < ?",
        [refund["account_id"], refund["event_ts"]],
    )

    result = validate(settings, engine, "broken_refs")

    assert result.passed, format_report(result)  # warnings do not block
    subscribed = result.check(SUBSCRIBED)
    assert subscribed.outcome == "warned"
    assert {d["account_id"] for d in subscribed.details} == {account}
    expected_dates = engine.query(
        f"select distinct event_date from broken_refs.int_deduped_events "
        f"where account_id = ? and {in_period()} order by 1",
        [account],
    )
    assert subscribed.partitions == [d.isoformat() for (d,) in expected_dates]
    after_invoice = result.check(REFUND_AFTER_INVOICE)
    assert after_invoice.outcome == "warned"
    assert refund["event_id"] in {d["event_id"] for d in after_invoice.details}
    assert refund["event_date"].isoformat() in after_invoice.partitions
    assert "WARN" in format_report(result)


# ----------------------------------------------------------------------------- plumbing


def test_duckdb_data_source_file_opens_the_same_file_in_this_process(
    settings: Settings, engine: Engine
) -> None:
    """The datasources/duckdb.yml config works next to the engine's open connection."""
    from soda_core.common.yaml import ContractYamlSource, DataSourceYamlSource
    from soda_core.contracts.contract_verification import ContractVerificationSession

    apply_process_env(settings)
    variables = contract_variables(engine, settings, PROD, SPEC.start_date, SPEC.end_date)
    session = ContractVerificationSession.execute(
        contract_yaml_sources=[
            ContractYamlSource.from_file_path(str(settings.soda_contracts_dir / "fct_revenue_daily.yml"))
        ],
        data_source_yaml_sources=[DataSourceYamlSource.from_file_path(str(DATASOURCES_DIR / "duckdb.yml"))],
        variables=dict(variables),
    )
    contract = session.contract_verification_results[0]
    assert contract.is_passed, contract.get_errors_str()
    assert contract.number_of_checks_passed == contract.number_of_checks > 0
    # The engine's own connection still works afterwards.
    assert engine.scalar(f"select count(*) from {PROD}.fct_revenue_daily") > 0


def test_snowflake_data_source_file_reads_the_settings_environment(tmp_path: Path) -> None:
    from soda_core.common.yaml import DataSourceYamlSource

    s = Settings(
        data_dir=tmp_path,
        engine="snowflake",
        snowflake_account="acme-eu1",
        snowflake_user="restate",
        snowflake_password="s3cret",  # type: ignore[arg-type]
        snowflake_database="FINANCE",
        snowflake_warehouse="WH",
        snowflake_role="RESTATE",
    )
    apply_process_env(s)
    parsed = DataSourceYamlSource.from_file_path(str(DATASOURCES_DIR / "snowflake.yml"))
    config = parsed.parse_and_resolve().yaml_dict
    assert config["type"] == "snowflake"
    assert config["name"] == "restate"
    assert dict(config["connection"]) == {
        "account": "acme-eu1",
        "user": "restate",
        "password": "s3cret",
        "database": "FINANCE",
        "warehouse": "WH",
        "role": "RESTATE",
        # passed through to the connector: the account's public endpoint by default
        "host": "acme-eu1.snowflakecomputing.com",
        "port": "443",
        "protocol": "https",
    }


def test_finance_exports_load_every_csv_row(settings: Settings, engine: Engine) -> None:
    lines = 0
    for path in Path(settings.finance).glob("revenue_*.csv"):
        with path.open() as fh:
            lines += sum(1 for _ in csv.DictReader(fh))
    assert load_reference_exports(engine, settings) == {"finance_revenue": lines}
    assert engine.scalar(f"select count(*) from {settings.meta_schema}.reference_finance_revenue") == lines
    differing = engine.scalar(
        f"""select count(*) from {settings.meta_schema}.reference_finance_revenue as f
            join read_csv('{settings.finance}/revenue_*.csv', header = true) as c
              on f.date = c.date and f.currency = c.currency
            where f.gross_revenue <> c.gross_revenue or f.refunds <> c.refunds
               or f.net_revenue <> c.net_revenue"""
    )
    assert differing == 0


def test_malformed_finance_export_keeps_the_loaded_table(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    before = load_reference_exports(engine, settings)
    folder = tmp_path / "finance"
    shutil.copytree(settings.finance, folder)
    (folder / "revenue_2026-12.csv").write_text("day,currency,gross\n2026-12-01,USD,1\n")
    broken = Settings(data_dir=settings.data_dir, finance_uri=str(folder))

    with pytest.raises(ReferenceExportError, match=r"revenue_2026-12\.csv"):
        load_reference_exports(engine, broken)
    assert engine.scalar(f"select count(*) from {settings.meta_schema}.reference_finance_revenue") == sum(
        before.values()
    )
