"""The restatement sequence the CLI, the flow and the demo share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from restate.actions.diff import monthly_diff, run_diff
from restate.actions.recompute import (
    ChunkRunner,
    Progress,
    finish_run,
    recompute_stats,
    run_chunks_in_threads,
    start_run,
)
from restate.actions.validate import kept_validation, run_validation_step
from restate.context import Context
from restate.settings import Settings, apply_process_env


def run_restatement(
    ctx: Context | Settings,
    restatement_id: int,
    run_chunks: ChunkRunner | None = None,
    on_chunk: Progress | None = None,
    on_step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The restatement sequence the CLI, the flow and the demo share: recompute every chunk
    (reusing the ones the warehouse holds as done under the same key), follow-on views,
    validation, diff. `run_chunks` decides where chunks run (default: threads here; the
    flow passes Prefect tasks). Promotion stays a separate, gated step."""
    ctx = Context.of(ctx)
    step = on_step or (lambda _: None)
    apply_process_env(ctx.settings)
    plan = start_run(ctx, restatement_id)
    chunk_ids = [c.chunk_id for c in plan.chunks]
    step(f"recomputing {len(chunk_ids)} chunks")
    if run_chunks is None:
        chunks = run_chunks_in_threads(ctx, restatement_id, chunk_ids, on_chunk)
    else:
        chunks = run_chunks(restatement_id, chunk_ids, on_chunk)
    # Resumed after the checks had run on these very chunks: keep their result.
    kept = kept_validation(ctx, restatement_id) if all(c.get("reused") for c in chunks) else None
    if kept is None:
        step("building follow-on views")
        stats = finish_run(ctx, restatement_id)
        _let_loads_in(ctx)
        step("validating (Soda contracts)")
        validation = run_validation_step(ctx, restatement_id)
    else:
        step(kept["report"])
        stats = recompute_stats(ctx, restatement_id)
        validation = kept
    _let_loads_in(ctx)
    step("diffing against production")
    run_diff(ctx, restatement_id)
    return {
        "restatement_id": restatement_id,
        "recompute": stats,
        "chunks": chunks,
        "reused": sum(bool(c.get("reused")) for c in chunks),
        "validation": validation,
        "diff": monthly_diff(ctx, restatement_id),
    }


def _let_loads_in(ctx: Context) -> None:
    """Between two steps: when a process waits for the warehouse (a 15-minute load on
    DuckDB's single-writer file), hand it back and let that process go first."""
    from restate.dbt.distributed import let_waiting_writers_in, release_warehouse
    from restate.engines import release_sessions
    from restate.engines.duckdb import waiting_writers

    if ctx.settings.engine != "duckdb" or not waiting_writers(ctx.settings.warehouse_path):
        return  # nobody waits: keep the session
    release_sessions()
    release_warehouse(ctx.settings)
    let_waiting_writers_in(ctx.settings)
