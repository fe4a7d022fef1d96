"""The incremental load: everything landed since the watermark, under the production
write lock (dedupe, quarantine, every touched partition date recomputed), recorded."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from restate.context import Context
from restate.contract.spec import read_contract
from restate.ingest.loads import (
    LoadResult,
    LoadWindow,
    fail_load,
    plan_window,
    run_models,
    skipped_load,
    start_load,
    summarize_load,
)
from restate.plan.code_version import record_load_build
from restate.settings import Settings
from restate.state import locks
from restate.state.meta import init_meta

Step = Callable[[str], None]


def prepare_window(ctx: Context | Settings) -> LoadWindow:
    """Step 1: the ingestion window of the next load."""
    ctx = Context.of(ctx)
    project = ctx.project()
    with ctx.session() as engine:
        init_meta(engine, ctx.settings.meta_schema)
        return plan_window(engine, ctx.settings, project)


def execute_window(ctx: Context | Settings, window: LoadWindow, on_step: Step | None = None) -> LoadResult:
    """Steps 2-3: run dbt for the window under the production write lock, then record it."""
    if not window.has_data:
        return skipped_load(window)
    ctx = Context.of(ctx)
    settings = ctx.settings
    started = datetime.now(UTC).replace(tzinfo=None)
    with ctx.session() as engine:
        with locks.held(engine, settings.meta_schema, holder=locks.new_holder(f"load:{window.load_id}")):
            start_load(engine, settings.meta_schema, window)
            try:
                if on_step:
                    on_step("running dbt models")
                dbt = ctx.dbt
                run_models(dbt, window)
                if on_step:
                    on_step("recording watermark")
                manifest = dbt.last_manifest()
                result = summarize_load(engine, settings, read_contract(manifest), window, started)
                record_load_build(engine, settings, window.load_id, manifest)
                return result
            except Exception as exc:
                fail_load(engine, settings.meta_schema, window.load_id, str(exc))
                raise


def load_once(ctx: Context | Settings, on_step: Step | None = None) -> LoadResult:
    """Process everything landed since the last watermark."""
    if on_step:
        on_step("planning ingestion window")
    ctx = Context.of(ctx)
    window = prepare_window(ctx)
    return execute_window(ctx, window, on_step)


def rebuild_derived(ctx: Context | Settings) -> int | None:
    """Rebuild every model that is not incremental (views, tables) under the production
    write lock; the number of models built, None before anything was ever loaded (the
    first load builds everything). For a source landed outside the project's declared
    landing (payment events, partner files): a table joining several systems sees the new
    files now, not at the next load of the declared landing. Incremental models read only
    that landing's window, which holds nothing new, and the models a load's window
    defines (the declared touched-dates models) are left for the next load."""
    from restate.ingest.loads import last_watermark

    ctx = Context.of(ctx)
    settings = ctx.settings
    excluded = ["config.materialized:incremental"]
    excluded += sorted({c.touched_dates for c in ctx.project().models.values() if c.touched_dates})
    with ctx.session() as engine:
        init_meta(engine, settings.meta_schema)
        if last_watermark(engine, settings.meta_schema) is None:
            return None
        with locks.held(engine, settings.meta_schema, holder=locks.new_holder("rebuild")):
            result = ctx.dbt.invoke(["run", "--exclude", *excluded], vars=settings.dbt_vars())
    return sum(1 for n in result.nodes if n.status == "success")
