"""Read-only queries behind the CLI's tables (what a model's contract declares, never a
project's column names)."""

from __future__ import annotations

from datetime import date
from typing import Any

from restate.contract.spec import ModelContract, ProjectContract, Quarantine
from restate.engines.base import Engine


def metric_report(
    engine: Engine,
    schema: str,
    contract: ModelContract,
    by: str = "month",
    start: date | None = None,
    end: date | None = None,
) -> list[dict[str, Any]]:
    """The sum of every declared metric of a model per period (month or day) and declared
    dimension, from ``schema`` (production): what dashboards read."""
    if by not in ("month", "day"):
        raise ValueError(f"by must be 'month' or 'day', got {by!r}")
    day = contract.date_column
    period = f"left(cast({day} as varchar), 7) as month" if by == "month" else f"{day} as day"
    where, params = [], []
    if start is not None:
        # A month report starts at the first day of the month `start` falls in.
        where.append(f"{day} >= ?")
        params.append(start.replace(day=1) if by == "month" else start)
    if end is not None:
        where.append(f"{day} <= ?")
        params.append(end)
    dims = list(contract.dimensions)
    group = ", ".join(str(i) for i in range(1, len(dims) + 2))
    return engine.query_dicts(
        f"""
        select {", ".join([period, *dims, *(f"sum({m}) as {m}" for m in contract.metrics)])}
        from {schema}.{contract.model}
        {"where " + " and ".join(where) if where else ""}
        group by {group} order by {group}
        """,
        params,
    )


def quarantines(project: ProjectContract) -> list[Quarantine]:
    """The project's quarantine models (each once), as its contracts declare them."""
    found: dict[str, Quarantine] = {}
    for c in project.models.values():
        if c.quarantine is not None:
            found.setdefault(c.quarantine.model, c.quarantine)
    return list(found.values())


def quarantine_summary(
    engine: Engine, schema: str, project: ProjectContract, by: str = "month"
) -> list[dict[str, Any]]:
    """Quarantined rows per quarantine model, reason and month (or day) of processing."""
    out: list[dict[str, Any]] = []
    for q in quarantines(project):
        if not engine.relation_exists(schema, q.model):
            continue
        fmt = "%Y-%m" if by == "month" else "%Y-%m-%d"
        reason = q.reason or "'(no reason column declared)'"
        out += engine.query_dicts(
            f"""
            select '{q.model}' as model, {reason} as reason,
                strftime(cast({q.processed_at} as timestamp), '{fmt}') as processed, count(*) as rows
            from {schema}.{q.model} group by all order by 2, 3
            """
        )
    return out


def quarantine_rows(
    engine: Engine, schema: str, project: ProjectContract, reason: str | None, limit: int
) -> list[dict[str, Any]]:
    """The quarantined rows themselves (every column of the quarantine model), oldest first."""
    out: list[dict[str, Any]] = []
    for q in quarantines(project):
        if not engine.relation_exists(schema, q.model):
            continue
        where = f"where {q.reason} = ?" if reason is not None and q.reason else ""
        out += engine.query_dicts(
            f"select * from {schema}.{q.model} {where} order by {q.processed_at} nulls first limit ?",
            [*([reason] if where else []), limit],
        )
    return out[:limit]


def quarantined_files(engine: Engine, meta_schema: str) -> list[dict[str, Any]]:
    """Landing files kept out of every load because they cannot be read, with the reason
    (restate/ingest/landing.py); the files themselves stay where they landed."""
    if not engine.relation_exists(meta_schema, "landing_files"):
        return []
    return engine.query_dicts(
        f"select path, status, reason, checked_at, rows from {meta_schema}.landing_files "
        "where status = 'quarantined' order by checked_at, path"
    )
