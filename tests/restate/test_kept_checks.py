"""A re-validation keeps the partition-local checks that passed on the dates that did not
change, and runs them again on those that did.

The classification is tested on contract shapes the example contracts do not use; the
lifecycle with real DuckDB, dbt and Soda: a validated restatement, one chunk recomputed
(as a resumed run or a refresh for late loads leaves it), and a hand edit of the
restatement schema at a date no chunk rewrote."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from restate.actions import create_plan, load_once, run_restatement
from restate.engines import connect
from restate.plan.plans import PlanRequest
from restate.settings import Settings
from restate.validation.contracts import run_validation
from restate.validation.kept_checks import is_partition_local, previous_validation, reads_only
from tests.conftest import land, make_settings
from tests.restate.conftest import PERIOD

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("kind", "body", "column", "local"),
    [
        ("missing", None, "account_id", True),
        ("missing", {"threshold": {"must_be": 0}}, "account_id", True),
        ("missing", {"threshold": {"must_be": 0, "level": "warn"}}, "account_id", True),
        ("missing", {"threshold": {"metric": "percent", "must_be_less_than": 1}}, "account_id", False),
        ("missing", {"threshold": {"must_be_less_than": 5}}, "account_id", False),  # a sum over dates
        ("missing", {"threshold": {"must_be": 3}}, "account_id", False),
        ("missing", {"threshold": {"must_be": False}}, "account_id", False),
        ("invalid", {"valid_values": ["a"], "filter": "x > 0"}, "kind", True),
        ("duplicate", {"columns": ["event_date", "account_id"]}, None, True),
        ("duplicate", {"columns": ["EVENT_DATE", "account_id"]}, None, True),
        ("duplicate", {"columns": ["account_id"]}, None, False),  # a key repeated across dates
        ("duplicate", None, "account_id", False),
        ("duplicate", {"columns": "event_date"}, None, False),  # not a list: Soda refuses it
        (
            "duplicate",
            {"columns": ["event_date", "id"], "threshold": {"must_be": 0, "additional": {"level": "warn"}}},
            None,
            False,
        ),
        ("failed_rows", {"expression": "net <> gross - refunds"}, None, True),
        ("failed_rows", {"query": "select * from t"}, None, False),  # nobody said it is local
        ("failed_rows", {"query": "select 1", "attributes": {"restate_partition_local": True}}, None, True),
        ("failed_rows", {"query": "select 1", "attributes": {"restate_partition_local": "yes"}}, None, False),
        ("failed_rows", {"query": "select 1", "attributes": ["restate_partition_local"]}, None, False),
        ("row_count", {"threshold": {"must_be_greater_than": 0}}, None, False),
        ("schema", None, None, False),
        ("aggregate", {"function": "sum", "threshold": {"must_be": 0}}, "amount", False),
        ("missing", "not a mapping", "account_id", False),
        # What can change with no restated row changing is never kept.
        ("failed_rows", {"expression": "gross > ${env.MAX_GROSS}"}, None, False),
        ("failed_rows", {"expression": "ingested_at > '${soda.NOW}'"}, None, False),
        ("failed_rows", {"expression": "ingested_at > '${var.loaded_until}'"}, None, False),
        ("failed_rows", {"expression": "account_id not in (select account_id from accounts)"}, None, False),
        ("missing", {"filter": "x in (SELECT y FROM z)"}, "account_id", False),
        ("invalid", {"valid_reference_data": {"dataset": "a/b/c", "column": "id"}}, "account_id", False),
        (
            "failed_rows",
            {"query": "select 1 where '${env.X}' = ''", "attributes": {"restate_partition_local": True}},
            None,
            False,
        ),
        ("failed_rows", {"expression": "account_id not in (from analytics.active)"}, None, False),
        ("failed_rows", {"expression": "last_ingested_at < current_timestamp - interval 2 day"}, None, False),
        ("missing", {"filter": "event_date < current_date - 7"}, "account_id", False),
        ("failed_rows", {"expression": "random() < 0.5"}, None, False),
        (
            "failed_rows",
            {"query": "select now()", "attributes": {"restate_partition_local": True}},
            None,
            False,
        ),
        # Words in a name hold no SQL.
        ("missing", {"name": "no account selected from nowhere"}, "account_id", True),
        # The period variables are fine: narrowing never changes their values in a built-in check.
        ("failed_rows", {"expression": "event_date < date '${var.period_end}' and x is null"}, None, True),
    ],
)
def test_which_checks_are_partition_local(kind: str, body: Any, column: str | None, local: bool) -> None:
    assert is_partition_local(kind, body, column, "event_date") is local


def test_a_column_computed_by_an_expression_is_never_kept() -> None:
    column = {"name": "net", "column_expression": "gross - refunds", "checks": [{"missing": None}]}
    assert not is_partition_local("missing", None, "net", "event_date", column)
    assert is_partition_local("missing", None, "net", "event_date", {"name": "net"})


@pytest.mark.parametrize(
    ("sql", "ok"),
    [
        ("select * from restate_1.fct where d = 1", True),
        (
            "with a as (select * from restate_1.fct) select * from a join restate_meta.reference_x r on 1=1",
            True,
        ),
        ("select * from analytics.int_deduped_events", False),  # production's upstream: not tracked
        ("select * from fct", False),  # a table without its schema
        ("select * from restate_1.fct where x in (select y from analytics.other)", False),
        ("select from where", False),  # does not parse
        ("select * from other_db.restate_1.fct", False),  # the same names in another database
        ("select * from read_parquet('/x/*.parquet')", False),
        ("select * from restate_1.fct at (timestamp => '2020-01-01')", False),  # an older version
    ],
)
def test_a_declared_query_is_kept_only_when_it_reads_tracked_relations(sql: str, ok: bool) -> None:
    assert (
        reads_only(
            sql, {"restate_1.fct", "restate_meta.reference_x"}, "snowflake" if " at (" in sql else "duckdb"
        )
        is ok
    )


def stored(s: Settings, validation_id: str) -> dict[str, Any]:
    with connect(s) as e:
        return dict(
            json.loads(
                e.scalar(
                    "select result_json from restate_meta.validations where validation_id = ?",
                    [validation_id],
                )
            )
        )


def reopen_first_chunk(s: Settings, rid: int) -> tuple[date, date]:
    """Mark the first chunk not done, as a run killed in it leaves it; its dates."""
    with connect(s) as e:
        start, end, chunk = e.query(
            "select period_start, period_end, chunk_id from restate_meta.restatement_partitions "
            "where restatement_id = ? order by period_start limit 1",
            [rid],
        )[0]
        e.execute(
            "update restate_meta.restatement_partitions set status = 'pending' "
            "where restatement_id = ? and chunk_id = ?",
            [rid, chunk],
        )
    return start, end


def checks_by_name(result: dict[str, Any]) -> dict[tuple[str, str, str | None, str | None], dict[str, Any]]:
    return {(c["dataset"], c["check_type"], c["column"], c["qualifier"]): c for c in result["checks"]}


@pytest.mark.slow
def test_a_recomputed_chunk_is_checked_again_alone_and_other_variables_keep_nothing(
    validated: tuple[Settings, int],
) -> None:
    s, rid = validated
    first_id = _last_validation(s, rid)
    first = stored(s, first_id)
    start, end = reopen_first_chunk(s, rid)
    assert end < PERIOD[1], "one chunk covers the whole period: nothing could be kept"
    again = run_restatement(s, rid)
    assert again["validation"]["passed"] and not again["validation"].get("kept")
    assert f"run again on {start}..{end} only" in again["validation"]["report"]
    result = stored(s, again["validation"]["validation_id"])
    assert result["kept"]["from"] == first_id and result["kept"]["span"] == f"{start}..{end}"
    now, then = checks_by_name(result), checks_by_name(first)
    assert now.keys() == then.keys()  # the same checks, every one with a verdict
    kept = {k: c for k, c in now.items() if c["kept_from"]}
    whole = {k: c for k, c in now.items() if not c["kept_from"]}
    assert result["kept"]["checks"] == len(kept) > 0
    assert all(c["scanned"] == f"{start}..{end}" for c in kept.values())
    kinds = {k[1] for k in kept}
    assert {"missing", "declared_keys"} <= kinds
    assert any(k[3] == "finance_daily" for k in kept)  # a query the contract declares local
    # Checks that are not partition-local ran on the whole period: the row count, the
    # schema, the monthly totals (a query nobody declared local).
    assert {"row_count", "schema"} <= {k[1] for k in whole}
    assert any(k[3] == "finance_monthly" for k in whole)
    assert all(c["scanned"] is None for c in whole.values())

    # Another tolerance (a contract variable) changes what every check means: the same
    # reopened chunk, and nothing is kept.
    reopen_first_chunk(s, rid)
    other = run_restatement(s.model_copy(update={"tolerance_pct": s.tolerance_pct * 2}), rid)
    result = stored(s, other["validation"]["validation_id"])
    assert "from" not in result["kept"]
    assert not any(c["kept_from"] for c in result["checks"])


def _last_validation(s: Settings, rid: int) -> str:
    with connect(s) as e:
        return str(
            e.scalar(
                "select validation_id from restate_meta.validations where restatement_id = ? "
                "order by checked_at desc limit 1",
                [rid],
            )
        )


@pytest.mark.slow
def test_the_second_project_restating_some_stores_sees_production_edits_of_the_others(tmp_path: Path) -> None:
    """Northstar, two stores of four restated: the relation the cross-table checks read is
    the restated stores merged with production's others, so an edit of another store's
    row in production (no chunk of the restatement changes) is a changed date: the
    finance comparison, kept for the other dates, runs on it again and catches it."""
    from examples.northstar.generate import GenerateSpec, generate

    s = make_settings(tmp_path / "wh", dbt_project_dir=ROOT / "dbt" / "northstar")
    spec = GenerateSpec(end_date=date(2026, 10, 31), months=2, stores=4, orders_per_day=20, seed=11)
    generate(spec, Path(s.landing), Path(s.finance))
    load_once(s)
    plan = create_plan(
        s,
        PlanRequest(
            "fct_orders_daily+", date(2026, 9, 1), date(2026, 10, 31), "refunds twice", "ana",
            accounts=["store_01", "store_03"],
        ),
        notify=False,
    )  # fmt: skip
    rid = plan.restatement_id
    assert run_restatement(s, rid)["validation"]["passed"]
    start, end = reopen_first_chunk(s, rid)
    edited = date(2026, 10, 5)
    assert end < edited
    with connect(s) as e:
        e.execute(
            "update analytics.fct_orders_daily set gross_sales = gross_sales + 1000 "
            "where order_date = ? and store_id = 'store_02'",
            [edited],
        )
    again = run_restatement(s, rid)
    result = stored(s, again["validation"]["validation_id"])
    assert result["kept"]["span"] == f"{start}..{edited}"
    failed = {
        (c["qualifier"], p) for c in result["checks"] if c["outcome"] == "failed" for p in c["partitions"]
    }
    assert failed == {("finance_daily", str(edited)), ("kept_orders", str(edited))}
    finance = next(c for c in result["checks"] if c["qualifier"] == "finance_daily")
    assert finance["kept_from"] and finance["scanned"] == f"{start}..{edited}"
    with connect(s) as e:
        schema = e.scalar(
            "select restate_schema from restate_meta.restatements where restatement_id = ?", [rid]
        )
        full = run_validation(s, e, schema, date(2026, 9, 1), date(2026, 10, 31), rid)
    assert {(c.dataset, c.check_type, c.column, c.qualifier): c.outcome for c in full.checks} == {
        k: c["outcome"] for k, c in checks_by_name(result).items()
    }


@pytest.mark.slow
def test_what_a_narrowed_check_reads_besides_the_changed_rows_is_checked_whole(tmp_path: Path) -> None:
    """Three ways a kept pass could hide a failure, each with the same verdicts as checking
    everything: a check whose expression reads the period's end (narrowing must not move
    it), production's upstream edited with no load (the query reading it is not
    partition-local), and other declared keys in the project (nothing kept)."""
    import dataclasses
    import shutil

    import yaml

    from restate.contract.project import project_contract

    contracts = tmp_path / "contracts"
    shutil.copytree(ROOT / "soda_checks" / "billing", contracts)
    mart = contracts / "fct_revenue_daily.yml"
    spec = yaml.safe_load(mart.read_text())
    spec["checks"].append(
        {
            "failed_rows": {
                "name": "only the last day may lack an ingestion time",
                "qualifier": "ingested_before_the_end",
                "expression": "event_date < date '${var.period_end}' and last_ingested_at is null",
            }
        }
    )
    mart.write_text(yaml.safe_dump(spec, sort_keys=False))
    s = make_settings(tmp_path / "wh", soda_contracts_dir=contracts)
    land(s, None, datetime(2026, 10, 20))
    load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
    plan = create_plan(
        s, PlanRequest("fct_revenue_daily+", *PERIOD, "refund bug", "ana", "FIN-1"), notify=False
    )
    rid = plan.restatement_id
    assert run_restatement(s, rid)["validation"]["passed"]

    def narrowed_and_whole(project: Any = None) -> tuple[Any, Any]:
        with connect(s) as e:
            schema = e.scalar(
                "select restate_schema from restate_meta.restatements where restatement_id = ?", [rid]
            )
            previous = previous_validation(e, s, rid)
            assert previous is not None
            narrowed = run_validation(s, e, schema, *PERIOD, rid, project=project, previous=previous)
            whole = run_validation(s, e, schema, *PERIOD, rid, project=project)
        return narrowed, whole

    def failed(result: Any) -> set[str]:
        return {c.qualifier or c.check_type for c in result.checks if not c.passed}

    day = date(2026, 8, 5)
    with connect(s) as e:
        schema = e.scalar(
            "select restate_schema from restate_meta.restatements where restatement_id = ?", [rid]
        )
        e.execute(
            f"update {schema}.fct_revenue_daily set last_ingested_at = null where event_date = ?", [day]
        )
    narrowed, whole = narrowed_and_whole()
    assert narrowed.kept["span"] == f"{day}..{day}"
    assert failed(narrowed) == failed(whole) == {"ingested_before_the_end"}
    caught = next(c for c in narrowed.checks if c.qualifier == "ingested_before_the_end")
    assert caught.kept_from and str(day) in caught.partitions

    with connect(s) as e:
        e.execute(
            "update analytics.int_deduped_events set amount = amount * 3 "
            "where event_type = 'refund_issued' and event_date = ?",
            [date(2026, 8, 20)],
        )
    narrowed, whole = narrowed_and_whole()
    upstream = next(c for c in narrowed.checks if c.qualifier == "refund_rate_vs_upstream")
    assert upstream.kept_from is None and not upstream.passed
    assert failed(narrowed) == failed(whole)

    project = project_contract(s)
    model = project.models["fct_revenue_daily"]
    other_keys = dataclasses.replace(
        project,
        models={**project.models, model.model: dataclasses.replace(model, keys=("event_date", "currency"))},
    )
    narrowed, whole = narrowed_and_whole(other_keys)
    assert "from" not in narrowed.kept
    assert "declared_keys" in failed(narrowed) and failed(narrowed) == failed(whole)


def test_the_narrowing_filter_leaves_out_only_unchanged_dates_of_the_period() -> None:
    """A row with no date, or outside the period, is checked as the whole validation
    checks it (the digests never see it); only the period's dates outside the span go."""
    import duckdb

    from restate.validation.contracts import Dataset, _narrow

    spec: dict[str, Any] = {"filter": "account_id <> 'test'"}
    ds = Dataset("fct", Path("fct.yml"), "event_date", "s.fct", "s")
    _narrow(
        spec,
        ds,
        (date(2026, 8, 5), date(2026, 8, 6)),
        {"period_start": "2026-08-01", "period_end": "2026-08-31"},
    )
    con = duckdb.connect()
    con.execute(
        "create table t as select * from (values (date '2026-08-05', 'a'), (date '2026-08-20', 'a'), "
        "(null, 'a'), (date '2026-09-02', 'a'), (date '2026-08-06', 'test')) v(event_date, account_id)"
    )
    kept = con.execute(f"select event_date from t where {spec['filter']} order by 1 nulls first").fetchall()
    assert kept == [(None,), (date(2026, 8, 5),), (date(2026, 9, 2),)]


