"""The whole restatement lifecycle on the production engine, against the Snowflake emulator.

plan -> recompute (dbt-snowflake per chunk) -> validate -> diff -> promote -> rollback,
with the tool's own SQL through the Snowflake connector and every statement tagged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from examples.billing.generate import GenerateSpec, generate
from restate.actions import (
    create_plan,
    finish_run,
    load_once,
    run_chunk,
    run_diff,
    run_validation_step,
    start_run,
)
from restate.engines import connect
from restate.partitions.promotion import GateError, promote, rollback
from restate.plan.plans import DEFAULT_BYTES_PER_ROW, PlanRequest, load_plan
from restate.settings import Settings
from restate.state import changelog
from restate.validation.contracts import run_validation
from tests.conftest import expected_daily_sql
from tests.production.conftest import Emulator, load_landing_into_emulator, snowflake_settings

pytestmark = [pytest.mark.slow, pytest.mark.snowflake]

# Small enough for the emulator (every statement goes through sqlglot and HTTP).
SPEC = {"end_date": date(2026, 10, 31), "months": 2, "accounts": 25, "events_per_day": 40, "seed": 11}
PERIOD = (date(2026, 9, 1), date(2026, 10, 15))
IN_SCOPE = f"event_date between '{PERIOD[0]}' and '{PERIOD[1]}'"
COLUMNS = "event_date, account_id, currency, gross_revenue, refunds, net_revenue"


def rows(engine, sql: str) -> list[tuple]:
    def norm(v: object) -> object:
        return Decimal(v).quantize(Decimal("0.01")) if isinstance(v, (Decimal, float)) else v

    return sorted((tuple(norm(v) for v in r) for r in engine.query(sql)), key=lambda r: tuple(map(str, r)))


def expected(landing: Path) -> list[tuple]:
    con = duckdb.connect()
    sql = f"select {COLUMNS} from ({expected_daily_sql(f'{landing}/events/*/*.parquet')}) where {IN_SCOPE}"
    return sorted(
        (
            tuple(Decimal(v).quantize(Decimal("0.01")) if isinstance(v, Decimal) else v for v in r)
            for r in con.execute(sql).fetchall()
        ),
        key=lambda r: tuple(map(str, r)),
    )


@pytest.fixture(scope="module")
def rendered() -> Iterator[list[tuple[str, str]]]:
    """Every statement the tool sent through the Snowflake engine: (as written, as sent)."""
    from restate.engines import snowflake as engine_module
    from restate.sql import render

    seen: list[tuple[str, str]] = []

    def recording(sql: str, dialect: str) -> str:
        out = render(sql, dialect)
        seen.append((str(sql), out))
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine_module, "render", recording)
        yield seen


@pytest.fixture(scope="module")
def buggy_prod(
    snowflake_emulator: Emulator, tmp_path_factory: pytest.TempPathFactory, rendered: list[tuple[str, str]]
) -> Settings:
    data_dir = tmp_path_factory.mktemp("sf")
    s = snowflake_settings(data_dir, snowflake_emulator, approvers=["controller"])
    # Everything has landed, so the restated period must match the finance exports.
    spec = GenerateSpec(**SPEC)  # type: ignore[arg-type]
    generate(spec, s.landing, s.finance, duckdb.connect())
    assert load_landing_into_emulator(s, Path(s.landing)) > 1000
    result = load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
    assert result.status == "success" and result.rows_new > 1000
    return s


def test_lifecycle_on_emulated_snowflake(buggy_prod: Settings, snowflake_emulator: Emulator) -> None:
    s = buggy_prod
    landing = Path(s.landing)
    with connect(s) as e:
        reported = rows(e, f"select {COLUMNS} from analytics.fct_revenue_daily where {IN_SCOPE}")
        outside = rows(e, f"select {COLUMNS} from analytics.fct_revenue_daily where not ({IN_SCOPE})")
    assert reported and outside

    # plan: closure, chunks and the Snowflake cost estimate
    plan = create_plan(
        s, PlanRequest("fct_revenue_daily+", *PERIOD, reason="refund bug", requested_by="ana", ticket="FIN-1")
    )
    rid = plan.restatement_id
    assert plan.models == ["fct_revenue_daily"] and len(plan.chunks) == 2
    assert plan.requires_approval  # the production engine requires an approver by default
    est = plan.estimate
    assert est["source_rows"] > 1000 and est["credits"] > 0 and est["warehouse_size"] == "MEDIUM"

    # recompute every chunk into restate_<id> (dbt-snowflake, deferring to prod)
    start_run(s, rid)
    for chunk in plan.chunks:
        assert not run_chunk(s, rid, chunk.chunk_id)["reused"]
    finish_run(s, rid)
    with connect(s) as e:
        assert rows(e, f"select {COLUMNS} from analytics.fct_revenue_daily where {IN_SCOPE}") == reported
        assert rows(e, f"select {COLUMNS} from restate_{rid}.fct_revenue_daily where {IN_SCOPE}") == expected(
            landing
        )

    # validate: every Soda contract through soda-snowflake, evidence stored for the gate
    validation = run_validation_step(s, rid)
    assert validation["passed"], validation["report"]
    with connect(s) as e:
        evidence = json.loads(
            e.scalar(
                f"select result_json from {s.meta_schema}.validations where validation_id = ?",
                [validation["validation_id"]],
            )
        )
        # The same contracts on the buggy production fail where refunds were ignored.
        on_prod = run_validation(s, e, s.prod_schema, *PERIOD, None)
    outcomes = {c["check_type"] for c in evidence["checks"] if c["outcome"] == "passed"}
    assert {"schema", "row_count", "duplicate", "missing", "failed_rows"} <= outcomes
    assert all(c["outcome"] == "passed" for c in evidence["checks"]) and not evidence["errors"]
    assert not on_prod.passed and not on_prod.errors
    finance_daily = on_prod.check("daily totals", "fct_revenue_daily")
    assert not finance_daily.passed and finance_daily.partitions
    days = (PERIOD[1] - PERIOD[0]).days + 1
    assert set(finance_daily.partitions) <= {str(PERIOD[0] + timedelta(d)) for d in range(days)}
    assert run_diff(s, rid) > 0
    with connect(s) as e:
        net_delta = e.scalar(
            f"select sum(delta) from {s.meta_schema}.restatement_diffs "
            "where restatement_id = ? and metric = 'net_revenue'",
            [rid],
        )
        assert net_delta < 0  # refunds now reduce net revenue

    # promote: one transaction of DML; prod equals the fixed logic, the rest untouched
    with connect(s) as e:
        with pytest.raises(GateError, match="requires approval"):
            promote(e, s, load_plan(e, s, rid))
        out = promote(e, s, load_plan(e, s, rid), approved_by="controller")
        assert out["status"] == "promoted"
        promoted = rows(e, f"select {COLUMNS} from analytics.fct_revenue_daily where {IN_SCOPE}")
        assert promoted == expected(landing) and promoted != reported
        assert rows(e, f"select {COLUMNS} from analytics.fct_revenue_daily where not ({IN_SCOPE})") == outside
        archived = e.scalar(
            f"select count(*) from {s.meta_schema}.archive_fct_revenue_daily where restatement_id = ?", [rid]
        )
        assert archived >= len(reported)

        # rollback restores the as-reported rows exactly
        rollback(e, s, load_plan(e, s, rid), actor="ana", reason="test")
        assert rows(e, f"select {COLUMNS} from analytics.fct_revenue_daily where {IN_SCOPE}") == reported
        assert changelog.verify(e, s.meta_schema) is None
        lifecycle = {"planned", "recomputed", "diffed", "promoted", "rolled_back"}
        events = [r["event"] for r in changelog.entries(e, s.meta_schema, rid) if r["event"] in lifecycle]
        assert events == ["planned", "recomputed", "diffed", "promoted", "rolled_back"]

    # cost attribution: every statement of the restatement carried its id (and chunk)
    tagged = [json.loads(st["tag"]) for st in snowflake_emulator.statements() if st["tag"]]
    for chunk in plan.chunks:
        chunk_sql = [
            st
            for st in snowflake_emulator.statements()
            if st["tag"] and json.loads(st["tag"]).get("chunk") == chunk.chunk_id
        ]
        assert any(f"restate_{rid}" in (st["sql"] or "").lower() for st in chunk_sql), chunk.chunk_id
    steps = {t.get("step") for t in tagged if t.get("restatement_id") == rid}
    assert {"recompute", "validate", "diff", "promote", "rollback"} <= steps
    # Soda's own session (schema metadata, metric queries) carried the restatement's tag too.
    soda_sql = [
        st
        for st in snowflake_emulator.statements()
        if "information_schema" in (st["sql"] or "").lower()
        and "datetime_precision" in (st["sql"] or "").lower()
    ]
    assert soda_sql and all(json.loads(st["tag"] or "{}").get("step") == "validate" for st in soda_sql)
    untagged = [st for st in snowflake_emulator.statements() if not st["tag"]]
    assert untagged == []


def test_plan_cli_estimate_and_budget_guard(buggy_prod: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """`restate plan --json` on Snowflake settings gives the cost estimate; over budget is refused."""
    from typer.testing import CliRunner

    from interfaces.cli import app
    from restate.settings import get_settings

    s = buggy_prod
    for name, value in s.model_dump().items():
        if (
            name.startswith("snowflake_") or name in ("engine", "data_dir", "dbt_threads")
        ) and value is not None:
            secret = value.get_secret_value() if hasattr(value, "get_secret_value") else value
            monkeypatch.setenv(f"RESTATE_{name.upper()}", str(secret))
    args = ["plan", "-s", "fct_revenue_daily+", "--start", "2026-09-01", "--end", "2026-09-30"]
    args += ["--reason", "refund bug", "--requested-by", "ana", "--json"]
    runner = CliRunner()
    get_settings.cache_clear()
    try:
        planned = runner.invoke(app, args)
        assert planned.exit_code == 0, planned.output
        estimate = json.loads(planned.output)["estimate"]
        fields = {"source_rows", "source_bytes", "warehouse_size", "warehouse_hours", "credits", "usd"}
        assert fields <= estimate.keys() and estimate["source_rows"] > 0
        # The emulator reports no table bytes, so the default bytes per row applies.
        assert estimate["source_bytes"] == estimate["source_rows"] * DEFAULT_BYTES_PER_ROW
        assert estimate["budget_usd"] == 15_000

        # A throughput this slow makes the same month cost more than the budget.
        monkeypatch.setenv("RESTATE_SNOWFLAKE_MB_PER_S_XSMALL", "0.000000001")
        get_settings.cache_clear()
        with connect(get_settings()) as e:
            before = e.scalar(f"select count(*) from {s.meta_schema}.restatements")
        refused = runner.invoke(app, args)
        assert refused.exit_code == 1
        message = " ".join(refused.output.split())  # the console wraps long lines
        assert "exceeds the budget of $15,000" in message and "pass --allow-over-budget" in message
        with connect(get_settings()) as e:
            assert e.scalar(f"select count(*) from {s.meta_schema}.restatements") == before
        allowed = runner.invoke(app, [*args, "--allow-over-budget"])
        assert allowed.exit_code == 0, allowed.output
        assert json.loads(allowed.output)["estimate"]["usd"] > 15_000
    finally:
        get_settings.cache_clear()


def test_credentials_block_logs_in_the_tool_dbt_and_soda(
    buggy_prod: Settings, snowflake_emulator: Emulator
) -> None:
    """A prefect-snowflake SnowflakeCredentials block (on a real temporary Prefect server)
    replaces account, user and password in the settings for every client."""
    from prefect.testing.utilities import prefect_test_harness
    from prefect_snowflake import SnowflakeCredentials

    s = buggy_prod
    with prefect_test_harness(server_startup_timeout=120):
        SnowflakeCredentials(account="restate_test", user="from_block", password="emulated").save(
            "restate-warehouse"
        )
        blocked = s.model_copy(
            update={
                "snowflake_credentials_block": "restate-warehouse",
                "snowflake_account": None,
                "snowflake_user": None,
                "snowflake_password": None,
            }
        )
        env = blocked.dbt_env()
        assert (env["DBT_RESTATE_SNOWFLAKE_ACCOUNT"], env["DBT_RESTATE_SNOWFLAKE_USER"]) == (
            "restate_test",
            "from_block",
        )
        assert env["DBT_RESTATE_SNOWFLAKE_PASSWORD"] == "emulated"
        seen = len(snowflake_emulator.statements())
        with connect(blocked) as e:
            result = run_validation(blocked, e, s.prod_schema, *PERIOD, None)
    assert result.checks and not result.errors
    ran = snowflake_emulator.statements()[seen:]
    soda = [st for st in ran if "datetime_precision" in (st["sql"] or "").lower()]
    tool = [st for st in ran if "reference_finance_revenue" in (st["sql"] or "").lower()]
    assert soda and tool
    assert {st["user"] for st in ran} == {"from_block"}


# Functions Snowflake has that sqlglot's Snowflake dialect parses as "anonymous".
# Snowflake functions sqlglot's dialect has no expression for (so they parse as anonymous).
# HASH(expr, ...): Snowflake's 64-bit hash of its arguments (reference.py sums it to tell
# whether a reference table changed since it was loaded).
SNOWFLAKE_ONLY_FUNCTIONS: set[str] = {"HASH"}


def test_every_statement_the_core_issues_renders_for_snowflake(
    buggy_prod: Settings, rendered: list[tuple[str, str]]
) -> None:
    """The core writes DuckDB SQL; what reaches Snowflake must be Snowflake SQL. The emulator
    runs on DuckDB underneath and would accept DuckDB-only syntax, so each statement sent is
    parsed with sqlglot's Snowflake dialect: no parse error, no aggregate FILTER clause
    (Snowflake has none), no function Snowflake does not know."""
    from restate.contract.project import project_contract
    from restate.ingest.reports import metric_report, quarantine_summary
    from restate.state.status import list_restatements, restatement_status

    s = buggy_prod
    rid = create_plan(
        s, PlanRequest("fct_revenue_daily+", *PERIOD, reason="render", requested_by="ana")
    ).restatement_id
    project = project_contract(s)
    with connect(s) as e:  # the read paths the CLI and Slack use
        assert restatement_status(e, s, rid)["status"] == "planned"
        assert any(r["restatement_id"] == rid for r in list_restatements(e, s))
        assert metric_report(e, s.prod_schema, project.model("fct_revenue_daily"))
        quarantine_summary(e, s.prod_schema, project, by="month")
        assert changelog.verify(e, s.meta_schema) is None
    assert len(rendered) > 100
    problems = [f"{problem}: {sent[:300]}" for _, sent in rendered for problem in snowflake_problems(sent)]
    assert not problems, "\n".join(sorted(set(problems)))
    # The DuckDB-only forms the core writes (status's FILTER, the quarantine report's
    # strftime) were issued, would have been refused as written, and were rendered.
    duckdb_only = [written for written, _ in rendered if snowflake_problems(written)]
    assert any("filter (where" in w.lower() for w in duckdb_only)
    assert any("strftime(" in w.lower() for w in duckdb_only)


def snowflake_problems(sql: str) -> list[str]:
    """What Snowflake would refuse in `sql`, as far as sqlglot's Snowflake dialect can tell."""
    import sqlglot
    from sqlglot import exp

    try:
        statements = sqlglot.parse(sql, read="snowflake")
    except sqlglot.errors.ParseError as exc:
        return [f"does not parse as Snowflake ({str(exc)[:120]})"]
    found = []
    for statement in statements:
        if statement is None or isinstance(statement, exp.Command):
            continue
        if any(statement.find_all(exp.Filter)):
            found.append("aggregate FILTER clause")
        found += [
            f"unknown function {fn.name}"
            for fn in statement.find_all(exp.Anonymous)
            if fn.name.upper() not in SNOWFLAKE_ONLY_FUNCTIONS
        ]
    return found
