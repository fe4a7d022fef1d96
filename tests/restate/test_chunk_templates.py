"""Chunk SQL compiled once per restatement (restate/partitions/templates.py).

The first chunk builds the isolated tables through dbt; later chunks run the SQL dbt
compiled once. These tests hold that path to the per-chunk dbt path it replaces: same
rows on real DuckDB + dbt, across date chunks, entity buckets and listed entities; one
dbt `run` and one `compile` however many chunks; and every model dbt would treat
differently (hooks, another strategy, no chunk tokens) keeps going through dbt.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

import restate.partitions.recompute as recompute_module
from restate.actions import create_plan, finish_run, load_once, run_chunk, start_run
from restate.dbt.runner import DbtProject, DbtResult, NodeResult
from restate.engines import connect
from restate.partitions import templates
from restate.plan.plans import Chunk, PlanRequest
from restate.settings import Settings
from tests.conftest import land, make_settings, table_rows

PERIOD = (date(2026, 8, 10), date(2026, 10, 20))


@pytest.fixture(scope="module")
def buggy_prod(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    s = make_settings(tmp_path_factory.mktemp("templates") / "wh", chunk_days=20, account_buckets=2)
    land(s, None, datetime(2026, 10, 25))
    load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
    return s


def restate_once(s: Settings, accounts: list[str] | None) -> tuple[int, list[str]]:
    plan = create_plan(
        s,
        PlanRequest("fct_revenue_daily+", *PERIOD, "refund bug", "ana", "FIN-1", accounts),
        notify=False,
    )
    start_run(s, plan.restatement_id)
    for chunk in plan.chunks:
        run_chunk(s, plan.restatement_id, chunk.chunk_id)
    finish_run(s, plan.restatement_id)
    return plan.restatement_id, [c.chunk_id for c in plan.chunks]


def restated_rows(s: Settings, rid: int) -> list[tuple]:
    with connect(s) as e:
        return table_rows(e.con, f"select * exclude (last_ingested_at) from restate_{rid}.fct_revenue_daily")


def dbt_commands(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    original = DbtProject.invoke

    def invoke(self: DbtProject, command: list[str], *args: object, **kwargs: object) -> DbtResult:
        seen.append(command[0])
        return original(self, command, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(DbtProject, "invoke", invoke)
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("accounts", [None, ["acct_000003", "acct_000017", "acct_000042"]])
def test_compiled_chunks_equal_dbt_per_chunk(
    buggy_prod: Settings, monkeypatch: pytest.MonkeyPatch, accounts: list[str] | None
) -> None:
    s = buggy_prod
    commands = dbt_commands(monkeypatch)
    rid, chunks = restate_once(s, accounts)
    assert len(chunks) >= 6  # 20-day chunks x 2 entity buckets over 10 weeks
    # One run builds the tables (first chunk), one compile serves every later chunk,
    # one run builds the follow-on view.
    assert commands.count("run") == 2 and commands.count("compile") == 1, commands
    fast = restated_rows(s, rid)
    assert fast

    monkeypatch.setattr(recompute_module, "templates_for", lambda *a, **k: None)
    commands.clear()
    rid_dbt, _ = restate_once(s, accounts)
    assert commands.count("run") == len(chunks) + 1 and "compile" not in commands
    assert restated_rows(s, rid_dbt) == fast
    if accounts:
        assert {r[1] for r in fast} <= set(accounts)


@pytest.mark.slow
def test_a_template_chunk_rerun_replaces_its_partitions_once(buggy_prod: Settings) -> None:
    """Running the same chunk twice through the template leaves the same rows, not twice
    as many: delete and insert are one transaction over the chunk's partitions."""
    s = buggy_prod
    rid, chunks = restate_once(s, None)
    before = restated_rows(s, rid)
    with connect(s) as e:
        e.execute(
            "update restate_meta.restatement_partitions set status = 'pending' "
            "where restatement_id = ? and chunk_id = ?",
            [rid, chunks[-1]],
        )
    out = run_chunk(s, rid, chunks[-1])
    assert out["reused"] is False and out["rows_written"] > 0
    assert restated_rows(s, rid) == before


