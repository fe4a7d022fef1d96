"""Lifecycle steps as plain functions (the flows wrap them as tasks, the CLI calls them)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from restate.dbt_runner import DbtProject
from restate.engines import connect, release_sessions
from restate.events import publish
from restate.faults import crash_point
from restate.planning import Plan, PlanRequest, build_plan, load_plan, store_plan
from restate.recompute import ChunkResult, finish_recompute, finished_chunk, recompute_chunk, set_status
from restate.settings import Settings, apply_process_env

log = logging.getLogger(__name__)


def announce(
    settings: Settings,
    restatement_id: int,
    event: str,
    *,
    detail: str | None = None,
    manifest: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Tell the owners of the affected dashboards (through the notifier in use, see
    restate.events), after the step has committed; never raises."""
    return publish(settings, restatement_id, event, detail=detail, manifest=manifest)


def rolled_back_ids(result: dict[str, Any]) -> list[int]:
    """The restatements a rollback result restored: its own, and each one it cascaded to
    (every one of them gets its own rolled_back notice)."""
    ids = [int(result["restatement_id"])] if result.get("status") == "rolled_back" else []
    for cascaded in result.get("cascaded") or []:
        ids += rolled_back_ids(cascaded)
    return ids


def create_plan(settings: Settings, request: PlanRequest, notify: bool = True) -> Plan:
    """Plan and store a restatement (the production manifest is refreshed first); announce it."""
    from restate.meta import init_meta

    dbt = DbtProject(settings)
    manifest = dbt.manifest()
    with connect(settings) as engine:
        init_meta(engine, settings.meta_schema)
        plan = build_plan(engine, settings, manifest, request)
        store_plan(engine, settings, plan)
    crash_point(settings, "plan_stored")
    if notify:
        announce(settings, plan.restatement_id, "restatement_planned", manifest=manifest)
    return plan


def refuse_cancelled(engine: Any, settings: Settings, restatement_id: int) -> None:
    """A cancelled restatement is never run, validated, forced or promoted again."""
    status = engine.scalar(
        f"select status from {settings.meta_schema}.restatements where restatement_id = ?", [restatement_id]
    )
    if status == "cancelled":
        raise ValueError(f"restatement {restatement_id} is cancelled; plan a new one")


def get_plan(settings: Settings, restatement_id: int) -> Plan:
    with connect(settings) as engine:
        return load_plan(engine, settings, restatement_id)


def start_run(settings: Settings, restatement_id: int) -> Plan:
    from restate.meta import init_meta

    with connect(settings) as engine:
        init_meta(engine, settings.meta_schema)  # a warehouse from an earlier version gains new columns
        plan = load_plan(engine, settings, restatement_id)
        status = engine.scalar(
            f"select status from {settings.meta_schema}.restatements where restatement_id = ?",
            [restatement_id],
        )
        if status in ("promoted", "rolled_back", "cancelled"):
            raise ValueError(f"restatement {restatement_id} is {status.replace('_', ' ')}; plan a new one")
        if status == "planned":
            set_status(engine, settings, restatement_id, "running")
    return plan


def run_chunk(settings: Settings, restatement_id: int, chunk_id: str) -> dict[str, Any]:
    """Recompute one chunk unless it is already done under the same cache key."""
    with connect(settings) as engine:
        plan = load_plan(engine, settings, restatement_id)
        done = finished_chunk(engine, settings, plan, chunk_id)
        if done is not None:
            return {**done.__dict__, "reused": True}
        chunk = next(c for c in plan.chunks if c.chunk_id == chunk_id)
        result: ChunkResult = recompute_chunk(settings, engine, DbtProject(settings), plan, chunk)
        return {**result.__dict__, "reused": False}


ChunkRunner = Callable[[int, list[str], "Progress | None"], list[dict[str, Any]]]
Progress = Callable[[int, int, dict[str, Any]], None]  # (done, total, the chunk's result)


def run_chunks_in_threads(
    settings: Settings, restatement_id: int, chunk_ids: list[str], on_chunk: Progress | None = None
) -> list[dict[str, Any]]:
    """Recompute chunks in this process, as many at a time as the engine takes (one
    writer on DuckDB), in plan order; a failed chunk fails the run after the others."""
    from restate.distributed import release_warehouse

    def one(chunk_id: str) -> dict[str, Any]:
        try:
            return run_chunk(settings, restatement_id, chunk_id)
        finally:
            release_warehouse(settings)  # dbt's handle on the file: the next writer reopens it

    # The chunks run on their own threads' sessions; hand this thread's back meanwhile so
    # another process (a 15-minute load) can write between chunks on DuckDB.
    release_sessions()
    results: dict[str, dict[str, Any]] = {}
    with ThreadPoolExecutor(max_workers=max(1, settings.chunk_concurrency)) as pool:
        futures = {pool.submit(one, chunk_id): chunk_id for chunk_id in chunk_ids}
        for future in as_completed(futures):
            results[futures[future]] = result = future.result()
            if on_chunk:
                on_chunk(len(results), len(chunk_ids), result)
    return [results[chunk_id] for chunk_id in chunk_ids]


