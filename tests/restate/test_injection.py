"""User values reach SQL only as data: hostile account ids never run as SQL."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from interfaces.cli import app
from restate.actions import create_plan, finish_run, load_once, run_chunk, start_run
from restate.dbt.runner import DbtError, DbtProject
from restate.engines import connect
from restate.plan.plans import PlanError, PlanRequest
from restate.settings import Settings, get_settings
from tests.conftest import land, make_settings, table_rows

pytestmark = pytest.mark.slow

# Closes the quoted list and the CTE, ends the statement, updates production, then
# reopens a statement so the rest of the model's SQL still parses.
HOSTILE = (
    "x')) select 1); update analytics.fct_revenue_daily set net_revenue = 0; "
    "select * from (with revenue_events as (select * from analytics.int_deduped_events "
    "where account_id in ('x"
)
PERIOD = (date(2026, 9, 1), date(2026, 9, 30))


@pytest.fixture
def prod(tmp_path: Path) -> Settings:
    s = make_settings(tmp_path / "wh")
    land(s, None, datetime(2026, 10, 20))
    load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
    return s


def _prod_rows(s: Settings) -> list[tuple]:
    with connect(s) as e:
        return table_rows(e.con, "select * from analytics.fct_revenue_daily")  # type: ignore[attr-defined]


def _an_account(s: Settings) -> str:
    with connect(s) as e:
        return str(e.scalar("select min(account_id) from analytics.fct_revenue_daily"))


def test_plan_refuses_hostile_and_unknown_account_ids_through_the_cli(
    prod: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESTATE_DATA_DIR", str(prod.data_dir))
    get_settings.cache_clear()
    before = _prod_rows(prod)
    runner = CliRunner()
    args = ["plan", "-s", "fct_revenue_daily+", "--start", "2026-09-01", "--end", "2026-09-30"]
    args += ["--reason", "r", "--requested-by", "ana", "--accounts"]
    try:
        hostile = runner.invoke(app, [*args, f"{_an_account(prod)},{HOSTILE}"])
        unknown = runner.invoke(app, [*args, "acct_that_does_not_exist"])
        # An empty shell variable must not turn a limited restatement into a full one.
        empty = [runner.invoke(app, [*args, value]) for value in ("", " ", ",")]
        # A period without a single row, in production or upstream, is a typo, not a plan.
        no_rows = runner.invoke(
            app,
            [
                *["plan", "-s", "fct_revenue_daily+", "--start", "2019-01-01", "--end", "2019-01-31"],
                *["--reason", "r", "--requested-by", "ana"],
            ],
        )
    finally:
        get_settings.cache_clear()
    assert hostile.exit_code == 1, hostile.output
    assert "not a valid entity id" in hostile.output
    assert unknown.exit_code == 1, unknown.output
    assert "acct_that_does_not_exist" in unknown.output and "not in" in unknown.output
    assert no_rows.exit_code == 1 and "nothing to restate" in no_rows.output, no_rows.output
    for refused in empty:
        assert refused.exit_code == 1 and "names no entity" in refused.output, refused.output
    with connect(prod) as e:
        assert e.scalar("select count(*) from restate_meta.restatements") == 0
    assert _prod_rows(prod) == before


def test_a_hostile_id_that_reaches_dbt_is_refused_there_and_production_is_untouched(
    prod: Settings,
) -> None:
    """Defence in depth: a plan whose accounts were edited in the warehouse (bypassing
    planning) still cannot splice SQL; the dbt macro refuses the value."""
    rid = create_plan(
        prod, PlanRequest("fct_revenue_daily+", *PERIOD, "r", "ana", accounts=[_an_account(prod)])
    ).restatement_id
    with connect(prod) as e:
        body = json.loads(e.scalar("select plan_json from restate_meta.restatements"))
        body["accounts"].append(HOSTILE)
        e.execute("update restate_meta.restatements set plan_json = ?", [json.dumps(body)])
    before = _prod_rows(prod)
    refused: Exception | None = None
    try:
        plan = start_run(prod, rid)
        run_chunk(prod, rid, plan.chunks[0].chunk_id)
    except Exception as exc:
        refused = exc
    assert _prod_rows(prod) == before, "the hostile id ran its UPDATE on production"
    assert "not a valid entity id" in str(refused)
    # The dbt macro refuses it too, when handed the chunk directly.
    chunk = {"start": "2026-09-01", "end": "2026-09-30", "bucket": 0, "buckets": 1}
    dbt = DbtProject(prod)
    for bad in ({"accounts": [HOSTILE]}, {"start": "2026-09-01' or true or '"}, {"buckets": "2; drop"}):
        with pytest.raises(DbtError, match="restate_chunk"):
            dbt.run_deferred(
                ["fct_revenue_daily"],
                vars={"restate_schema": f"restate_{rid}", "restate_chunk": {**chunk, **bad}},
            )
    assert _prod_rows(prod) == before


def test_an_account_restatement_recomputes_only_the_listed_accounts(prod: Settings) -> None:
    """A legitimate account list still works end to end (quoted by the adapter)."""
    account = _an_account(prod)
    with pytest.raises(PlanError, match="not in"):
        create_plan(prod, PlanRequest("fct_revenue_daily+", *PERIOD, "r", "ana", accounts=["o-brien"]))
    rid = create_plan(
        prod, PlanRequest("fct_revenue_daily+", *PERIOD, "r", "ana", accounts=[account])
    ).restatement_id
    plan = start_run(prod, rid)
    for c in plan.chunks:
        run_chunk(prod, rid, c.chunk_id)
    finish_run(prod, rid)
    with connect(prod) as e:
        restated = e.query(f"select distinct account_id from restate_{rid}.fct_revenue_daily")
    assert restated == [(account,)]