def _previous(*keys: str) -> Any:
    """A previous validation in which the checks of ``keys`` passed."""
    from dataclasses import asdict

    from restate.validation.contracts import ValidationCheck
    from restate.validation.kept_checks import Previous

    def passed(key: str) -> dict[str, Any]:
        dataset, column, kind, qualifier = key.split("|")
        check = ValidationCheck(key, dataset, kind, "passed", True, 0.0, "must be 0", column or None)
        return {**asdict(check), "qualifier": qualifier or None}

    return Previous("v1", "inputs", {k: passed(k) for k in keys}, {"s.fct": {}}, {})


def test_two_contracts_with_one_check_identity_keep_nothing(tmp_path: Path) -> None:
    """Two files checking the same table with the same check: a pass of one must never
    stand for the other, so neither is kept."""
    from restate.validation.contracts import Dataset, _Narrowing, _parts

    text = "dataset: restate/s/fct\nfilter: event_date is not null\ncolumns:\n  - name: account_id\n    checks:\n      - missing:\n"
    (tmp_path / "a.yml").write_text(text)
    (tmp_path / "b.yml").write_text(
        text.replace("- missing:", "- missing:\n          missing_values: ['N/A']")
    )
    datasets = [Dataset("fct", tmp_path / n, "event_date", "s.fct", "s") for n in ("a.yml", "b.yml")]
    key = "s.fct|account_id|missing|"
    narrowing = _Narrowing(_previous(key), None, frozenset({"s.fct"}), frozenset())
    parts, copied = _parts(
        datasets, {"period_start": "2026-08-01", "period_end": "2026-08-31"}, narrowing, "duckdb"
    )
    assert not copied and len(parts) == 2 and all(p.only is None and not p.but for p in parts)
    # The same contract alone is kept (the test would pass for the wrong reason otherwise).
    parts, copied = _parts(
        datasets[:1], {"period_start": "2026-08-01", "period_end": "2026-08-31"}, narrowing, "duckdb"
    )
    assert len(copied) == 1 and not parts


