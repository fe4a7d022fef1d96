"""Metric diff: as-reported (prod) vs restated (isolated schema), per partition and metric."""

from __future__ import annotations

from typing import Any

from restate import changelog
from restate.engines.base import Engine
from restate.faults import crash_point
from restate.planning import Plan
from restate.recompute import scope_predicate
from restate.settings import Settings

# Metrics compared per (event_date, currency); row counts expose keys present on one side only.
DIFF_METRICS = ("gross_revenue", "refunds", "net_revenue", "invoice_count", "refund_count")


def compute_diff(engine: Engine, settings: Settings, plan: Plan) -> int:
    """Replace the plan's rows in restatement_diffs; returns how many were written.

    A full outer join on the grain key keeps rows that exist on one side only;
    their counts are stored as the metrics rows_only_as_reported / rows_only_restated.
    """
    meta = settings.meta_schema
    rid = plan.restatement_id
    written = 0
    engine.set_query_tag(restatement_id=rid, chunk=None, step="diff")
    with engine.transaction():
        engine.execute(f"delete from {meta}.restatement_diffs where restatement_id = ?", [rid])
        for model in plan.models:
            where, params = scope_predicate(plan)
            prod = f"(select * from {settings.prod_schema}.{model} where {where})"
            new = f"(select * from {plan.restate_schema}.{model} where {where})"
            metric_cols = ", ".join(f"sum(p.{m}) as p_{m}, sum(r.{m}) as r_{m}" for m in DIFF_METRICS)
            unpivot = " union all ".join(
                f"select event_date, currency, '{m}' as metric, p_{m} as as_reported, "
                f"r_{m} as restated from per_date"
                for m in DIFF_METRICS
            )
            engine.execute(
                f"""
                insert into {meta}.restatement_diffs
                with per_date as (
                    select coalesce(p.event_date, r.event_date) as event_date,
                        coalesce(p.currency, r.currency) as currency,
                        {metric_cols},
                        count_if(r.account_id is null) as p_only,
                        count_if(p.account_id is null) as r_only
                    from {prod} p full outer join {new} r
                        on p.event_date = r.event_date and p.account_id = r.account_id
                        and p.currency = r.currency
                    group by 1, 2
                ),
                long as (
                    {unpivot}
                    union all select event_date, currency, 'rows_only_as_reported', p_only, 0
                        from per_date where p_only > 0
                    union all select event_date, currency, 'rows_only_restated', 0, r_only
                        from per_date where r_only > 0
                )
                select ?, '{model}', event_date, currency, metric,
                    coalesce(as_reported, 0), coalesce(restated, 0),
                    coalesce(restated, 0) - coalesce(as_reported, 0),
                    case when coalesce(as_reported, 0) = 0 then null
                         else (coalesce(restated, 0) - as_reported) * 100.0 / abs(as_reported)
                    end,
                    case when as_reported is null then 'restated'
                         when restated is null then 'as_reported' end
                from long
                """,
                [*params, *params, rid],
            )
            written += int(
                engine.scalar(
                    f"select count(*) from {meta}.restatement_diffs where restatement_id = ? and model = ?",
                    [rid, model],
                )
                or 0
            )
        totals = diff_totals(engine, settings, rid)
        changelog.append(engine, meta, "diffed", {"rows": written, "totals": totals}, restatement_id=rid)
    crash_point(settings, "diffed")
    return written


def diff_totals(engine: Engine, settings: Settings, restatement_id: int) -> list[dict[str, Any]]:
    return engine.query_dicts(
        f"""select model, metric, currency, sum(as_reported) as as_reported,
            sum(restated) as restated, sum(delta) as delta
        from {settings.meta_schema}.restatement_diffs where restatement_id = ?
        group by all order by model, metric, currency""",
        [restatement_id],
    )


def diff_by_month(engine: Engine, settings: Settings, restatement_id: int) -> list[dict[str, Any]]:
    """Per month and metric (all currencies, converted nowhere: amounts stay per currency)."""
    return engine.query_dicts(
        f"""select left(cast(event_date as varchar), 7) as month, currency, metric,
            sum(as_reported) as as_reported, sum(restated) as restated, sum(delta) as delta,
            case when sum(as_reported) = 0 then null
                 else sum(delta) * 100.0 / abs(sum(as_reported)) end as pct
        from {settings.meta_schema}.restatement_diffs
        where restatement_id = ? and metric in ('gross_revenue', 'refunds', 'net_revenue')
        group by all order by month, currency, metric""",
        [restatement_id],
    )
