"""Roll a promotion back in one step (cascading to later overlapping ones on request)."""

from __future__ import annotations

from typing import Any

from restate.context import Context
from restate.events import Event
from restate.plan.plans import load_plan
from restate.settings import Settings


def rollback(
    ctx: Context | Settings,
    restatement_id: int,
    actor: str,
    reason: str | None,
    cascade: bool = False,
    keep_later_loads: bool = False,
) -> dict[str, Any]:
    """Restore what the last promotion replaced, in one transaction; audited. Every
    restatement rolled back (this one, and each one it cascaded to) is announced."""
    from restate.partitions.promotion import rollback as do_rollback

    ctx = Context.of(ctx)
    settings = ctx.settings
    with ctx.session() as engine:
        out = do_rollback(
            engine,
            settings,
            load_plan(engine, settings, restatement_id),
            actor,
            reason,
            cascade,
            keep_later_loads=keep_later_loads,
        )
    out["notices"] = {rid: ctx.publish(rid, Event.ROLLED_BACK) for rid in rolled_back_ids(out)}
    return out


def rolled_back_ids(result: dict[str, Any]) -> list[int]:
    """The restatements a rollback result restored: its own, and each one it cascaded to
    (every one of them gets its own rolled_back notice)."""
    ids = [int(result["restatement_id"])] if result.get("status") == "rolled_back" else []
    for cascaded in result.get("cascaded") or []:
        ids += rolled_back_ids(cascaded)
    return ids
