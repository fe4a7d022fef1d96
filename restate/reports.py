"""Read-only queries behind the CLI's tables."""

from __future__ import annotations

from datetime import date
from typing import Any

from restate.engines.base import Engine


def monthly_revenue(
    engine: Engine, schema: str, start: date | None = None, end: date | None = None
) -> list[dict[str, Any]]:
    """Revenue per month and currency from the production monthly mart."""
    return engine.query_dicts(
        f"""
        select strftime(event_month, '%Y-%m') as month, currency,
            sum(gross_revenue) as gross_revenue, sum(refunds) as refunds,
            sum(net_revenue) as net_revenue
        from {schema}.fct_revenue_monthly
        where (? is null or event_month >= date_trunc('month', cast(? as date)))
          and (? is null or event_month <= cast(? as date))
        group by all order by 1, 2
        """,
        [start, start, end, end],
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
