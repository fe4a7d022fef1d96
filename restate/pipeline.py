"""The incremental load end to end, for the CLI and the flow's tasks alike."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from restate import locks
from restate.code_version import record_load_build
from restate.contract import read_contract
from restate.dbt_runner import DbtProject
from restate.engines import connect
from restate.loads import (
    LoadResult,
    LoadWindow,
    fail_load,
    plan_window,
    run_models,
    skipped_load,
    start_load,
    summarize_load,
)
from restate.meta import init_meta
from restate.project import project_contract
from restate.settings import Settings

Step = Callable[[str], None]


def prepare_window(settings: Settings) -> LoadWindow:
    """Step 1: the ingestion window of the next load."""
    project = project_contract(settings)
    with connect(settings) as engine:
        init_meta(engine, settings.meta_schema)
        return plan_window(engine, settings, project)


def execute_window(settings: Settings, window: LoadWindow, on_step: Step | None = None) -> LoadResult:
    """Steps 2-3: run dbt for the window under the production write lock, then record it."""
    if not window.has_data:
        return skipped_load(window)
    started = datetime.now(UTC).replace(tzinfo=None)
    with connect(settings) as engine:
        with locks.held(engine, settings.meta_schema, holder=locks.new_holder(f"load:{window.load_id}")):
            start_load(engine, settings.meta_schema, window)
            try:
                if on_step:
                    on_step("running dbt models")
                dbt = DbtProject(settings)
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


def load_once(settings: Settings, on_step: Step | None = None) -> LoadResult:
    """Process everything landed since the last watermark."""
    if on_step:
        on_step("planning ingestion window")
    window = prepare_window(settings)
    return execute_window(settings, window, on_step)
