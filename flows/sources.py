"""Source flows: what feeds the landing, on the deployments' cadence.

- orders (every 15 minutes): each PostgreSQL table in keyset pages, then the incremental
  load, so a source change reaches the mart in the same run;
- payments (every 15 minutes): the webhook journal landed as one file, then the load;
- fulfilment (hourly): each partner's SFTP drop folder, then the load.
Each run reports rows landed, rows or files quarantined and the new watermark (a Prefect
artifact and the flow's return value). The work itself is `sources.runs`, which
`restate sources` runs without Prefect.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from restate.settings import apply_process_env, get_settings
from sources import runs


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=30)
def extract_table(name: str) -> dict[str, Any]:
    settings = get_settings()
    source = next(p for p in runs.declared(settings).postgres if p.name == name)
    return runs.extract_table(settings, source)


@task(cache_policy=NO_CACHE)
def load_landed(other_source: str | None = None) -> dict[str, Any]:
    return runs.load_landed(get_settings(), other_source)


@task(cache_policy=NO_CACHE)
def flush_webhooks() -> dict[str, Any]:
    settings = get_settings()
    return runs.flush_webhooks(settings, runs.declared(settings))


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=60)
def pick_up_drop(name: str) -> dict[str, Any]:
    settings = get_settings()
    source = next(d for d in runs.declared(settings).sftp if d.name == name)
    return runs.pick_up_drop(settings, source)


def _publish(key: str, rows: list[dict[str, Any]]) -> None:
    create_table_artifact(key=key, table=[{k: str(v) for k, v in r.items()} for r in rows])


@flow(name="orders-extract", log_prints=True)
def orders_extract() -> dict[str, Any]:
    """Every declared PostgreSQL table since its cursor, then the incremental load."""
    apply_process_env(get_settings())
    tables = [extract_table(p.name) for p in runs.declared(get_settings()).postgres]
    # Always: rows an earlier run landed and never loaded (it stopped in between) load now;
    # with nothing new the load skips at once.
    load = load_landed()
    _publish("orders-extract", [*tables, load])
    print(f"orders: {sum(t['rows'] for t in tables):,} rows landed; load {load}")
    return {"tables": tables, "load": load}


@flow(name="payments-land", log_prints=True)
def payments_land() -> dict[str, Any]:
    """The webhook journal's new events as one landed file, then the incremental load."""
    apply_process_env(get_settings())
    landed = flush_webhooks()
    due = runs.load_due(get_settings(), "payments", landed["rows"])
    load = load_landed(other_source="payments") if due else {"load": None}
    _publish("payments-land", [landed, load])
    print(f"payments: {landed['rows']:,} events landed; load {load}")
    return {"webhooks": landed, "load": load}


@flow(name="fulfilment-pickup", log_prints=True)
def fulfilment_pickup() -> dict[str, Any]:
    """Every partner's SFTP drop folder: complete files landed, drifted ones quarantined."""
    apply_process_env(get_settings())
    drops = [pick_up_drop(d.name) for d in runs.declared(get_settings()).sftp]
    due = runs.load_due(get_settings(), "fulfilment", sum(d["rows"] for d in drops))
    load = load_landed(other_source="fulfilment") if due else {"load": None}
    _publish("fulfilment-pickup", [*drops, load])
    print(f"fulfilment: {sum(d['rows'] for d in drops):,} rows from {len(drops)} partners; load {load}")
    return {"drops": drops, "load": load}
