"""Incremental loads: watermark bookkeeping around one dbt run of the pipeline."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from restate.contract.spec import ProjectContract
from restate.dbt.runner import DbtProject
from restate.engines.base import Engine
from restate.ingest import landing
from restate.settings import Settings
from restate.state.clock import utc_now as _now

EPOCH = datetime(1900, 1, 1)


@dataclass(frozen=True)
class LoadWindow:
    """The rows one load processes: (read_since, until], where read_since = watermark - lookback."""

    load_id: str
    watermark: datetime | None
    read_since: datetime
    until: datetime | None

    @property
    def has_data(self) -> bool:
        return self.until is not None and (self.watermark is None or self.until > self.watermark)

    def dbt_vars(self) -> dict[str, str]:
        assert self.until is not None
        return {
            "ingested_since": self.read_since.isoformat(sep=" "),
            "ingested_until": self.until.isoformat(sep=" "),
        }


@dataclass(frozen=True)
class LoadResult:
    load_id: str
    status: str
    watermark_before: datetime | None
    watermark_after: datetime | None
    rows_in_window: int
    rows_new: int
    rows_quarantined: int
    partitions_touched: int
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items()}


def last_watermark(engine: Engine, meta_schema: str) -> datetime | None:
    """The ingestion watermark reached by the last successful load."""
    value: datetime | None = engine.scalar(
        f"select max(ingested_until) from {meta_schema}.loads where status = 'success'"
    )
    return value


def plan_window(engine: Engine, settings: Settings, project: ProjectContract) -> LoadWindow:
    """Decide what the next load reads, from the last watermark and the landing's newest row
    (a row's processing time: the first of the landing's declared processing-time columns)."""
    watermark = last_watermark(engine, settings.meta_schema)
    lc = landing.landing_of(project)
    # Files landed since the last check are checked first: unreadable ones are quarantined.
    landing.refresh(engine, settings, lc)
    relation = landing.relation(engine, lc)
    until = (
        engine.scalar(f"select max({landing.processed_at(engine, lc)}) from {relation}") if relation else None
    )
    read_since = watermark - timedelta(hours=settings.lookback_hours) if watermark is not None else EPOCH
    return LoadWindow(uuid.uuid4().hex[:12], watermark, read_since, until)


def start_load(engine: Engine, meta_schema: str, window: LoadWindow) -> None:
    """Record the load as running. A retry of the same window (same load_id, e.g. a
    Prefect task retry) starts its record afresh: the window is reprocessed whole."""
    with engine.transaction():
        engine.execute(f"delete from {meta_schema}.load_partitions where load_id = ?", [window.load_id])
        engine.execute(f"delete from {meta_schema}.loads where load_id = ?", [window.load_id])
        engine.execute(
            f"insert into {meta_schema}.loads (load_id, started_at, status, ingested_since, "
            "ingested_until) values (?, ?, 'running', ?, ?)",
            [window.load_id, _now(), window.read_since, window.until],
        )


def run_models(dbt: DbtProject, window: LoadWindow) -> float:
    """Run the whole pipeline for the window; returns dbt's elapsed seconds."""
    result = dbt.invoke(["run"], vars={**dbt.settings.dbt_vars(), **window.dbt_vars()})
    dbt.save_prod_state()
    return result.elapsed_s


def summarize_load(
    engine: Engine, settings: Settings, project: ProjectContract, window: LoadWindow, started: datetime
) -> LoadResult:
    """Count what the load saw and record it as the new watermark, with every partition
    date each restatable model recomputed (its declared touched_dates model)."""
    lc = landing.landing_of(project)
    relation = landing.relation(engine, lc)
    schema = settings.prod_schema
    assert window.until is not None and relation is not None
    base = window.watermark or EPOCH
    processed_at = landing.processed_at(engine, lc)
    row = engine.query(
        f"""
        select
            count_if({processed_at} > ?),
            count_if({processed_at} > ?)
        from {relation} where {processed_at} <= ?
        """,
        [window.read_since, base, window.until],
    )[0]
    quarantines = {
        (c.quarantine.model, c.quarantine.processed_at) for c in project.models.values() if c.quarantine
    }
    quarantined = sum(
        int(
            engine.scalar(
                f"select count(*) from {schema}.{model} where {column} > ? and {column} <= ?",
                [base, window.until],
            )
            or 0
        )
        for model, column in sorted(quarantines)
    )
    touched_sql = [
        f"select distinct '{c.model}' as model, {c.date_column} as partition_date "
        f"from {schema}.{c.touched_dates} where {c.date_column} is not null"
        for c in project.models.values()
        if c.touched_dates
    ]
    touched_union = " union all ".join(touched_sql) if touched_sql else None
    touched = (
        engine.scalar(f"select count(distinct partition_date) from ({touched_union}) t")
        if touched_union
        else 0
    )
    finished = _now()
    result = LoadResult(
        load_id=window.load_id,
        status="success",
        watermark_before=window.watermark,
        watermark_after=window.until,
        rows_in_window=int(row[0]),
        rows_new=int(row[1]),
        rows_quarantined=int(quarantined or 0),
        partitions_touched=int(touched or 0),
        duration_s=(finished - started).total_seconds(),
    )
    with engine.transaction():
        if touched_union:
            engine.execute(
                f"insert into {settings.meta_schema}.load_partitions (load_id, model, partition_date) "
                f"select distinct ?, model, partition_date from ({touched_union}) t",
                [window.load_id],
            )
        engine.execute(
            f"""update {settings.meta_schema}.loads set status = 'success', finished_at = ?,
                rows_in_window = ?, rows_new = ?, rows_quarantined = ?, partitions_touched = ?
                where load_id = ?""",
            [
                finished,
                result.rows_in_window,
                result.rows_new,
                result.rows_quarantined,
                result.partitions_touched,
                window.load_id,
            ],
        )
    return result


def fail_load(engine: Engine, meta_schema: str, load_id: str, error: str) -> None:
    engine.execute(
        f"update {meta_schema}.loads set status = 'failed', finished_at = ?, error = ? where load_id = ?",
        [_now(), error[:2000], load_id],
    )


def skipped_load(window: LoadWindow) -> LoadResult:
    return LoadResult(window.load_id, "no_new_data", window.watermark, window.watermark, 0, 0, 0, 0, 0.0)
