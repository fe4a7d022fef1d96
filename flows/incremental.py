"""Incremental load flow: every 15 minutes, process what landed since the watermark."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.dbt_tasks import dbt_as_tasks
from restate.actions import execute_window, prepare_window
from restate.dbt import distributed
from restate.ingest.loads import LoadResult, LoadWindow
from restate.settings import apply_process_env, get_settings


@task(cache_policy=NO_CACHE)
def plan_load_window() -> LoadWindow:
    return prepare_window(get_settings())


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=30)
def run_load(window: LoadWindow) -> LoadResult:
    settings = get_settings()
    try:
        with dbt_as_tasks(settings):  # every model of the load is its own task in the UI
            return execute_window(settings, window)
    finally:
        # dbt-duckdb keeps the file open in this process: a long-lived worker would lock
        # every restatement (another process) out of the warehouse until it exits.
        distributed.release_warehouse(settings)


@task(cache_policy=NO_CACHE)
def publish_load_summary(result: LoadResult) -> None:
    create_markdown_artifact(
        key="incremental-load",
        markdown=(
            f"### Incremental load {result.load_id}: {result.status}\n\n"
            f"| new raw rows | read with lookback | quarantined | partition dates recomputed "
            f"| watermark |\n|---|---|---|---|---|\n"
            f"| {result.rows_new:,} | {result.rows_in_window:,} | {result.rows_quarantined:,} "
            f"| {result.partitions_touched:,} | {result.watermark_after} |\n"
        ),
    )


@flow(name="incremental-load", log_prints=True)
def incremental_load() -> LoadResult:
    """Load newly landed raw events.

    1. Plan the ingestion window: (last watermark - lookback, newest landed row].
    2. Under the production write lock, run the dbt pipeline for the window
       (dedupe, quarantine, recompute every touched event date).
    3. Record the load and its new watermark; publish a summary artifact.
    """
    apply_process_env(get_settings())
    window = plan_load_window()
    result = run_load(window)
    publish_load_summary(result)
    print(f"load {result.load_id}: {result.status}, watermark {result.watermark_after}")
    return result