def run_restatement(
    settings: Settings,
    restatement_id: int,
    run_chunks: ChunkRunner | None = None,
    on_chunk: Progress | None = None,
    on_step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The restatement sequence the CLI, the flow and the demo share: recompute every chunk
    (reusing the ones the warehouse holds as done under the same key), follow-on views,
    validation, diff. `run_chunks` decides where chunks run (default: threads here; the
    flow passes Prefect tasks). Promotion stays a separate, gated step."""
    step = on_step or (lambda _: None)
    apply_process_env(settings)
    plan = start_run(settings, restatement_id)
    chunk_ids = [c.chunk_id for c in plan.chunks]
    step(f"recomputing {len(chunk_ids)} chunks")
    if run_chunks is None:
        chunks = run_chunks_in_threads(settings, restatement_id, chunk_ids, on_chunk)
    else:
        chunks = run_chunks(restatement_id, chunk_ids, on_chunk)
    step("building follow-on views")
    stats = finish_run(settings, restatement_id)
    step("validating (Soda contracts)")
    validation = run_validation_step(settings, restatement_id)
    step("diffing against production")
    run_diff(settings, restatement_id)
    return {
        "restatement_id": restatement_id,
        "recompute": stats,
        "chunks": chunks,
        "reused": sum(bool(c.get("reused")) for c in chunks),
        "validation": validation,
        "diff": monthly_diff(settings, restatement_id),
    }


def finish_run(settings: Settings, restatement_id: int) -> dict[str, Any]:
    with connect(settings) as engine:
        plan = load_plan(engine, settings, restatement_id)
        return finish_recompute(settings, engine, DbtProject(settings), plan)


def run_diff(settings: Settings, restatement_id: int) -> int:
    from restate.diff import compute_diff

    with connect(settings) as engine:
        return compute_diff(engine, settings, load_plan(engine, settings, restatement_id))


def monthly_diff(settings: Settings, restatement_id: int) -> list[dict[str, Any]]:
    from restate.diff import diff_by_month

    with connect(settings) as engine:
        return diff_by_month(engine, settings, restatement_id)


def run_validation_step(settings: Settings, restatement_id: int) -> dict[str, Any]:
    """Run the Soda contracts on restate_<id> for the plan's period and store the evidence."""
    import json

    from restate import changelog
    from restate.duties import run_by
    from restate.recompute import set_status
    from restate.validation import format_report, run_validation, store_validation

    with connect(settings) as engine:
        plan = load_plan(engine, settings, restatement_id)
        refuse_cancelled(engine, settings, restatement_id)
        result = run_validation(
            settings, engine, plan.restate_schema, plan.period_start, plan.period_end, restatement_id
        )
        validation_id = store_validation(engine, settings, result)
        evidence = json.loads(
            engine.scalar(
                f"select result_json from {settings.meta_schema}.validations where validation_id = ?",
                [validation_id],
            )
        )
        with engine.transaction():
            set_status(
                engine, settings, restatement_id, "validated" if result.passed else "validation_failed"
            )
            changelog.append(
                engine,
                settings.meta_schema,
                "validated" if result.passed else "validation_failed",
                {"validation_id": validation_id, "evidence": evidence},
                restatement_id=restatement_id,
                actor=run_by(settings),
            )
        crash_point(settings, "validated")
        report = format_report(result)
        approved = engine.scalar(
            f"select approved_by from {settings.meta_schema}.restatements where restatement_id = ?",
            [restatement_id],
        )
    if not result.passed:
        announce(settings, restatement_id, "validation_failed", detail=report)
    elif plan.requires_approval and not approved:
        announce(
            settings,
            restatement_id,
            "approval_needed",
            detail=(
                f"Validation passed. Approve with `restate promote {restatement_id} --approved-by NAME` "
                f"or `/restatement approve {restatement_id}` in Slack."
            ),
        )
    return {"validation_id": validation_id, "passed": result.passed, "report": report}


def force_validation(
    settings: Settings, restatement_id: int, approver: str, reason: str, run_by: str | None = None
) -> None:
    """Override a failed validation: needs a listed approver who is not the requester, and a
    reason; audited with who ran it. Approval by another approver is then required."""
    from restate import changelog, duties

    with connect(settings) as engine:
        refuse_cancelled(engine, settings, restatement_id)
        who = duties.load(engine, settings, restatement_id)
        if who.validation_id is None:
            raise ValueError(f"restatement {restatement_id} has no validation to override")
        if who.validation_passed:
            raise ValueError(f"restatement {restatement_id} passed validation; there is nothing to force")
        name = duties.check_forcer(settings, who, approver)
        with engine.transaction():
            engine.execute(
                f"update {settings.meta_schema}.validations set forced_by = ?, force_reason = ? "
                "where validation_id = ?",
                [name, reason, who.validation_id],
            )
            changelog.append(
                engine,
                settings.meta_schema,
                "validation_forced",
                {
                    "validation_id": who.validation_id,
                    "reason": reason,
                    "run_by": run_by or duties.run_by(settings),
                },
                restatement_id=restatement_id,
                actor=name,
            )
        approved = who.approved_by
    if not approved:
        announce(
            settings,
            restatement_id,
            "approval_needed",
            detail=(
                f"Validation was forced by {name}: {reason}. Another approver must approve: "
                f"`restate promote {restatement_id} --approved-by NAME` or "
                f"`/restatement approve {restatement_id}` in Slack."
            ),
        )
