"""Recompute one partition chunk of a restatement into its isolated schema."""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from restate.contract.spec import ModelContract
from restate.dbt.runner import DbtProject
from restate.engines.base import Engine
from restate.partitions.templates import run_templates, templates_for
from restate.plan.plans import Chunk, Plan
from restate.settings import Settings
from restate.state import changelog
from restate.state.clock import utc_now as _now
from restate.state.faults import crash_point
from restate.state.runner import this_process


class IsolationError(RuntimeError):
    """A restatement tried to write somewhere other than its own schema."""


@dataclass(frozen=True)
class ChunkResult:
    chunk_id: str
    rows_written: int
    duration_s: float
    dbt_s: float


def chunk_cache_key(plan: Plan, chunk_id: str) -> str:
    """(plan id, chunk range and account bucket, accounts, model code hash, source watermark):
    what makes a chunk's result reusable. It is stored on the chunk's own row in the warehouse
    (restatement_partitions), so only the warehouse that holds the result can reuse it."""
    code = hashlib.sha256(json.dumps(plan.code_version, sort_keys=True).encode()).hexdigest()
    chunk = next((c for c in plan.chunks if c.chunk_id == chunk_id), None)
    scope = [chunk.start.isoformat(), chunk.end.isoformat(), chunk.bucket, chunk.buckets] if chunk else None
    accounts = None if plan.accounts is None else sorted(plan.accounts)
    where = hashlib.sha256(json.dumps([scope, accounts]).encode()).hexdigest()
    return f"restate-{plan.restatement_id}-{chunk_id}-{where[:12]}-{code[:16]}-{plan.source_watermark}"


def scope_predicate(plan: Plan, contract: ModelContract, chunk: Chunk | None = None) -> tuple[str, list[Any]]:
    """SQL predicate (and params) on the model's date / entity columns for the plan or one chunk."""
    start, end = (chunk.start, chunk.end) if chunk else (plan.period_start, plan.period_end)
    sql = f"{contract.date_column} between ? and ?"
    params: list[Any] = [start, end]
    if plan.accounts and contract.entity_column:
        # One placeholder per entity: valid on DuckDB and Snowflake (no list binding there).
        sql += f" and {contract.entity_column} in ({', '.join('?' for _ in plan.accounts)})"
        params.extend(plan.accounts)
    return sql, params


def chunk_predicate(engine: Engine, plan: Plan, model: str, chunk: Chunk) -> tuple[str, list[Any]]:
    """The rows of one restated table that a chunk replaces (what partition_scope selects)."""
    contract = plan.contract(model)
    where, params = scope_predicate(plan, contract, chunk)
    if chunk.buckets > 1 and contract.entity_column:
        bucket = engine.account_bucket_sql(contract.entity_column, chunk.buckets)
        where += f" and {bucket} = {int(chunk.bucket)}"
    return where, params


def chunk_vars(settings: Settings, plan: Plan, chunk: Chunk) -> dict[str, Any]:
    return {
        **settings.dbt_vars(),
        "restate_schema": plan.restate_schema,
        "restate_chunk": chunk.dbt_var(plan.accounts, settings.entity_id_pattern),
    }


def mark_chunk(
    engine: Engine, settings: Settings, plan: Plan, chunk_id: str, status: str, **fields: Any
) -> None:
    sets = ["status = ?"]
    params: list[Any] = [status]
    for key, value in fields.items():
        sets.append(f"{key} = ?")
        params.append(value)
    engine.execute(
        f"update {settings.meta_schema}.restatement_partitions set {', '.join(sets)} "
        "where restatement_id = ? and chunk_id = ?",
        [*params, plan.restatement_id, chunk_id],
    )


def finished_chunk(engine: Engine, settings: Settings, plan: Plan, chunk_id: str) -> ChunkResult | None:
    """The stored result of a chunk already done under the same cache key (a resumed run)."""
    rows = engine.query(
        f"select rows_written, duration_s from {settings.meta_schema}.restatement_partitions "
        "where restatement_id = ? and chunk_id = ? and status = 'done' and cache_key = ?",
        [plan.restatement_id, chunk_id, chunk_cache_key(plan, chunk_id)],
    )
    return ChunkResult(chunk_id, int(rows[0][0]), float(rows[0][1]), 0.0) if rows else None