def node(name: str, sql: str | None, **config: object) -> NodeResult:
    return NodeResult(
        unique_id=f"model.p.{name}",
        status="success",
        execution_time=0.0,
        message=None,
        compiled_code=sql,
        config={"materialized": "incremental", "incremental_strategy": "replace_partitions", **config},
    )


SCOPED = (
    f"select * from up where d between cast('{templates.START}' as date) "
    f"and cast('{templates.END}' as date) and (hash(a) % 2) = {templates.BUCKET}"
)


@pytest.mark.parametrize(
    "hostile",
    [
        node("m", SCOPED, **{"post-hook": ["grant select on {{ this }} to role x"]}),
        node("m", SCOPED, **{"pre-hook": ["delete from audit"]}),
        node("m", SCOPED, incremental_strategy="delete+insert"),
        node("m", SCOPED, materialized="table"),
        node("m", "select * from up"),  # never calls partition_scope: no chunk tokens
        node("m", SCOPED.replace(templates.BUCKET, "0")),  # buckets > 1 but no bucket token
    ],
)
def test_models_dbt_would_run_differently_keep_dbt(hostile: NodeResult) -> None:
    assert templates.usable_templates(DbtResult(True, [hostile]), ["m"], buckets=2) is None


def test_templates_follow_dependencies_and_fill_every_token() -> None:
    parent = node("parent", SCOPED + f" union all {SCOPED}")  # partition_scope() twice
    child = node("child", SCOPED.replace("up", "parent"))
    child.depends_on = ["model.p.parent", "source.p.raw.events"]
    found = templates.usable_templates(DbtResult(True, [child, parent]), ["child", "parent"], buckets=2)
    assert found is not None and [t.model for t in found] == ["parent", "child"]
    sql = found[0].render(Chunk("c", date(2026, 1, 1), date(2026, 1, 31), 1, 2))
    assert sql.count("'2026-01-01'") == 2 and sql.count("'2026-01-31'") == 2 and "% 2) = 1" in sql
    assert "__restate_chunk_" not in sql


def test_a_token_the_tool_does_not_fill_is_refused() -> None:
    odd = templates.ChunkTemplate("m", SCOPED + " and x = '__restate_chunk_entities__'")
    with pytest.raises(templates.TemplateError, match="token"):
        odd.render(Chunk("c", date(2026, 1, 1), date(2026, 1, 31), 0, 2))


def test_a_model_missing_from_the_compile_keeps_dbt(tmp_path: Path) -> None:
    assert templates.usable_templates(DbtResult(True, [node("a", SCOPED)]), ["a", "b"], buckets=2) is None


@pytest.mark.slow
def test_two_installations_in_one_process_never_share_compiled_chunks(tmp_path: Path) -> None:
    """Same project, same restatement id, another warehouse and production schema: the
    second installation compiles its own SQL (a template kept per process by project and
    restatement id alone once ran one warehouse's SQL on another)."""
    results = []
    for n, prod in enumerate(("analytics", "finance_marts")):
        s = make_settings(tmp_path / f"wh{n}", chunk_days=20, prod_schema=prod)
        land(s, None, datetime(2026, 10, 25))
        load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
        rid, chunks = restate_once(s, None)
        assert rid == 1 and len(chunks) >= 3
        results.append(restated_rows(s, rid))
    assert results[0] and results[0] == results[1]


def test_compiled_sql_returning_other_columns_than_its_table_keeps_dbt(tmp_path: Path) -> None:
    """The insert names the table's columns: SQL that gained or lost one goes back to dbt
    (which applies the model's on_schema_change) instead of being cut to fit."""
    from restate.engines.duckdb import DuckDBEngine

    engine = DuckDBEngine(tmp_path / "w.duckdb")
    engine.execute("create schema restate_9")
    engine.execute("create table restate_9.m (d date, a varchar, amount decimal(18, 2))")
    chunk = Chunk("c", date(2026, 1, 1), date(2026, 1, 31), 0, 1)
    base = f"select cast('{templates.START}' as date) as d, 'x' as a, 1.00 as amount"
    assert templates.same_columns(engine, "restate_9", chunk, [templates.ChunkTemplate("m", base)])
    for other in (base + ", 2 as extra", base.replace(", 1.00 as amount", "")):
        assert not templates.same_columns(engine, "restate_9", chunk, [templates.ChunkTemplate("m", other)])
    engine.close()