def test_a_variable_holding_a_subquery_is_read_as_soda_runs_it(tmp_path: Path) -> None:
    from restate.validation.contracts import Dataset, _Narrowing, _parts

    text = (
        "dataset: restate/s/fct\nchecks:\n  - failed_rows:\n      qualifier: active\n"
        "      expression: account_id not in ${var.active_accounts}\n"
    )
    (tmp_path / "a.yml").write_text(text)
    key = "s.fct||failed_rows|active"
    narrowing = _Narrowing(_previous(key), None, frozenset({"s.fct"}), frozenset())
    ds = [Dataset("fct", tmp_path / "a.yml", "event_date", "s.fct", "s")]
    period = {"period_start": "2026-08-01", "period_end": "2026-08-31"}
    _, copied = _parts(ds, {**period, "active_accounts": "('a', 'b')"}, narrowing, "duckdb")
    assert len(copied) == 1
    parts, copied = _parts(
        ds, {**period, "active_accounts": "(select id from analytics.active)"}, narrowing, "duckdb"
    )
    assert not copied and parts[0].only is None and not parts[0].but


@pytest.mark.slow
def test_promotion_after_late_loads_checks_the_refreshed_chunks_alone(tmp_path: Path) -> None:
    """Validated, then a load lands late events of the period: what promotion does under
    its lock (refresh the chunks the load touched, validate again) keeps what passed on
    the other chunks' dates. The steps are called as promotion calls them, because the
    first validation of this data fails on days whose late events are not loaded yet."""
    import contextlib

    from restate.dbt.runner import DbtProject
    from restate.partitions.promotion import GateError, _revalidate, refresh_late_chunks
    from restate.plan.plans import load_plan

    s = make_settings(tmp_path / "wh")
    land(s, None, datetime(2026, 10, 20))
    load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
    plan = create_plan(
        s, PlanRequest("fct_revenue_daily+", date(2026, 5, 1), date(2026, 10, 19), "refund bug", "ana", "FIN-1"),
        notify=False,
    )  # fmt: skip
    rid = plan.restatement_id
    first = run_restatement(s, rid)
    land(s, datetime(2026, 10, 20), datetime(2026, 11, 30))  # late events of the last months among them
    load_once(s)
    with connect(s) as e:
        plan = load_plan(e, s, rid)
        refreshed = refresh_late_chunks(e, s, plan, DbtProject(s))
        assert refreshed and len(refreshed) < len(plan.chunks), refreshed
        with contextlib.suppress(GateError):  # the verdict is the promotion's; what ran is this test's
            _revalidate(e, s, plan, refreshed)
        last = json.loads(
            e.scalar(
                "select result_json from restate_meta.validations where restatement_id = ? "
                "order by checked_at desc limit 1",
                [rid],
            )
        )
    assert last["kept"]["from"] == first["validation"]["validation_id"]
    first_refreshed = min(c.start for c in plan.chunks if c.chunk_id in refreshed)
    assert last["kept"]["span"].startswith(str(first_refreshed)) and last["kept"]["checks"] > 0
