"""The nightly reconciliation: production against the finance reference exports; on
drift, a drafted (never run) restatement plan with the root-cause split, and one alert."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from restate.context import Context
from restate.events import Event
from restate.settings import Settings
from restate.validation.reconcile import (
    Reconciliation,
    alert_text,
    check_production,
    draft_plan,
    store_reconciliation,
)


def reconcile_once(
    ctx: Context | Settings,
    days: int | None = None,
    today: date | None = None,
    notify: bool = True,
    on_step: Callable[[str], None] | None = None,
) -> Reconciliation:
    """check -> (on failure) draft plan + explain -> record -> alert. One nightly run."""
    step = on_step or (lambda _: None)
    ctx = Context.of(ctx)
    settings = ctx.settings
    with ctx.session() as engine:
        step("checking production (Soda contracts, reference exports)")
        rec = check_production(engine, settings, days, today)
    if not rec.passed:
        step("explaining the drift and drafting a plan")
        rec = draft_plan(ctx, rec)
    with ctx.session() as engine:
        store_reconciliation(engine, settings, rec)
    if notify and not rec.passed and rec.draft_restatement_id is not None:
        step("alerting the dashboard owners")
        rec.notices = ctx.publish(rec.draft_restatement_id, Event.DRIFT_DETECTED, detail=alert_text(rec))
    return rec