@pytest.mark.slow
def test_write_windows_group_chunks_and_equal_one_chunk_per_statement(tmp_path: Path) -> None:
    """One writer (DuckDB): consecutive chunks run as one statement per model, as many as
    the write window holds and never more than half of what is left; the rows, and each
    chunk's own count and cache key, are those of one statement per chunk."""
    from restate.actions.recompute import run_chunks_in_order

    runs = {}
    for window in (0.0, 30.0):
        s = make_settings(tmp_path / f"wh{window:g}", chunk_days=3, write_window_s=window)
        land(s, None, datetime(2026, 10, 25))
        load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
        plan = create_plan(s, PlanRequest("fct_revenue_daily+", *PERIOD, "refund bug", "ana"), notify=False)
        start_run(s, plan.restatement_id)
        ids = [c.chunk_id for c in plan.chunks]
        assert len(ids) >= 20
        out = run_chunks_in_order(s, plan.restatement_id, ids)
        assert [r["chunk_id"] for r in out] == ids and not any(r["reused"] for r in out)
        # Each chunk is its own checkpoint: run again, every one is reused.
        again = run_chunks_in_order(s, plan.restatement_id, ids)
        assert all(r["reused"] for r in again) and [r["rows_written"] for r in again] == [
            r["rows_written"] for r in out
        ]
        finish_run(s, plan.restatement_id)
        with connect(s) as e:
            chunks = e.query_dicts(
                "select chunk_id, rows_written, cache_key, started_at, status "
                "from restate_meta.restatement_partitions where restatement_id = ? order by period_start",
                [plan.restatement_id],
            )
        assert all(c["status"] == "done" for c in chunks)
        # Chunks of one window were started together.
        windows = [
            len([c for c in chunks if c["started_at"] == t])
            for t in sorted({c["started_at"] for c in chunks})
        ]
        runs[window] = (restated_rows(s, plan.restatement_id), chunks, windows)
    rows_one, chunks_one, windows_one = runs[0.0]
    rows_many, chunks_many, windows_many = runs[30.0]
    assert windows_one == [1] * len(chunks_one)
    assert len(windows_many) < len(chunks_many) and max(windows_many) > 1
    left, previous = len(chunks_many), 1
    for size in windows_many:  # never more than half of what is left, nor twice the last
        assert size <= max(1, left // 2) and size <= 2 * previous, windows_many
        left, previous = left - size, size
    assert rows_many == rows_one and rows_one
    assert [(c["chunk_id"], c["rows_written"], c["cache_key"]) for c in chunks_many] == [
        (c["chunk_id"], c["rows_written"], c["cache_key"]) for c in chunks_one
    ]


@pytest.mark.slow
def test_a_failed_write_window_fails_the_run_after_the_other_windows(
    buggy_prod: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A window that fails (here: made to raise) does not stop the others: every chunk
    outside it is done, and the run then fails with that window's error."""
    from restate.actions import recompute as steps

    s = buggy_prod
    plan = create_plan(s, PlanRequest("fct_revenue_daily+", *PERIOD, "refund bug", "ana"), notify=False)
    start_run(s, plan.restatement_id)
    ids = [c.chunk_id for c in plan.chunks]
    doomed = ids[2]
    original = steps.run_chunk_batch
    failed_windows: list[list[str]] = []

    def failing(ctx: object, rid: int, window: list[str], engine: object) -> list[dict[str, object]]:
        if doomed in window:
            failed_windows.append(window)
            raise RuntimeError("disk full")
        return original(ctx, rid, window, engine)  # type: ignore[arg-type]

    monkeypatch.setattr(steps, "run_chunk_batch", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        steps.run_chunks_in_order(s, plan.restatement_id, ids)
    with connect(s) as e:
        status = dict(
            e.query(
                "select chunk_id, status from restate_meta.restatement_partitions where restatement_id = ?",
                [plan.restatement_id],
            )
        )
    (window,) = failed_windows
    assert ids.index(doomed) < len(ids) - 1  # chunks came after it
    assert all(status[c] == "done" for c in ids if c not in window), status
    assert all(status[c] != "done" for c in window)
