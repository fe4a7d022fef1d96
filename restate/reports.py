"""Read-only queries behind the CLI's tables (what a model's contract declares, never a
project's column names)."""

from __future__ import annotations

from datetime import date
from typing import Any

from restate.contract import ModelContract
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


def quarantine_summary(engine: Engine, schema: str, by: str = "month") -> list[dict[str, Any]]:
    """Quarantined raw rows by reason and event month (or day)."""
    period = "strftime(event_date, '%Y-%m') as month" if by == "month" else "event_date as day"
    return engine.query_dicts(
        f"""
        select rejection_reason, {period}, count(*) as rows
        from {schema}.int_quarantined_events group by all order by 1, 2
        """
    )


def quarantine_rows(engine: Engine, schema: str, reason: str | None, limit: int) -> list[dict[str, Any]]:
    return engine.query_dicts(
        f"""
        select rejection_reason, source_file, source_row_number, event_id, account_id,
            event_type, amount, currency, event_ts
        from {schema}.int_quarantined_events
        where (? is null or rejection_reason = ?)
        order by event_ts nulls first, source_file, source_row_number limit ?
        """,
        [reason, reason, limit],
    )


def quarantined_files(engine: Engine, meta_schema: str) -> list[dict[str, Any]]:
    """Landing files kept out of every load because they cannot be read, with the reason
    (restate/landing.py); the files themselves stay where they landed."""
    if not engine.relation_exists(meta_schema, "landing_files"):
        return []
    return engine.query_dicts(
        f"select path, status, reason, checked_at, rows from {meta_schema}.landing_files "
        "where status = 'quarantined' order by checked_at, path"
    )
