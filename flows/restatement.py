"""Restatement flow: recompute a plan's partitions in isolation, validate and diff them."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.flow_runs import pause_flow_run
from prefect.futures import wait
from prefect.input import RunInput
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from restate import actions
from restate.dbt import distributed
from restate.dbt.runner import use_invoker
from restate.plan.plans import PlanRequest
from restate.settings import Settings, apply_process_env, get_settings


@task(cache_policy=NO_CACHE)
def plan_restatement(request: PlanRequest) -> int:
    return actions.create_plan(get_settings(), request).restatement_id


@task(
    cache_policy=NO_CACHE,
    persist_result=True,  # task workers (`.delay`) hand the result back through storage
    retries=1,
    retry_delay_seconds=5,
    task_run_name="chunk {chunk_id}",
)
def recompute_chunk(restatement_id: int, chunk_id: str) -> dict[str, Any]:
    # No Prefect result cache: reuse is decided by the chunk's own row in the warehouse
    # (status done under the same restate.partitions.recompute.chunk_cache_key), so a restored or
    # copied warehouse never trusts a result it does not hold (actions.run_chunk).
    # With RESTATE_CHUNK_EXECUTION=task_workers this runs in a `prefect task serve` process.
    settings = get_settings()
    apply_process_env(settings)
    try:
        # Chunks keep restate's in-process dbt runner: a task per node per chunk would cost
        # more than many chunks' SQL (benchmarks/prefect_dbt_bench.py).
        with use_invoker(None):
            result = actions.run_chunk(settings, restatement_id, chunk_id)
    finally:
        distributed.release_warehouse(settings)  # let the next writer process in
        distributed.let_waiting_writers_in(settings)  # a load waiting for the file goes first
    return {**result, "worker": actions.worker_identity()}


@task(
    cache_policy=NO_CACHE,
    persist_result=True,  # handed back to `restate run --on-worker` through storage
    task_run_name="restatement {restatement_id}",
)
def run_on_worker(restatement_id: int, warehouse: str | None = None) -> dict[str, Any]:
    """The whole run sequence (chunks, follow-on views, checks, diff) in a `restate worker`
    process, whose dbt and Soda are already warm (restate.actions.warm_up); the chunks run
    in its own threads. Resumes like any run: done chunks are reused. `warehouse` is the
    installation that queued it (Settings.warehouse_id): a worker of another refuses."""
    from prefect.runtime import task_run

    from restate.state.runner import decide, running_here

    settings = get_settings()
    apply_process_env(settings)
    if task_run.id and decide(run_ticket(settings, str(task_run.id)), "taken") != "taken":
        # Its CLI gave up waiting and withdrew it first; Prefect's task queue may still
        # deliver it to a worker started later, which must not run it unattended.
        raise ValueError(f"restatement {restatement_id}'s queued run was withdrawn; nothing was done")
    if warehouse is not None and warehouse != settings.warehouse_id:
        raise ValueError(
            f"this restate worker serves warehouse {settings.warehouse_id}, not {warehouse}: "
            "run a worker with the installation's settings (one Prefect server per installation)"
        )
    try:
        # `restate run --on-worker` waits on this marker: a worker gone ends its wait.
        with running_here(worker_marker(settings, restatement_id)), use_invoker(None):
            result = actions.run_restatement(settings, restatement_id)
    finally:
        distributed.release_warehouse(settings)  # let the next writer process in
        distributed.let_waiting_writers_in(settings)
    return {**result, "worker": actions.worker_identity()}


def worker_marker(settings: Settings, restatement_id: int) -> Path:
    """Names the `restate worker` process running a restatement (same host as the CLI)."""
    return settings.state_dir / "worker_runs" / f"restatement-{restatement_id}"


def run_ticket(settings: Settings, task_run_id: str) -> Path:
    """Decides, once, between the worker taking a queued `run_on_worker` task run and its
    CLI withdrawing it (restate.state.runner.decide; same host as the CLI)."""
    return settings.state_dir / "worker_runs" / f"ticket-{task_run_id}"


class Approval(RunInput):
    """The form a paused restatement shows in the Prefect UI: approve or reject, who, why."""

    decision: Literal["approve", "reject"] = Field(
        "approve", description="approve: promote the restated numbers; reject: withdraw the restatement"
    )
    approver: str = Field(min_length=1, description="your name as listed in RESTATE_APPROVERS")
    comment: str = Field(min_length=1, description="why (recorded in the audit log)")


@task(cache_policy=NO_CACHE)
def awaiting_approval(restatement_id: int) -> bool:
    return actions.awaiting_approval(get_settings(), restatement_id)


@task(cache_policy=NO_CACHE)
def record_approval(restatement_id: int, approver: str, comment: str) -> None:
    """The form's approver through the same gate as the CLI and Slack (raises when refused)."""
    from prefect.runtime import flow_run

    run_by = f"{approver.strip()} (prefect form, flow run {flow_run.id or '-'})"
    actions.approve(get_settings(), restatement_id, approver, comment, run_by=run_by)