def set_status(engine: Engine, settings: Settings, restatement_id: int, status: str) -> None:
    engine.execute(
        f"update {settings.meta_schema}.restatements set status = ?, updated_at = ? where restatement_id = ?",
        [status, _now(), restatement_id],
    )


def recompute_chunk(
    settings: Settings, engine: Engine, dbt: DbtProject, plan: Plan, chunk: Chunk
) -> ChunkResult:
    """Run the plan's models for one chunk into restate_<id>, reading upstream from prod."""
    if plan.restate_schema in (settings.prod_schema, settings.meta_schema):
        raise IsolationError(f"refusing to recompute into {plan.restate_schema}")
    started = time.monotonic()
    engine.set_query_tag(restatement_id=plan.restatement_id, chunk=chunk.chunk_id, step="recompute")
    engine.execute(
        f"update {settings.meta_schema}.restatement_partitions set status = 'running', "
        "started_at = ?, runner = ?, attempts = attempts + 1 where restatement_id = ? and chunk_id = ?",
        [_now(), this_process(), plan.restatement_id, chunk.chunk_id],
    )
    vars = chunk_vars(settings, plan, chunk)
    dbt_s = 0.0
    try:
        # The first chunk builds the isolated tables through dbt; later ones run the SQL dbt
        # compiled once for the restatement (restate/partitions/templates.py), where it can.
        templates = templates_for(settings, engine, dbt, plan, chunk, vars)
        if templates is None:
            dbt_s = dbt.run_deferred(
                plan.models,
                vars=vars,
                query_tag=engine.query_tag_for(restatement_id=plan.restatement_id, chunk=chunk.chunk_id),
            ).elapsed_s
        else:
            run_templates(
                engine, plan, chunk, templates, lambda model: chunk_predicate(engine, plan, model, chunk)
            )
    except Exception:
        # Said as it is: `restate status` shows the chunk failed, not forever running.
        mark_chunk(engine, settings, plan, chunk.chunk_id, "failed", finished_at=_now())
        raise
    return chunk_done(settings, engine, plan, chunk, time.monotonic() - started, dbt_s)


def chunk_done(
    settings: Settings, engine: Engine, plan: Plan, chunk: Chunk, duration: float, dbt_s: float
) -> ChunkResult:
    """Mark a recomputed chunk done with the rows it holds and its cache key."""
    rows = 0
    for model in plan.models:
        where, params = chunk_predicate(engine, plan, model, chunk)
        rows += int(
            engine.scalar(f"select count(*) from {plan.restate_schema}.{model} where {where}", params) or 0
        )
    mark_chunk(
        engine,
        settings,
        plan,
        chunk.chunk_id,
        "done",
        cache_key=chunk_cache_key(plan, chunk.chunk_id),
        rows_written=rows,
        finished_at=_now(),
        duration_s=duration,
    )
    crash_point(settings, "chunk_done")
    return ChunkResult(chunk.chunk_id, rows, duration, dbt_s)


def contiguous(first: Chunk, second: Chunk) -> bool:
    """Whether two chunks cover one unbroken range of dates of the same entity bucket."""
    return (
        first.bucket == second.bucket
        and first.buckets == second.buckets
        and second.start == first.end + timedelta(days=1)
    )


