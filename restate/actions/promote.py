"""Promote a validated (and, where required, approved) restatement to production."""

from __future__ import annotations

from typing import Any

from restate.context import Context
from restate.events import Event
from restate.plan.plans import load_plan
from restate.settings import Settings


def promote(ctx: Context | Settings, restatement_id: int, approved_by: str | None = None) -> dict[str, Any]:
    """Promote through the gate (validation, approval): raises promotion.GateError if
    refused. When the switch happened now (not for one promoted already), the owners of
    the affected dashboards are told; `notices` in the result says how that went."""
    from restate.partitions.promotion import promote as do_promote

    ctx = Context.of(ctx)
    settings = ctx.settings
    with ctx.session() as engine:
        out = do_promote(engine, settings, load_plan(engine, settings, restatement_id), approved_by)
    if out["status"] == "promoted":
        out["notices"] = ctx.publish(restatement_id, Event.PROMOTED)
    return out