@task(cache_policy=NO_CACHE)
def record_rejection(restatement_id: int, approver: str, comment: str) -> dict[str, Any]:
    """The form's rejection: the restatement is withdrawn, audited with the approver."""
    from prefect.runtime import flow_run

    run_by = f"{approver.strip()} (prefect form, flow run {flow_run.id or '-'})"
    return actions.reject(get_settings(), restatement_id, approver, comment, run_by=run_by)


@task(cache_policy=NO_CACHE)
def promote(restatement_id: int) -> dict[str, Any]:
    return actions.promote(get_settings(), restatement_id)


@flow(name="restatement", log_prints=True)
def restatement(
    restatement_id: int | None = None,
    selector: str | None = None,
    start: date | None = None,
    end: date | None = None,
    accounts: list[str] | None = None,
    reason: str | None = None,
    ticket: str | None = None,
    requested_by: str | None = None,
    await_approval: bool = False,
    promote_after_approval: bool = False,
) -> dict[str, Any]:
    """Restate history without touching production.

    1. Plan (unless an existing plan id is given): closure, chunks, exposures, estimate.
    2-5. restate.actions.run_restatement, with each chunk a task here: recompute every
       chunk into restate_<id> (reused when the warehouse's own chunk row is done under
       the same key: plan, chunk range and bucket, accounts, code hash, watermark, so a
       rerun resumes), build follow-on views, validate with the Soda contracts, diff
       as-reported vs restated; publish progress, chunk and diff artifacts.
    6. With await_approval, when the plan needs an approver: pause for the Approval
       form (decision, approver, comment): an approval is recorded through the same gate
       as the CLI and Slack; a rejection withdraws the restatement (audited) and ends the run.
    7. With promote_after_approval: promote through the gate (which tells the owners).
    Otherwise promotion stays a separate step (`restate promote ID --approved-by NAME`).

    Args:
        restatement_id: an existing plan to run (skips planning).
        selector: dbt selector of the models to restate, e.g. fct_sales_daily+
            (default: RESTATE_DEFAULT_SELECTOR).
        start: first partition date to restate.
        end: last partition date to restate.
        accounts: entity ids to restate, of the models' entity column (default all).
        reason: why; recorded in the changelog and the notices.
        ticket: ticket reference, e.g. FIN-142.
        requested_by: who asks for the restatement.
        await_approval: pause for an approver when the plan requires one.
        promote_after_approval: promote once validated (and approved when required).
    """
    settings = get_settings()
    apply_process_env(settings)
    logger = get_run_logger()
    if restatement_id is None:
        from restate.contract.project import default_selector

        selector = selector or default_selector(settings)
        if not (selector and start and end and reason and requested_by):
            raise ValueError(
                "a new restatement needs selector (or RESTATE_DEFAULT_SELECTOR), start, end, "
                "reason and requested_by"
            )
        request = PlanRequest(selector, start, end, reason, requested_by, ticket, accounts)
        restatement_id = plan_restatement(request)
    progress_id = create_progress_artifact(
        progress=0.0,
        key=f"restatement-{restatement_id}-progress",
        description=f"restatement {restatement_id}: chunks recomputed",
    )

    def chunks_as_tasks(
        rid: int, chunk_ids: list[str], on_chunk: actions.Progress | None
    ) -> list[dict[str, Any]]:
        # threads: the flow's task runner; task_workers: queued for `prefect task serve`.
        submit = recompute_chunk.submit if settings.chunk_execution == "threads" else recompute_chunk.delay
        futures = [submit(rid, chunk_id) for chunk_id in chunk_ids]
        results = []
        for future in futures:
            results.append(future.result())
            update_progress_artifact(progress_id, progress=100.0 * len(results) / len(futures))  # type: ignore[arg-type]
        wait(futures)
        return results

    # restate's own dbt runner throughout (chunks and follow-on views): prefect-dbt's runner
    # costs 0.5 s more per call warm and 2.9 s more on a process's first call
    # (make bench-prefect-dbt): more than a one-day restatement's whole budget.
    ran = actions.run_restatement(settings, restatement_id, run_chunks=chunks_as_tasks)
    create_table_artifact(
        key=f"restatement-{restatement_id}-chunks",
        table=[
            {k: str(c.get(k)) for k in ("chunk_id", "rows_written", "reused", "worker")}
            for c in ran["chunks"]
        ],
        description=f"restatement {restatement_id}: chunks and the process that ran each",
    )
    if ran["diff"]:
        create_table_artifact(
            key=f"restatement-{restatement_id}-diff",
            table=[
                {k: (f"{v:+.2f}%" if k == "pct" and v is not None else str(v)) for k, v in row.items()}
                for row in ran["diff"]
            ],
            description=f"restatement {restatement_id}: as-reported vs restated per month",
        )
    logger.info("restatement %s: %s chunks (%s reused)", restatement_id, len(ran["chunks"]), ran["reused"])
    out: dict[str, Any] = {
        "restatement_id": restatement_id,
        "recompute": ran["recompute"],
        "reused": ran["reused"],
        "validation": ran["validation"],
    }
    if await_approval and awaiting_approval(restatement_id):
        logger.info("restatement %s needs an approver: resume this run with the form", restatement_id)
        approval: Approval | None = None
        while approval is None:
            submitted = pause_flow_run(
                wait_for_input=Approval,
                timeout=settings.approval_timeout_s,
                poll_interval=settings.approval_poll_s,
            )
            try:
                if submitted.decision == "reject":
                    record_rejection(restatement_id, submitted.approver, submitted.comment)
                else:
                    record_approval(restatement_id, submitted.approver, submitted.comment)
                approval = submitted
            except ValueError as exc:  # duties.DutyError included: the gate refused this person
                logger.warning("restatement %s: %s", restatement_id, exc)
                out.setdefault("refused", []).append({"by": submitted.approver, "reason": str(exc)})
                if not awaiting_approval(restatement_id):  # decided elsewhere meanwhile (CLI, Slack)
                    out["decided_elsewhere"] = str(exc)
                    return out
                logger.warning("restatement %s: resume again with an approver's form", restatement_id)
        if approval.decision == "reject":
            logger.info("restatement %s rejected by %s", restatement_id, approval.approver)
            out["rejected_by"] = approval.approver
            return out
        out["approved_by"] = approval.approver
    if promote_after_approval:
        # Promotion announces itself (only when the switch happened now).
        out["promotion"] = promote(restatement_id)
    return out


def with_concurrency(concurrency: int) -> Any:
    """The restatement flow with a task runner sized for the engine."""
    return restatement.with_options(task_runner=ThreadPoolTaskRunner(max_workers=concurrency))  # type: ignore[arg-type]
