"""One place for restatement state: used by the CLI and the Slack command."""

from __future__ import annotations

from typing import Any

from restate.engines.base import Engine
from restate.partitions.promotion import record_approval
from restate.settings import Settings
from restate.state.duties import approval_reasons
from restate.state.duties import load as load_duties
from restate.validation.diff import diff_by_month

__all__ = ["approve", "diff_by_month", "list_restatements", "restatement_status"]


def restatement_status(engine: Engine, settings: Settings, restatement_id: int) -> dict[str, Any] | None:
    """State of one restatement: lifecycle status, chunk progress, who and why."""
    meta = settings.meta_schema
    rows = engine.query_dicts(
        f"""
        select r.restatement_id, r.status, r.models, r.period_start, r.period_end, r.accounts,
            r.reason, r.ticket, r.requested_by, r.approved_by, r.requires_approval,
            r.source_watermark, r.restate_schema, r.created_at, r.updated_at,
            count(p.chunk_id) as chunks_total,
            count(p.chunk_id) filter (where p.status = 'done') as chunks_done,
            count(p.chunk_id) filter (where p.status = 'running') as chunks_running,
            count(p.chunk_id) filter (where p.status = 'failed') as chunks_failed
        from {meta}.restatements r
        left join {meta}.restatement_partitions p using (restatement_id)
        where r.restatement_id = ?
        group by all
        """,
        [restatement_id],
    )
    if not rows:
        return None
    row = rows[0]
    row["models"] = row["models"].split(",")
    from restate.state.duties import approval_still_counts

    if row["approved_by"] and not approval_still_counts(engine, meta, restatement_id):
        row["approved_by"] = None  # given before a rollback or forced validation
    validation = engine.query_dicts(
        f"select passed, forced_by, checked_at from {meta}.validations "
        "where restatement_id = ? order by checked_at desc limit 1",
        [restatement_id],
    )
    row["validation"] = validation[0] if validation else None
    row.update(_running_chunks(engine, meta, restatement_id) if row["chunks_running"] else {})
    row["approval_reasons"] = approval_reasons(settings, load_duties(engine, settings, restatement_id))
    row["phase"] = _phase(row)
    return row


def _running_chunks(engine: Engine, meta: str, restatement_id: int) -> dict[str, Any]:
    """Chunks marked running whose process is gone (crashed, killed) are interrupted."""
    from restate.state.runner import is_alive

    runners = [
        r[0]
        for r in engine.query(
            f"select runner from {meta}.restatement_partitions "
            "where restatement_id = ? and status = 'running'",
            [restatement_id],
        )
    ]
    alive = [is_alive(r) for r in runners]
    return {
        "chunks_running": sum(a is not False for a in alive),
        "chunks_interrupted": sum(a is False for a in alive),
        "runners": sorted({r for r, a in zip(runners, alive, strict=True) if r and a is not False}),
    }


def _phase(row: dict[str, Any]) -> str:
    """Human-readable phase, e.g. 'running 3/14 chunks' or 'awaiting approval'."""
    status = row["status"]
    if status in ("planned", "running") and row["chunks_done"] < row["chunks_total"]:
        progress = f"{row['chunks_done']}/{row['chunks_total']} chunks"
        rid = row["restatement_id"]
        if row["chunks_running"]:
            return f"running {progress}"
        if row.get("chunks_interrupted") or row.get("chunks_failed"):
            what = "interrupted" if row.get("chunks_interrupted") else "failed"
            return f"{what} at {progress} (resume: restate run {rid})"
        if row["chunks_done"]:
            return f"stopped at {progress} (resume: restate run {rid})"
        return "planned"
    v = row["validation"]
    if status in ("recomputed", "validated", "validation_failed") and v is not None:
        if not v["passed"] and not v["forced_by"]:
            return "validation failed"
        if row["approval_reasons"] and not row["approved_by"]:
            return "awaiting approval"
        return "validated"
    if status == "recomputed":
        return "recomputed, not validated"
    return str(status).replace("_", " ")


def list_restatements(engine: Engine, settings: Settings, limit: int = 20) -> list[dict[str, Any]]:
    ids = engine.query(
        f"select restatement_id from {settings.meta_schema}.restatements "
        "order by restatement_id desc limit ?",
        [limit],
    )
    out = []
    for (rid,) in ids:
        status = restatement_status(engine, settings, int(rid))
        if status is not None:
            out.append(status)
    return out


def approve(
    engine: Engine,
    settings: Settings,
    restatement_id: int,
    approver: str,
    comment: str | None,
    run_by: str | None = None,
) -> None:
    """Record an approval; raises ValueError when the restatement cannot be approved
    (restate.state.duties.DutyError, a ValueError, when a segregation-of-duties rule refuses it)."""
    status = restatement_status(engine, settings, restatement_id)
    if status is None:
        raise ValueError(f"no restatement with id {restatement_id}")
    if status["status"] in ("promoted", "rolled_back"):
        raise ValueError(f"restatement {restatement_id} is already {status['status']}")
    if status["status"] == "cancelled":
        raise ValueError(
            f"restatement {restatement_id} was withdrawn (cancelled or rejected); plan a new one"
        )
    if status["approved_by"]:
        raise ValueError(f"restatement {restatement_id} was already approved by {status['approved_by']}")
    record_approval(engine, settings, restatement_id, approver, comment, run_by=run_by)