def recompute_chunks(
    settings: Settings, engine: Engine, dbt: DbtProject, plan: Plan, chunks: list[Chunk]
) -> list[ChunkResult]:
    """Recompute consecutive chunks (contiguous dates, one bucket) as one statement per
    model where their SQL was compiled once for the restatement (templates), else one by
    one. Each chunk is marked done with its own rows and cache key, as recompute_chunk does:
    a resumed run reuses them chunk by chunk."""
    if len(chunks) == 1 or any(not contiguous(a, b) for a, b in itertools.pairwise(chunks)):
        return [recompute_chunk(settings, engine, dbt, plan, chunk) for chunk in chunks]
    if plan.restate_schema in (settings.prod_schema, settings.meta_schema):
        raise IsolationError(f"refusing to recompute into {plan.restate_schema}")
    span = Chunk(
        f"{chunks[0].chunk_id}..{chunks[-1].chunk_id}",
        chunks[0].start,
        chunks[-1].end,
        chunks[0].bucket,
        chunks[0].buckets,
    )
    templates = templates_for(settings, engine, dbt, plan, span, chunk_vars(settings, plan, span))
    if templates is None:
        return [recompute_chunk(settings, engine, dbt, plan, chunk) for chunk in chunks]
    started = time.monotonic()
    ids = [c.chunk_id for c in chunks]
    engine.set_query_tag(restatement_id=plan.restatement_id, chunk=span.chunk_id, step="recompute")
    engine.execute(
        f"update {settings.meta_schema}.restatement_partitions set status = 'running', "
        "started_at = ?, runner = ?, attempts = attempts + 1 "
        f"where restatement_id = ? and chunk_id in ({', '.join('?' for _ in ids)})",
        [_now(), this_process(), plan.restatement_id, *ids],
    )
    try:
        run_templates(engine, plan, span, templates, lambda model: chunk_predicate(engine, plan, model, span))
    except Exception:
        for chunk in chunks:
            mark_chunk(engine, settings, plan, chunk.chunk_id, "failed", finished_at=_now())
        raise
    duration = (time.monotonic() - started) / len(chunks)
    return [chunk_done(settings, engine, plan, chunk, duration, 0.0) for chunk in chunks]


# Statuses a run of chunks never changes: the restatement is live or withdrawn.
WITHDRAWN = ("cancelled", "promoted", "rolled_back")


def _refuse_withdrawn(engine: Engine, settings: Settings, restatement_id: int) -> None:
    status = engine.scalar(
        f"select status from {settings.meta_schema}.restatements where restatement_id = ?", [restatement_id]
    )
    if status in WITHDRAWN:
        raise ValueError(
            f"restatement {restatement_id} was {str(status).replace('_', ' ')} while its chunks ran; "
            "nothing more is recorded for it"
        )


def finish_recompute(settings: Settings, engine: Engine, dbt: DbtProject, plan: Plan) -> dict[str, Any]:
    """After all chunks: build the follow-on views in the isolated schema; record the run."""
    from restate.state.duties import run_by  # duties imports promotion, which imports this module

    engine.set_query_tag(restatement_id=plan.restatement_id, chunk=None, step="finish_recompute")
    _refuse_withdrawn(engine, settings, plan.restatement_id)  # before building anything more
    if plan.follow_views:
        dbt.run_deferred(
            plan.follow_views,
            vars={**settings.dbt_vars(), "restate_schema": plan.restate_schema},
            query_tag=engine.query_tag_for(restatement_id=plan.restatement_id, step="finish_recompute"),
        )
    stats = engine.query_dicts(
        f"""select count(*) as chunks, count_if(status = 'done') as done,
            coalesce(sum(rows_written), 0) as rows_written, coalesce(sum(duration_s), 0) as seconds,
            coalesce(sum(attempts), 0) as attempts
        from {settings.meta_schema}.restatement_partitions where restatement_id = ?""",
        [plan.restatement_id],
    )[0]
    if stats["done"] != stats["chunks"]:
        raise RuntimeError(f"{stats['chunks'] - stats['done']} chunks are not done")
    with engine.transaction():
        # A restatement cancelled, promoted or rolled back while its chunks ran stays so:
        # the write itself is conditional (a promotion committing in between cannot be
        # undone by it), and the status read after it says whether it applied.
        engine.execute(
            f"update {settings.meta_schema}.restatements set status = 'recomputed', updated_at = ? "
            f"where restatement_id = ? and status not in ({', '.join(repr(w) for w in WITHDRAWN)})",
            [_now(), plan.restatement_id],
        )
        _refuse_withdrawn(engine, settings, plan.restatement_id)
        changelog.append(
            engine,
            settings.meta_schema,
            "recomputed",
            {"schema": plan.restate_schema, **stats},
            restatement_id=plan.restatement_id,
            actor=run_by(settings),
        )
    crash_point(settings, "recomputed")
    return stats
