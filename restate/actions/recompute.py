"""Recompute a planned restatement into its isolated schema, chunk by chunk.

The steps are separate so a flow can run each chunk as its own task (or on a task
worker); `restate.actions.run.run_restatement` calls them in order.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import nullcontext
from typing import Any

from restate.context import Context
from restate.engines import Engine, open_engine, release_sessions
from restate.partitions.recompute import (
    ChunkResult,
    finish_recompute,
    finished_chunk,
    recompute_chunk,
    recompute_chunks,
    set_status,
)
from restate.plan.plans import Plan, load_plan
from restate.settings import Settings

Progress = Callable[[int, int, dict[str, Any]], None]  # (done, total, the chunk's result)
ChunkRunner = Callable[[int, list[str], "Progress | None"], list[dict[str, Any]]]


def start_run(ctx: Context | Settings, restatement_id: int) -> Plan:
    """Mark a planned restatement running; refuse one that is live, rolled back or cancelled."""
    from restate.state.meta import init_meta

    ctx = Context.of(ctx)
    settings = ctx.settings
    with ctx.session() as engine:
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


def run_chunk(
    ctx: Context | Settings, restatement_id: int, chunk_id: str, engine: Engine | None = None
) -> dict[str, Any]:
    """Recompute one chunk unless it is already done under the same cache key; on the
    given session (kept open by the caller), else on one of its own."""
    ctx = Context.of(ctx)
    settings = ctx.settings
    with nullcontext(engine) if engine is not None else ctx.session() as session:
        plan = load_plan(session, settings, restatement_id)
        done = finished_chunk(session, settings, plan, chunk_id)
        if done is not None:
            return {**done.__dict__, "reused": True}
        chunk = next(c for c in plan.chunks if c.chunk_id == chunk_id)
        result: ChunkResult = recompute_chunk(settings, session, ctx.dbt, plan, chunk)
        return {**result.__dict__, "reused": False}


def run_chunk_batch(
    ctx: Context | Settings, restatement_id: int, chunk_ids: list[str], engine: Engine
) -> list[dict[str, Any]]:
    """Recompute consecutive chunks together (one statement per model where the engine has
    one writer anyway), except those already done under the same cache key."""
    ctx = Context.of(ctx)
    settings = ctx.settings
    plan = load_plan(engine, settings, restatement_id)
    results: dict[str, dict[str, Any]] = {}
    todo = []
    for chunk_id in chunk_ids:
        done = finished_chunk(engine, settings, plan, chunk_id)
        if done is not None:
            results[chunk_id] = {**done.__dict__, "reused": True}
        else:
            todo.append(next(c for c in plan.chunks if c.chunk_id == chunk_id))
    if todo:
        for result in recompute_chunks(settings, engine, ctx.dbt, plan, todo):
            results[result.chunk_id] = {**result.__dict__, "reused": False}
    return [results[chunk_id] for chunk_id in chunk_ids]


def run_chunks_in_order(
    ctx: Context | Settings, restatement_id: int, chunk_ids: list[str], on_chunk: Progress | None = None
) -> list[dict[str, Any]]:
    """One chunk after another on one session (the engine has one writer), consecutive
    chunks grouped into write windows: as many as fit in settings.write_window_s at the pace
    of the last window, at most twice the last window and never more than half of what is
    left; the DuckDB file is handed back between two windows as soon as another process
    waits for it (a load). A failed window fails the run after the other windows ran."""
    from restate.dbt.distributed import let_waiting_writers_in, release_warehouse

    ctx = Context.of(ctx)
    settings = ctx.settings
    release_sessions()  # this thread's scope session: the windows run on their own
    results: list[dict[str, Any]] = []
    engine: Engine | None = None
    pace: float | None = None  # seconds per chunk through compiled SQL, last window
    size = 1
    failed: Exception | None = None
    at = 0
    try:
        while at < len(chunk_ids):
            left = len(chunk_ids) - at
            if pace is None or settings.write_window_s <= 0:
                size = 1
            else:
                fits = int(settings.write_window_s / max(pace, 1e-3))
                size = max(1, min(left // 2, 2 * size, fits))
            window = chunk_ids[at : at + size]
            at += len(window)
            if engine is None:
                engine = open_engine(settings)
            started = time.monotonic()
            try:
                done = run_chunk_batch(ctx, restatement_id, window, engine)
            except Exception as exc:
                failed = failed or exc  # its chunks are marked failed; the others still run
                pace = None
                engine.close()  # its session may be in any state: never reused
                engine = None
                continue
            except BaseException:
                engine.close()
                engine = None
                raise
            computed = [r for r in done if not r["reused"]]
            if computed and all(not r["dbt_s"] for r in computed):
                pace = (time.monotonic() - started) / len(computed)
            for result in done:
                results.append(result)
                if on_chunk:
                    on_chunk(len(results), len(chunk_ids), result)
            if others_wait(settings):
                engine.close()
                engine = None
                release_warehouse(settings)  # dbt's handle on the file too
                let_waiting_writers_in(settings)  # a load waiting for the file goes first
    finally:
        if engine is not None:
            engine.close()
        release_warehouse(settings)
    if failed is not None:
        raise failed
    return results


def run_chunks_in_threads(
    ctx: Context | Settings, restatement_id: int, chunk_ids: list[str], on_chunk: Progress | None = None
) -> list[dict[str, Any]]:
    """Recompute chunks in this process, as many at a time as the engine takes, in plan
    order; a failed chunk fails the run after the others. One at a time (DuckDB's one
    writer): run_chunks_in_order. Several (Snowflake): each thread keeps its warehouse
    session from one chunk to the next."""
    ctx = Context.of(ctx)
    settings = ctx.settings
    if settings.chunk_concurrency == 1:
        return run_chunks_in_order(ctx, restatement_id, chunk_ids, on_chunk)
    held = threading.local()
    opened: list[Engine] = []
    opened_lock = threading.Lock()

    def one(chunk_id: str) -> dict[str, Any]:
        engine: Engine | None = getattr(held, "engine", None)
        if engine is None:
            engine = held.engine = open_engine(settings)
            with opened_lock:
                opened.append(engine)
        try:
            return run_chunk(settings, restatement_id, chunk_id, engine=engine)
        except BaseException:
            held.engine = None  # its session may be in any state: never reused
            with opened_lock:
                opened.remove(engine)
            engine.close()
            raise

    release_sessions()  # the chunks run on their own threads' sessions
    results: dict[str, dict[str, Any]] = {}
    try:
        with ThreadPoolExecutor(max_workers=max(1, settings.chunk_concurrency)) as pool:
            futures = {pool.submit(one, chunk_id): chunk_id for chunk_id in chunk_ids}
            for future in as_completed(futures):
                results[futures[future]] = result = future.result()
                if on_chunk:
                    on_chunk(len(results), len(chunk_ids), result)
    finally:
        with opened_lock:
            left, opened[:] = list(opened), []
        for engine in left:  # the pool's threads are done with them
            engine.close()
    return [results[chunk_id] for chunk_id in chunk_ids]


def others_wait(settings: Settings) -> bool:
    """Whether another process waits for the warehouse now (DuckDB: one writer per file)."""
    if settings.engine != "duckdb":
        return False
    from restate.engines.duckdb import waiting_writers

    return bool(waiting_writers(settings.warehouse_path))


def finish_run(ctx: Context | Settings, restatement_id: int) -> dict[str, Any]:
    """After every chunk: the follow-on views in the isolated schema; the run recorded."""
    ctx = Context.of(ctx)
    with ctx.session() as engine:
        plan = load_plan(engine, ctx.settings, restatement_id)
        return finish_recompute(ctx.settings, engine, ctx.dbt, plan)


def recompute_stats(ctx: Context | Settings, restatement_id: int) -> dict[str, Any]:
    """What the recompute wrote, as finish_run reports it, without running anything."""
    ctx = Context.of(ctx)
    with ctx.session() as engine:
        return engine.query_dicts(
            f"""select count(*) as chunks, count_if(status = 'done') as done,
                coalesce(sum(rows_written), 0) as rows_written, coalesce(sum(duration_s), 0) as seconds,
                coalesce(sum(attempts), 0) as attempts
            from {ctx.settings.meta_schema}.restatement_partitions where restatement_id = ?""",
            [restatement_id],
        )[0]


def worker_identity() -> str:
    """host:pid of the process running a chunk (chunks may run on task workers)."""
    return f"{socket.gethostname()}:{os.getpid()}"
