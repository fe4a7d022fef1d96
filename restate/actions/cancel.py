"""Withdraw a restatement that is not live: cancelled by anyone who runs the tool, or
rejected by an approver."""

from __future__ import annotations

from typing import Any

from restate.context import Context
from restate.settings import Settings


def cancel(ctx: Context | Settings, restatement_id: int, reason: str) -> dict[str, Any]:
    """Withdraw a restatement that is not live: it can no longer be run, validated or
    promoted. Under the production write lock (a promotion in flight finishes first) and
    audited with who ran it. Its schema restate_<id> stays as evidence."""
    from restate.state.duties import run_by

    if not reason.strip():
        raise ValueError("a cancellation needs a reason (--reason)")
    ctx = Context.of(ctx)
    return _withdraw(ctx, restatement_id, "cancelled", {"reason": reason.strip()}, run_by(ctx.settings))


def reject(
    ctx: Context | Settings, restatement_id: int, approver: str, comment: str, run_by: str | None = None
) -> dict[str, Any]:
    """An approver turns the restatement down: it is withdrawn as by `cancel` (never
    promoted, its schema kept as evidence) and the decision is audited as `rejected` with
    the approver and the comment. Only a listed approver may reject (duties.DutyError)."""
    from restate.state.duties import require_listed
    from restate.state.duties import run_by as who_runs

    if not comment.strip():
        raise ValueError("a rejection needs a comment saying why")
    ctx = Context.of(ctx)
    name = require_listed(ctx.settings, approver.strip())
    payload = {"comment": comment.strip(), "run_by": run_by or who_runs(ctx.settings)}
    return _withdraw(ctx, restatement_id, "rejected", payload, name)


def _withdraw(
    ctx: Context, restatement_id: int, event: str, payload: dict[str, Any], actor: str
) -> dict[str, Any]:
    from restate.partitions.recompute import set_status
    from restate.state import changelog, locks

    settings = ctx.settings
    meta = settings.meta_schema
    verb = "rejected" if event == "rejected" else "cancelled"
    with ctx.session() as engine:
        holder = locks.new_holder(f"{event}:{restatement_id}")
        with locks.held(engine, meta, holder):
            status = engine.scalar(
                f"select status from {meta}.restatements where restatement_id = ?", [restatement_id]
            )
            if status is None:
                raise ValueError(f"no restatement with id {restatement_id} (see `restate status`)")
            if status in ("promoted", "rolled_back") and event == "rejected":
                raise ValueError(f"restatement {restatement_id} is already {status}: too late to reject it")
            if status == "promoted":
                raise ValueError(
                    f"restatement {restatement_id} is promoted (live in production): roll it back "
                    f"with `restate rollback {restatement_id} --by NAME` first"
                )
            if status == "cancelled":
                raise ValueError(f"restatement {restatement_id} is already withdrawn (cancelled or rejected)")
            with engine.transaction():
                locks.assert_held(engine, meta, holder)
                set_status(engine, settings, restatement_id, "cancelled")
                version = changelog.append(
                    engine,
                    meta,
                    event,
                    {**payload, "status_before": status},
                    restatement_id=restatement_id,
                    actor=actor,
                )
    return {
        "restatement_id": restatement_id,
        "status": "cancelled",
        "decision": verb,
        "by": actor,
        "was": status,
        "changelog_version": version,
    }
