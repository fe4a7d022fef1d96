"""Metric diff: as-reported (prod) vs restated (isolated schema), per partition and metric."""

from __future__ import annotations

from typing import Any

from restate.contract.spec import ModelContract
from restate.engines.base import Engine
from restate.partitions.recompute import scope_predicate
from restate.plan.plans import Plan
from restate.settings import Settings
from restate.state import changelog
from restate.state.faults import crash_point


def dimension_values(label: Any) -> dict[str, str]:
    """A diff row's dimensions label ("name=value, name2=value2") as {name: value}, in order."""
    out: dict[str, str] = {}
    for part in str(label or "").split(", "):
        name, sep, value = part.partition("=")
        if sep:
            out[name] = value
    return out


def _dimensions_sql(dimensions: tuple[str, ...]) -> str:
    """The diff row's dimensions label ("name=value, ...") from the joined sides."""
    if not dimensions:
        return "''"
    parts = [f"'{d}=' || coalesce(cast(coalesce(p.{d}, r.{d}) as varchar), 'null')" for d in dimensions]
    return " || ', ' || ".join(parts)


def model_diff_sql(meta: str, prod: str, new: str, model: str, c: ModelContract) -> str:
    """One model's diff: a full outer join on its grain keys, summed per partition date and
    declared dimensions, one row per metric, plus the keys present on one side only."""
    on = " and ".join(f"p.{k} is not distinct from r.{k}" for k in c.keys)
    probe = c.date_column  # never null in a partition
    metric_cols = ", ".join(f"sum(p.{m}) as p_{m}, sum(r.{m}) as r_{m}" for m in c.metrics)
    unpivot = " union all ".join(
        f"select partition_date, dimensions, '{m}' as metric, p_{m} as as_reported, "
        f"r_{m} as restated from per_partition"
        for m in c.metrics
    )
    return f"""
        insert into {meta}.restatement_diffs
        with per_partition as (
            select coalesce(p.{c.date_column}, r.{c.date_column}) as partition_date,
                {_dimensions_sql(c.dimensions)} as dimensions,
                {metric_cols},
                count_if(r.{probe} is null) as p_only,
                count_if(p.{probe} is null) as r_only
            from {prod} p full outer join {new} r on {on}
            group by 1, 2
        ),
        long as (
            {unpivot}
            union all select partition_date, dimensions, 'rows_only_as_reported', p_only, 0
                from per_partition where p_only > 0
            union all select partition_date, dimensions, 'rows_only_restated', 0, r_only
                from per_partition where r_only > 0
        )
        select ?, '{model}', partition_date, dimensions, metric,
            coalesce(as_reported, 0), coalesce(restated, 0),
            coalesce(restated, 0) - coalesce(as_reported, 0),
            case when coalesce(as_reported, 0) = 0 then null
                 else (coalesce(restated, 0) - as_reported) * 100.0 / abs(as_reported)
            end,
            case when as_reported is null then 'restated'
                 when restated is null then 'as_reported' end
        from long
    """


def compute_diff(engine: Engine, settings: Settings, plan: Plan) -> int:
    """Replace the plan's rows in restatement_diffs; returns how many were written.

    A full outer join on the model's grain keys (restate/contract/spec.py) keeps rows that exist
    on one side only; their counts are stored as the metrics rows_only_as_reported /
    rows_only_restated. Keys are compared null-safe, so a null dimension never doubles a row.
    """
    meta = settings.meta_schema
    rid = plan.restatement_id
    written = 0
    engine.set_query_tag(restatement_id=rid, chunk=None, step="diff")
    with engine.transaction():
        engine.execute(f"delete from {meta}.restatement_diffs where restatement_id = ?", [rid])
        for model in plan.models:
            contract = plan.contract(model)
            where, params = scope_predicate(plan, contract)
            prod = f"(select * from {settings.prod_schema}.{model} where {where})"
            new = f"(select * from {plan.restate_schema}.{model} where {where})"
            engine.execute(model_diff_sql(meta, prod, new, model, contract), [*params, *params, rid])
            written += int(
                engine.scalar(
                    f"select count(*) from {meta}.restatement_diffs where restatement_id = ? and model = ?",
                    [rid, model],
                )
                or 0
            )
        totals = diff_totals(engine, settings, rid)
        from restate.state.duties import run_by

        payload = {"rows": written, "totals": totals}
        changelog.append(engine, meta, "diffed", payload, restatement_id=rid, actor=run_by(settings))
    crash_point(settings, "diffed")
    return written


ROW_COUNT_METRICS = ("rows_only_as_reported", "rows_only_restated")


def diff_totals(engine: Engine, settings: Settings, restatement_id: int) -> list[dict[str, Any]]:
    """Per model, metric and dimensions over the whole period (never summed across dimensions:
    amounts in different currencies or units stay apart)."""
    return engine.query_dicts(
        f"""select model, metric, dimensions, sum(as_reported) as as_reported,
            sum(restated) as restated, sum(delta) as delta
        from {settings.meta_schema}.restatement_diffs where restatement_id = ?
        group by all order by model, metric, dimensions""",
        [restatement_id],
    )


def diff_by_month(engine: Engine, settings: Settings, restatement_id: int) -> list[dict[str, Any]]:
    """Per month, model, dimensions and declared metric (row-count metrics left out)."""
    return engine.query_dicts(
        f"""select left(cast(partition_date as varchar), 7) as month, model, dimensions, metric,
            sum(as_reported) as as_reported, sum(restated) as restated, sum(delta) as delta,
            case when sum(as_reported) = 0 then null
                 else sum(delta) * 100.0 / abs(sum(as_reported)) end as pct
        from {settings.meta_schema}.restatement_diffs
        where restatement_id = ? and metric not in ({", ".join(f"'{m}'" for m in ROW_COUNT_METRICS)})
        group by all order by month, model, dimensions, metric""",
        [restatement_id],
    )
