"""The whole story on the embedded default, for `make demo`."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from typing import Any

import duckdb

from restate.engines import connect
from restate.generate import GenerateSpec, generate
from restate.settings import Settings

Say = Callable[[str], None]


def finance_drift(settings: Settings) -> list[dict[str, Any]]:
    """Months where production net revenue differs from the finance exports (any currency)."""
    with connect(settings) as engine:
        return engine.query_dicts(
            f"""
            with finance as (
                select strftime(date, '%Y-%m') as month, currency, sum(net_revenue) as finance_net
                from read_csv('{settings.finance}/revenue_*.csv', header = true) group by all
            ),
            prod as (
                select strftime(event_month, '%Y-%m') as month, currency, sum(net_revenue) as prod_net
                from {settings.prod_schema}.fct_revenue_monthly group by all
            )
            select month, currency, prod_net, finance_net, prod_net - finance_net as delta,
                round((prod_net - finance_net) * 100.0 / finance_net, 3) as pct
            from prod join finance using (month, currency)
            where abs(prod_net - finance_net) > 0.0005 * abs(finance_net)
            order by month, currency
            """
        )


def run_demo(settings: Settings, say: Say, spec: GenerateSpec | None = None) -> dict[str, Any]:
    """generate -> buggy prod -> drift -> plan -> recompute/validate/diff -> promote."""
    from flows.restatement import with_concurrency
    from restate.lifecycle import create_plan, monthly_diff
    from restate.pipeline import load_once
    from restate.planning import PlanRequest, load_plan
    from restate.promotion import promote

    if settings.data_dir.exists():
        shutil.rmtree(settings.data_dir / "landing", ignore_errors=True)
        shutil.rmtree(settings.data_dir / "finance", ignore_errors=True)
        settings.warehouse_path.unlink(missing_ok=True)
        shutil.rmtree(settings.state_dir, ignore_errors=True)
    spec = spec or GenerateSpec()
    con = duckdb.connect()
    con.execute("set enable_progress_bar = false")
    gen = generate(spec, settings.landing, settings.finance, con)
    say(f"1. generated {gen.rows_landed:,} raw billing events, {spec.start_date}..{spec.end_date}")

    buggy = settings.model_copy(update={"revenue_logic": "v1"})
    load = load_once(buggy)
    say(
        f"2. production built with the old logic (refunds left out of net revenue): "
        f"{load.rows_new:,} rows, {load.rows_quarantined:,} quarantined"
    )

    drift = finance_drift(settings)
    months = sorted({d["month"] for d in drift})
    say(f"3. drift vs finance exports in {len(months)} months ({months[0]}..{months[-1]})")

    plan = create_plan(
        settings,
        PlanRequest(
            selector="fct_revenue_daily+",
            start=date.fromisoformat(months[0] + "-01"),
            end=spec.end_date,
            reason="Refunds were left out of net revenue (old fct_revenue_daily logic)",
            requested_by="data-eng@finsight.example",
            ticket="FIN-142",
        ),
    )
    say(
        f"4. planned restatement {plan.restatement_id}: {', '.join(plan.models)} "
        f"(+ {', '.join(plan.follow_views)}), {len(plan.chunks)} chunks, "
        f"dashboards: {', '.join(e.label for e in plan.exposures)}"
    )
    result = with_concurrency(settings.chunk_concurrency)(restatement_id=plan.restatement_id)
    validation = result.get("validation") or {}
    say(
        f"5. recomputed {result['recompute']['rows_written']:,} rows into {plan.restate_schema}; "
        f"validation {'passed' if validation.get('passed') else 'FAILED'}"
    )
    with connect(settings) as engine:
        promoted = promote(engine, settings, load_plan(engine, settings, plan.restatement_id))
    say(f"6. promoted atomically (changelog v{promoted['changelog_version']})")
    remaining = finance_drift(settings)
    say(f"7. drift vs finance after promotion: {len(remaining)} month x currency rows")
    return {
        "restatement_id": plan.restatement_id,
        "drift_months": months,
        "diff": monthly_diff(settings, plan.restatement_id),
        "remaining_drift": remaining,
        "promotion": promoted,
    }


def default_spec() -> GenerateSpec:
    return replace(GenerateSpec(), accounts=500, events_per_day=2000)
