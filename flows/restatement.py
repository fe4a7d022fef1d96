"""Restatement flow: recompute a plan's partitions in isolation, validate and diff them."""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from restate import lifecycle
from restate.planning import PlanRequest
from restate.recompute import chunk_cache_key
from restate.settings import apply_process_env, get_settings


@task(cache_policy=NO_CACHE)
def plan_restatement(request: PlanRequest) -> int:
    return lifecycle.create_plan(get_settings(), request).restatement_id


@task(
    cache_key_fn=lambda ctx, params: params["cache_key"],
    persist_result=True,
    retries=1,
    retry_delay_seconds=5,
    task_run_name="chunk {chunk_id}",
)
def recompute_chunk(restatement_id: int, chunk_id: str, cache_key: str) -> dict[str, Any]:
    # cache_key = (plan id, chunk, model code hash, source watermark); see chunk_cache_key.
    return lifecycle.run_chunk(get_settings(), restatement_id, chunk_id)


@task(cache_policy=NO_CACHE)
def finish_recompute(restatement_id: int) -> dict[str, Any]:
    return lifecycle.finish_run(get_settings(), restatement_id)


@task(cache_policy=NO_CACHE)
def validate(restatement_id: int) -> dict[str, Any] | None:
    return lifecycle.run_validation_step(get_settings(), restatement_id)


@task(cache_policy=NO_CACHE)
def diff(restatement_id: int) -> list[dict[str, Any]]:
    lifecycle.run_diff(get_settings(), restatement_id)
    return lifecycle.monthly_diff(get_settings(), restatement_id)


@flow(name="restatement", log_prints=True)
def restatement(
    restatement_id: int | None = None,
    selector: str = "fct_revenue_daily+",
    start: date | None = None,
    end: date | None = None,
    accounts: list[str] | None = None,
    reason: str | None = None,
    ticket: str | None = None,
    requested_by: str | None = None,
) -> dict[str, Any]:
    """Restate history without touching production.

    1. Plan (unless an existing plan id is given): closure, chunks, exposures, estimate.
    2. Recompute every chunk into restate_<id>, concurrently per engine; results are
       cached on (plan, chunk, code hash, watermark), so a rerun resumes.
    3. Build follow-on views; mark the run recomputed.
    4. Validate with the Soda contracts and store the evidence.
    5. Diff as-reported vs restated per partition and metric; publish a table artifact.
    Promotion is a separate, gated step (`restate promote` / the rollback flow's twin).
    """
    settings = get_settings()
    apply_process_env(settings)
    logger = get_run_logger()
    if restatement_id is None:
        if not (start and end and reason and requested_by):
            raise ValueError("a new restatement needs start, end, reason and requested_by")
        request = PlanRequest(selector, start, end, reason, requested_by, ticket, accounts)
        restatement_id = plan_restatement(request)
    plan = lifecycle.start_run(settings, restatement_id)
    progress_id = create_progress_artifact(
        progress=0.0,
        key=f"restatement-{restatement_id}-progress",
        description=f"restatement {restatement_id}: chunks recomputed",
    )
    futures = [
        recompute_chunk.submit(restatement_id, c.chunk_id, chunk_cache_key(plan, c.chunk_id))
        for c in plan.chunks
    ]
    done = 0
    reused = 0
    for future in futures:
        result = future.result()
        done += 1
        reused += int(bool(result.get("reused")))
        update_progress_artifact(progress_id, progress=100.0 * done / len(futures))  # type: ignore[arg-type]
    wait(futures)
    stats = finish_recompute(restatement_id)
    validation = validate(restatement_id)
    monthly = diff(restatement_id)
    if monthly:
        create_table_artifact(
            key=f"restatement-{restatement_id}-diff",
            table=[{k: str(v) for k, v in row.items()} for row in monthly],
            description=f"restatement {restatement_id}: as-reported vs restated per month",
        )
    logger.info("restatement %s: %s chunks (%s reused)", restatement_id, done, reused)
    return {"restatement_id": restatement_id, "recompute": stats, "validation": validation}


def with_concurrency(concurrency: int) -> Any:
    """The restatement flow with a task runner sized for the engine."""
    return restatement.with_options(task_runner=ThreadPoolTaskRunner(max_workers=concurrency))  # type: ignore[arg-type]
