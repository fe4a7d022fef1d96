"""Source flows: what feeds the landing, on the deployments' cadence.

- orders (every 15 minutes): each PostgreSQL table in keyset pages, then the incremental
  load, so a source change reaches the mart in the same run;
- payments (every 15 minutes): the webhook journal landed as one file, then the load;
- fulfilment (hourly): each partner's SFTP drop folder.
Each run reports rows landed, rows or files quarantined and the new watermark (a Prefect
artifact and the flow's return value).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from restate.engines import connect
from restate.settings import apply_process_env, get_settings
from sources.config import SourceConfigError, SourcesConfig, load_sources


def _config() -> SourcesConfig:
    settings = get_settings()
    if settings.sources_file is None:
        raise SourceConfigError("RESTATE_SOURCES_FILE is not set: no sources are declared")
    return load_sources(settings.sources_file)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=30)
def extract_table(name: str) -> dict[str, Any]:
    from sources.postgres import extract

    settings = get_settings()
    source = next(p for p in _config().postgres if p.name == name)
    with connect(settings) as engine:
        report = extract(settings, engine, source.table_source(), source.folder)
    return {
        "source": name,
        "rows": report.rows,
        "statements": report.statements,
        "longest_statement_ms": round(report.longest_statement_ms, 1),
        "watermark": report.cursor_after[0] if report.cursor_after else None,
    }


@task(cache_policy=NO_CACHE)
def load_landed() -> dict[str, Any]:
    from restate.actions import load_once
    from restate.dbt import distributed

    settings = get_settings()
    try:
        result = load_once(settings)
    finally:
        distributed.release_warehouse(settings)  # let a restatement's process in
    return {
        "load": result.load_id,
        "rows_quarantined": result.rows_quarantined,
        "watermark": str(result.watermark_after),
    }


@task(cache_policy=NO_CACHE)
def flush_webhooks() -> dict[str, Any]:
    from sources.stripe_webhooks import Journal

    settings = get_settings()
    declared = _config().webhooks
    folder = declared.folder if declared is not None else settings.webhook_folder
    journal = Journal(settings.webhook_journal_path)
    try:
        before = journal.counts()
        path = journal.flush(settings, folder)
        after = journal.counts()
    finally:
        journal.close()
    return {
        "source": "webhooks",
        "rows": after["landed"] - before["landed"],
        "redacted": after["redacted"],
        "file": path,
    }


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=60)
def pick_up_drop(name: str) -> dict[str, Any]:
    from sources.sftp_drops import pick_up

    settings = get_settings()
    source = next(d for d in _config().sftp if d.name == name)
    with connect(settings) as engine:
        report = pick_up(settings, engine, source.drop(), source.folder)
    return {
        "source": name,
        "rows": report.rows,
        "files_accepted": len(report.accepted),
        "files_quarantined": len(report.quarantined),
        "quarantined": report.quarantined,
        "files_waiting": len(report.incomplete),
        "duplicates": len(report.duplicates),
    }


def _publish(key: str, rows: list[dict[str, Any]]) -> None:
    create_table_artifact(key=key, table=[{k: str(v) for k, v in r.items()} for r in rows])


@flow(name="orders-extract", log_prints=True)
def orders_extract() -> dict[str, Any]:
    """Every declared PostgreSQL table since its cursor, then the incremental load."""
    apply_process_env(get_settings())
    tables = [extract_table(p.name) for p in _config().postgres]
    load = load_landed() if any(t["rows"] for t in tables) else {"load": None}
    _publish("orders-extract", [*tables, load])
    print(f"orders: {sum(t['rows'] for t in tables):,} rows landed; load {load}")
    return {"tables": tables, "load": load}


@flow(name="payments-land", log_prints=True)
def payments_land() -> dict[str, Any]:
    """The webhook journal's new events as one landed file, then the incremental load."""
    apply_process_env(get_settings())
    landed = flush_webhooks()
    load = load_landed() if landed["rows"] else {"load": None}
    _publish("payments-land", [landed, load])
    print(f"payments: {landed['rows']:,} events landed; load {load}")
    return {"webhooks": landed, "load": load}


@flow(name="fulfilment-pickup", log_prints=True)
def fulfilment_pickup() -> dict[str, Any]:
    """Every partner's SFTP drop folder: complete files landed, drifted ones quarantined."""
    apply_process_env(get_settings())
    drops = [pick_up_drop(d.name) for d in _config().sftp]
    _publish("fulfilment-pickup", drops)
    print(f"fulfilment: {sum(d['rows'] for d in drops):,} rows from {len(drops)} partners")
    return {"drops": drops}
