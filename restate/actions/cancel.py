"""Withdraw a restatement that is not live."""

from __future__ import annotations

from typing import Any

from restate.context import Context
from restate.settings import Settings


def cancel(ctx: Context | Settings, restatement_id: int, reason: str) -> dict[str, Any]:
    """Withdraw a restatement that is not live: it can no longer be run, validated or
    promoted. Under the production write lock (a promotion in flight finishes first) and
    audited with who ran it. Its schema restate_<id> stays as evidence."""
    from restate.partitions.recompute import set_status
    from restate.state import changelog, locks
    from restate.state.duties import run_by

    if not reason.strip():
        raise ValueError("a cancellation needs a reason (--reason)")
    ctx = Context.of(ctx)
    settings = ctx.settings
    meta = settings.meta_schema
    with ctx.session() as engine:
        holder = locks.new_holder(f"cancel:{restatement_id}")
        with locks.held(engine, meta, holder):
            status = engine.scalar(
                f"select status from {meta}.restatements where restatement_id = ?", [restatement_id]
            )
            if status is None:
                raise ValueError(f"no restatement with id {restatement_id} (see `restate status`)")
            if status == "promoted":
                raise ValueError(
                    f"restatement {restatement_id} is promoted (live in production): roll it back "
                    f"with `restate rollback {restatement_id} --by NAME` first"
                )
            if status == "cancelled":
                raise ValueError(f"restatement {restatement_id} is already cancelled")
            with engine.transaction():
                locks.assert_held(engine, meta, holder)
                set_status(engine, settings, restatement_id, "cancelled")
                version = changelog.append(
                    engine,
                    meta,
                    "cancelled",
                    {"reason": reason.strip(), "status_before": status},
                    restatement_id=restatement_id,
                    actor=run_by(settings),
                )
    return {
        "restatement_id": restatement_id,
        "status": "cancelled",
        "was": status,
        "changelog_version": version,
    }
