"""Command line: `restate --help` lists every command."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from restate.settings import get_settings

app = typer.Typer(
    help="Finance-grade restatement of analytics tables (DuckDB by default, Snowflake in prod).",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


def emit_json(data: Any) -> None:
    """Print machine-readable output for scripts (--json)."""
    typer.echo(json.dumps(data, indent=2, default=str))


def render_table(title: str, rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    table = Table(title=title, show_lines=False)
    cols = columns or (list(rows[0]) if rows else [])
    for c in cols:
        table.add_column(c, justify="right" if rows and _is_num(rows[0].get(c)) else "left")
    for r in rows:
        table.add_row(*[_fmt(r.get(c)) for c in cols])
    console.print(table)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) or type(v).__name__ == "Decimal"


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if type(v).__name__ == "Decimal" or isinstance(v, float):
        return f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


@app.command()
def init(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Create the state schema (restate_meta) and its tables; safe to run again."""
    from restate.engines import connect
    from restate.meta import init_meta

    s = get_settings()
    with connect(s) as engine:
        tables = init_meta(engine, s.meta_schema)
    if as_json:
        emit_json({"schema": s.meta_schema, "tables": tables})
    else:
        console.print(f"[green]ok[/] {s.meta_schema}: {', '.join(tables)}")


@app.command()
def generate(
    months: int = typer.Option(14, min=1, help="months of history ending at --end-date"),
    end_date: datetime = typer.Option("2026-10-31", formats=["%Y-%m-%d"], help="last event date"),
    accounts: int = typer.Option(500, min=1, help="number of customer accounts"),
    events_per_day: int = typer.Option(2000, min=1, help="approximate invoices+others per day"),
    seed: int = typer.Option(42, help="random seed: same seed, same files"),
    ingested_after: datetime | None = typer.Option(
        None, help="land only rows processed after this time"
    ),
    ingested_until: datetime | None = typer.Option(
        None, help="land only rows processed up to this time"
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Write deterministic synthetic billing events and the matching finance exports."""
    import duckdb

    from restate.generate import GenerateSpec
    from restate.generate import generate as run_generate

    s = get_settings()
    spec = GenerateSpec(
        end_date=end_date.date(),
        months=months,
        accounts=accounts,
        events_per_day=events_per_day,
        seed=seed,
        ingested_after=ingested_after,
        ingested_until=ingested_until,
    )
    con = duckdb.connect()
    con.execute("set enable_progress_bar = false")
    with console.status("generating events"):
        started = datetime.now()
        result = run_generate(spec, s.landing, s.finance, con)
        elapsed = (datetime.now() - started).total_seconds()
    out = {
        "rows_landed": result.rows_landed,
        "rows_total": result.rows_total,
        "period": f"{spec.start_date}..{spec.end_date}",
        "finance_days": result.finance_days,
        "landing": s.landing,
        "finance": s.finance,
        "seconds": round(elapsed, 2),
    }
    if as_json:
        emit_json(out)
    else:
        console.print(
            f"[green]landed[/] {result.rows_landed:,} raw rows for {out['period']} in "
            f"{elapsed:.1f}s -> {s.landing}; finance exports for {result.finance_days} days "
            f"-> {s.finance}"
        )


@app.command()
def load(
    prefect: bool = typer.Option(
        False, "--prefect", help="run as the Prefect flow (starts a local server if none set)"
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run the incremental pipeline once for everything landed since the last watermark."""
    s = get_settings()
    if prefect:
        from flows.incremental import incremental_load

        result = incremental_load()
    else:
        from restate.pipeline import load_once

        with console.status("incremental load") as status:
            result = load_once(s, on_step=lambda msg: status.update(msg))
    if as_json:
        emit_json(result.as_dict())
        return
    if result.status == "no_new_data":
        console.print(f"nothing new since watermark {result.watermark_before}")
        return
    console.print(
        f"[green]loaded[/] {result.rows_new:,} new raw rows ({result.rows_in_window:,} read "
        f"with lookback), {result.rows_quarantined:,} quarantined, "
        f"{result.partitions_touched:,} event dates recomputed; watermark "
        f"{result.watermark_before} -> {result.watermark_after} ({result.duration_s:.1f}s)"
    )


@app.command()
def revenue(
    start: datetime | None = typer.Option(None, formats=["%Y-%m-%d"], help="first month"),
    end: datetime | None = typer.Option(None, formats=["%Y-%m-%d"], help="last month"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show production revenue per month and currency (what dashboards read)."""
    from restate.engines import connect
    from restate.reports import monthly_revenue

    s = get_settings()
    with connect(s) as engine:
        rows = monthly_revenue(
            engine, s.prod_schema, start.date() if start else None, end.date() if end else None
        )
    if as_json:
        emit_json(rows)
    else:
        render_table(f"{s.prod_schema}.fct_revenue_monthly", rows)


@app.command()
def quarantine(
    list_rows: bool = typer.Option(False, "--list", help="list the quarantined rows"),
    reason: str | None = typer.Option(None, help="only this rejection reason"),
    limit: int = typer.Option(50, help="rows to list"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Quarantined rows: counts by reason and month, or the rows themselves."""
    from restate.engines import connect
    from restate.reports import quarantine_rows, quarantine_summary

    s = get_settings()
    with connect(s) as engine:
        if list_rows:
            rows = quarantine_rows(engine, s.prod_schema, reason, limit)
        else:
            rows = quarantine_summary(engine, s.prod_schema)
    if as_json:
        emit_json(rows)
    else:
        render_table("quarantined rows", rows)
        if not list_rows:
            console.print("list them: restate quarantine --list [--reason REASON]")


if __name__ == "__main__":
    app()
