"""Plan a restatement: closure, chunks, dashboards, estimate; stored and announced."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from restate.context import Context
from restate.events import Event
from restate.plan.plans import Plan, PlanRequest, build_plan, load_plan, store_plan
from restate.settings import Settings
from restate.state.faults import crash_point


def create_plan(
    ctx: Context | Settings,
    request: PlanRequest,
    notify: bool = True,
    on_step: Callable[[str], None] | None = None,
) -> Plan:
    """Plan and store a restatement (the production manifest is refreshed first); announce it."""
    from restate.state.meta import init_meta

    step = on_step or (lambda _: None)
    ctx = Context.of(ctx)
    settings = ctx.settings
    step("parsing the dbt project")
    manifest = ctx.manifest()
    with ctx.session() as engine:
        init_meta(engine, settings.meta_schema)
        step("closure, chunks, dashboards and cost estimate")
        plan = build_plan(engine, settings, manifest, request)
        store_plan(engine, settings, plan)
    crash_point(settings, "plan_stored")
    if notify:
        step("announcing the plan")
        ctx.publish(plan.restatement_id, Event.RESTATEMENT_PLANNED)
    return plan


def get_plan(ctx: Context | Settings, restatement_id: int) -> Plan:
    ctx = Context.of(ctx)
    with ctx.session() as engine:
        return load_plan(engine, ctx.settings, restatement_id)


def refuse_cancelled(engine: Any, settings: Settings, restatement_id: int) -> None:
    """A cancelled restatement is never run, validated, forced or promoted again."""
    status = engine.scalar(
        f"select status from {settings.meta_schema}.restatements where restatement_id = ?", [restatement_id]
    )
    if status == "cancelled":
        raise ValueError(f"restatement {restatement_id} is cancelled; plan a new one")
