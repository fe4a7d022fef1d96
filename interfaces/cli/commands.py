"""Command line: `restate --help` lists every command."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from contextvars import ContextVar
from datetime import date, datetime
from pathlib import Path
from typing import Any

import typer
import typer.core
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from restate.settings import get_settings

# Whether the command being run was given --json: its errors are then also JSON on stdout.
_json_errors = ContextVar("json_errors", default=False)


class _Commands(typer.core.TyperGroup):
    """Every command: a mistake the user can make (unknown id, bad date, impossible
    transition, gate refusal, a bad setting) is one line on stderr and a non-zero exit
    (1; 2 for a malformed command line), plus {"error": ...} on stdout under --json; never
    a traceback. Anything unexpected is one line too, unless `restate --debug` asks for
    the traceback."""

    def invoke(self, ctx: Any) -> Any:
        from restate.engines import session_scope

        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        token = _json_errors.set("--json" in rest)
        debug = bool(ctx.params.get("debug"))
        try:
            with session_scope():  # one warehouse session for the whole command
                return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except typer.TyperException as exc:  # click's own errors: a malformed command line
            if debug or not hasattr(exc, "format_message"):
                raise
            name = getattr(getattr(exc, "ctx", None), "command_path", None)
            hint = f" (see {name} --help)" if name else ""
            raise _fail(f"{exc.format_message()}{hint}", code=getattr(exc, "exit_code", 2)) from exc
        except Exception as exc:
            if debug:
                raise
            raise _fail(_error_line(exc)) from exc
        finally:
            _json_errors.reset(token)


def _error_line(exc: Exception) -> str:
    """What the user is told about an error: its own message where it is one of restate's
    or a setting's, else its type and message with the way to the traceback."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from restate.partitions.promotion import GateError

    if isinstance(exc, ValidationError):  # a RESTATE_* value (or option) that does not parse
        return "; ".join(
            f"RESTATE_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']} (got {e.get('input')!r})"
            for e in exc.errors()
        )
    if isinstance(exc, SettingsError):  # a RESTATE_* value that should be JSON and is not
        field = re.search(r'field "([a-z_]+)"', str(exc))
        name = f"RESTATE_{field.group(1).upper()}" if field else "a RESTATE_* setting"
        cause = f": {exc.__cause__}" if exc.__cause__ else ""
        return f'{name} must be JSON (a list or an object, e.g. \'["bob"]\' or \'{{"k": "v"}}\'){cause}'
    if isinstance(exc, ValueError | GateError):
        return str(exc)
    text = " ".join(str(exc).split())
    meta = _settings_or_none()
    if meta is not None and f"{meta.meta_schema}" in text and "not exist" in text:
        where = meta.warehouse_path if meta.engine == "duckdb" else meta.snowflake_database
        return (
            f"no restate state in the warehouse {where}: run `restate init` (or point "
            "RESTATE_DATA_DIR / RESTATE_DUCKDB_PATH at the warehouse restate uses)"
        )
    return f"{type(exc).__name__}: {text} (`restate --debug ...` shows the traceback)"


def _settings_or_none() -> Any:
    try:
        return get_settings()
    except Exception:
        return None


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"restate {version('restate')}")
        raise typer.Exit()


app = typer.Typer(
    cls=_Commands,
    help="Finance-grade restatement of analytics tables (DuckDB by default, Snowflake in prod).",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _before_every_command(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="show the traceback of an unexpected error"),
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="print the version and exit"
    ),
) -> None:
    # Prefect's home, result storage and telemetry come from the tool's settings, set before
    # any command imports Prefect (default: <data_dir>/state/prefect, not ~/.prefect).
    # The demo sets its own (inside its folder).
    from restate.settings import prepare_prefect

    if ctx.invoked_subcommand != "demo":
        prepare_prefect(get_settings())


def working(message: str) -> Any:
    """A spinner on stderr while a long step runs (stdout stays clean for --json; nothing
    is drawn when stderr is not a terminal). `.update(text)` names the current step."""
    return err_console.status(message)


def emit_json(data: Any) -> None:
    """Print machine-readable output for scripts (--json)."""
    typer.echo(json.dumps(data, indent=2, default=str))


def render_table(title: str, rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    if not rows:
        console.print(f"{title}: none")
        return
    table = Table(title=title, show_lines=False)
    cols = columns or (list(rows[0]) if rows else [])
    for c in cols:
        # Fold, never ellipsize: a money value or a reason is shown whole on a narrow terminal.
        numeric = bool(rows) and _is_num(rows[0].get(c))
        table.add_column(c, justify="right" if numeric else "left", overflow="fold")
    for r in rows:
        # Text, not markup: user values ("[/x]" in a reason) are shown as typed.
        table.add_row(*[Text(_fmt(r.get(c))) for c in cols])
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
    from restate.state.meta import init_meta

    s = get_settings()
    with connect(s) as engine:
        tables = init_meta(engine, s.meta_schema)
    if as_json:
        emit_json({"schema": s.meta_schema, "tables": tables})
    else:
        console.print(f"[green]ok[/] {s.meta_schema}: {', '.join(tables)}")


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
        from restate.actions import load_once

        with working("incremental load") as status:
            result = load_once(s, on_step=status.update)
    if as_json:
        emit_json(result.as_dict())
        return
    if result.status == "no_new_data":
        console.print(f"nothing new since watermark {result.watermark_before}")
        return
    console.print(
        f"[green]loaded[/] {result.rows_new:,} new raw rows ({result.rows_in_window:,} read "
        f"with lookback), {result.rows_quarantined:,} quarantined, "
        f"{result.partitions_touched:,} partition dates recomputed; watermark "
        f"{result.watermark_before} -> {result.watermark_after} ({result.duration_s:.1f}s)"
    )


@app.command()
def report(
    model: str = typer.Argument(..., help="a restatable model (meta.restate in the dbt project)"),
    by: str = typer.Option("month", help="sum per 'month' or 'day'"),
    start: datetime | None = typer.Option(
        None, formats=["%Y-%m-%d"], help="first day (its month with --by month)"
    ),
    end: datetime | None = typer.Option(None, formats=["%Y-%m-%d"], help="last day"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Production's declared metrics of MODEL per month (or day) and declared dimension
    (what dashboards read)."""
    from restate.contract.project import project_contract
    from restate.engines import connect
    from restate.ingest.reports import metric_report

    if by not in ("month", "day"):
        raise _fail("--by must be 'month' or 'day'")
    s = get_settings()
    contract = project_contract(s).model(model)
    with connect(s) as engine:
        rows = metric_report(engine, s.prod_schema, contract, by, _date(start), _date(end))
    if as_json:
        emit_json(rows)
    else:
        render_table(f"{s.prod_schema}.{contract.model} per {by}", rows)


@app.command()
def quarantine(
    list_rows: bool = typer.Option(False, "--list", help="list the quarantined rows"),
    reason: str | None = typer.Option(None, help="only this rejection reason"),
    limit: int = typer.Option(50, help="rows to list"),
    by: str = typer.Option("month", help="count per 'month' or 'day'"),
    files: bool = typer.Option(False, "--files", help="list the quarantined landing files"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Quarantined rows: counts by reason and month (or day), or the rows themselves;
    landing files that could not be read at all, with the reason (--files).

    Valid rows of the same load always continue downstream; nothing is dropped, and
    no landing file is moved or deleted.
    """
    from restate.contract.project import project_contract
    from restate.engines import connect
    from restate.ingest.reports import quarantine_rows, quarantine_summary, quarantined_files

    s = get_settings()
    project = project_contract(s)
    with connect(s) as engine:
        bad_files = quarantined_files(engine, s.meta_schema)
        if files:
            rows = bad_files
        elif list_rows:
            rows = quarantine_rows(engine, s.prod_schema, project, reason, limit)
        else:
            if by not in ("month", "day"):
                raise _fail("--by must be 'month' or 'day'")
            rows = quarantine_summary(engine, s.prod_schema, project, by)
    if as_json:
        emit_json(rows)
    elif files:
        render_table("quarantined files", rows)
    else:
        render_table("quarantined rows", rows)
        if not list_rows:
            console.print("list them: restate quarantine --list [--reason REASON]")
            if bad_files:
                render_table("quarantined files", bad_files)


@app.command()
def reconcile(
    days: int | None = typer.Option(None, help="closed days to check (default RESTATE_RECONCILE_DAYS)"),
    today: datetime | None = typer.Option(None, formats=["%Y-%m-%d"], help="pretend today is this date"),
    notify: bool = typer.Option(True, help="alert the dashboard owners on drift"),
    use_prefect: bool = typer.Option(False, "--prefect", help="run as a Prefect flow run"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Check production against the finance exports once (what the nightly flow does).

    On drift it drafts a restatement plan for the drifted months, attaches the root
    cause (`restate explain`) and alerts the owners. Exit code 2 when drift was found.
    """
    from restate.actions import reconcile_once
    from restate.validation.reconcile import alert_text

    s = get_settings()
    try:
        if use_prefect:
            from flows.reconciliation import nightly_reconciliation

            out = nightly_reconciliation(days=days, today=_date(today))
        else:
            with working("reconciling production against the reference exports") as status:
                rec = reconcile_once(s, days, _date(today), notify, on_step=status.update)
            out = rec.as_dict()
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    if as_json:
        emit_json(out)
    elif out["passed"]:
        console.print(
            f"[green]passed[/] reconciliation {out['reconciliation_id']}: production agrees with "
            f"finance for {out['period_start']}..{out['period_end']}"
        )
        for warning in out.get("warnings") or []:
            where = ", ".join(warning.get("partitions") or []) or "-"
            console.print(f"[yellow]warning[/] (no drift): {escape(warning['check'])}: {where}")
    else:
        from restate.validation.reconcile import Reconciliation

        render_table("drift by month", _drift_by_month(out["drift_days"]))
        fields = set(Reconciliation.__dataclass_fields__)
        console.print(alert_text(Reconciliation(**{k: v for k, v in out.items() if k in fields})))
    if not out["passed"]:
        raise typer.Exit(code=2)


def _drift_by_month(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drift rows ({day, <grain columns>, metric, prod_value, reference_value, delta,
    export}) summed per month, export, grain column values and metric."""
    from decimal import Decimal

    fixed = {"day", "metric", "prod_value", "reference_value", "delta", "export"}
    months: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        grain = {k: v for k, v in r.items() if k not in fixed}
        key = (str(r["day"])[:7], str(r.get("export") or ""), *map(str, grain.values()), str(r["metric"]))
        m = months.setdefault(
            key,
            {
                "month": key[0],
                "export": r.get("export"),
                **grain,
                "metric": r["metric"],
                "days": 0,
                "prod_value": Decimal(0),
                "reference_value": Decimal(0),
            },
        )
        m["days"] += 1
        m["prod_value"] += Decimal(str(r["prod_value"]))
        m["reference_value"] += Decimal(str(r["reference_value"]))
    for m in months.values():
        m["delta"] = m["prod_value"] - m["reference_value"]
    return [months[k] for k in sorted(months)]


@app.command()
def explain(
    start: datetime = typer.Option(..., formats=["%Y-%m-%d"], help="first partition date"),
    end: datetime = typer.Option(..., formats=["%Y-%m-%d"], help="last partition date"),
    as_json: bool = typer.Option(False, "--json", help="print the evidence"),
) -> None:
    """Why production differs from the reference exports for a period, as the project's
    explainer (RESTATE_EXPLAINER) measures it."""
    from restate.engines import connect
    from restate.validation.explainer import run_explainer

    s = get_settings()
    with connect(s) as engine, working(f"explaining {start.date()}..{end.date()}"):
        found = run_explainer(engine, s, start.date(), end.date())
    if found is None:
        raise _fail("this project declares no explainer (RESTATE_EXPLAINER)")
    evidence, text = found
    if as_json:
        emit_json(evidence)
    else:
        console.print(text, markup=False, highlight=False)


def _fail(message: str, code: int = 1) -> typer.Exit:
    """One line on stderr (the message is text, not markup), and {"error": ...} on stdout
    when the command was given --json; raise the returned Exit."""
    line = " ".join(message.split())
    err_console.print(f"[red]error:[/] {escape(line)}", soft_wrap=True)
    if _json_errors.get():
        typer.echo(json.dumps({"error": line, "exit_code": code}))
    return typer.Exit(code=code)


def _require_restatement(engine: Any, s: Any, restatement_id: int) -> None:
    """An unknown id is a user mistake: one line on stderr, exit 1."""
    found = engine.query(
        f"select 1 from {s.meta_schema}.restatements where restatement_id = ?", [restatement_id]
    )
    if not found:
        raise _fail(f"no restatement with id {restatement_id} (see `restate status`)")


def _date(value: datetime | None) -> date | None:
    return value.date() if value else None


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """List the models restate can restate (their contract) and why the others cannot."""
    from restate.contract.project import project_contract
    from restate.contract.spec import ContractError

    try:
        with console.status("reading the dbt project's manifest"):
            project = project_contract(get_settings())
    except ContractError as exc:
        raise _fail(str(exc)) from exc
    rows = [
        {
            "model": c.model,
            "restatable": "yes",
            "partition": c.date_column,
            "entity": c.entity_column or "-",
            "keys": ", ".join(c.keys),
            "metrics": ", ".join(c.metrics),
            "dimensions": ", ".join(c.dimensions),
            "upstream": f"{c.upstream.model} (processed at {c.upstream.processed_at})",
            "touched dates": c.touched_dates or "",
            "quarantine": c.quarantine.model if c.quarantine else "",
            "why not": "",
        }
        for c in project.models.values()
    ] + [
        {
            "model": name,
            "restatable": "no",
            "partition": "",
            "entity": "",
            "keys": "",
            "metrics": "",
            "dimensions": "",
            "upstream": "",
            "touched dates": "",
            "quarantine": "",
            "why not": why,
        }
        for name, why in project.not_restatable.items()
    ]
    if as_json:
        emit_json(rows)
        return
    # A contract per restatable model, a field per line (fits any terminal); then the rest.
    for row in rows:
        if row["restatable"] != "yes":
            continue
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        for key in ("model", "partition", "entity", "keys", "metrics", "dimensions", "upstream"):
            grid.add_row(key, Text(str(row[key] or "-")))
        for key in ("touched dates", "quarantine"):
            if row[key]:
                grid.add_row(key, Text(str(row[key])))
        console.print(grid)
        console.print()
    if not project.models:
        console.print("no model declares meta.restate (docs/your-project.md, step 3)")
    others = [
        {"model": r["model"], "why not restatable": r["why not"]} for r in rows if r["restatable"] == "no"
    ]
    render_table("other models", others)
    if project.landing:
        lc = project.landing
        where = f"<landing>/{lc.folder}/ ({len(lc.columns)} columns)"
        console.print(Text(f"landing: source {lc.source} <- {where}"))


@app.command()
def entities(
    model: str = typer.Argument(..., help="a restatable model with an entity column"),
    like: str | None = typer.Option(None, help="only ids containing this text"),
    limit: int = typer.Option(50, min=1, max=10_000, help="at most this many"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List the entity ids (accounts, stores, ...) of a model's upstream, for --entities."""
    from restate.contract.project import project_contract
    from restate.contract.spec import ContractError
    from restate.engines import connect

    s = get_settings()
    try:
        c = project_contract(s).model(model)
    except ContractError as exc:
        raise _fail(str(exc)) from exc
    if c.entity_column is None:
        raise _fail(f"{model} declares no meta.restate.entity_column")
    with connect(s) as engine:
        if not engine.relation_exists(s.prod_schema, c.upstream.model):
            raise _fail(f"{s.prod_schema}.{c.upstream.model} does not exist yet: run `restate load` first")
        where, params = "", []
        if like:
            where, params = f"where contains({c.entity_column}, ?)", [like]
        rows = engine.query_dicts(
            f"select {c.entity_column} as id, count(*) as upstream_rows, min({c.date_column}) as first_date, "
            f"max({c.date_column}) as last_date from {s.prod_schema}.{c.upstream.model} {where} "
            f"group by 1 order by 1 limit {int(limit)}",
            params,
        )
    if as_json:
        emit_json(rows)
        return
    render_table(f"{c.entity_column} in {s.prod_schema}.{c.upstream.model}", rows)


@app.command()
def plan(
    select: str | None = typer.Option(
        None,
        "--select",
        "-s",
        help="dbt selector of the models to restate, e.g. fct_sales_daily+ "
        "(default RESTATE_DEFAULT_SELECTOR, else every restatable model: `restate models`)",
    ),
    start: datetime = typer.Option(..., formats=["%Y-%m-%d"], help="first partition date to restate"),
    end: datetime = typer.Option(..., formats=["%Y-%m-%d"], help="last partition date to restate"),
    reason: str = typer.Option(..., help="why: recorded in the changelog and the notices"),
    requested_by: str = typer.Option(..., help="who asks for it"),
    ticket: str | None = typer.Option(None, help="ticket reference, e.g. FIN-142"),
    accounts: str | None = typer.Option(
        None,
        "--entities",
        "--accounts",
        help="comma-separated ids of the models' entity column, e.g. accounts or stores "
        "(default all; `restate entities` lists them)",
    ),
    allow_closed_period: bool = typer.Option(False, help="allow a period before the close date"),
    allow_over_budget: bool = typer.Option(False, help="allow an estimate above the budget"),
    require_approval: bool | None = typer.Option(
        None, help="require an approver (cannot waive one the installation or a closed period requires)"
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Plan a restatement: models, partition chunks, affected dashboards, estimate."""
    from restate.actions import create_plan
    from restate.plan.plans import PlanError, PlanRequest

    s = get_settings()
    if not select:
        from restate.contract.project import default_selector

        select = default_selector(s)
    if not select:
        raise _fail("name the models to restate with --select (or set RESTATE_DEFAULT_SELECTOR)")
    request = PlanRequest(
        selector=select,
        start=start.date(),
        end=end.date(),
        reason=reason,
        requested_by=requested_by,
        ticket=ticket,
        accounts=[a.strip() for a in accounts.split(",")] if accounts is not None else None,
        allow_closed_period=allow_closed_period,
        allow_over_budget=allow_over_budget,
        require_approval=require_approval,
    )
    try:
        with console.status("planning (parsing the dbt project)"):
            with working("planning (parsing the dbt project)") as status:
                p = create_plan(s, request, on_step=status.update)
    except PlanError as exc:
        raise _fail(str(exc)) from exc
    if as_json:
        emit_json(p.to_json())
        return
    console.print(f"[bold]restatement {p.restatement_id}[/] planned -> schema {p.restate_schema}")
    render_table(
        "plan",
        [
            {"item": "models restated", "value": ", ".join(p.models)},
            {"item": "views that follow", "value": ", ".join(p.follow_views) or "-"},
            {"item": "period", "value": f"{p.period_start} .. {p.period_end}"},
            {"item": "entities", "value": ", ".join(p.accounts) if p.accounts else "all"},
            {"item": "chunks", "value": str(len(p.chunks))},
            {"item": "source rows", "value": f"{p.estimate.get('source_rows', 0):,}"},
            {"item": "estimated runtime", "value": f"{p.estimate.get('estimated_seconds')} s"},
            *(
                [
                    {
                        "item": "estimated cost",
                        "value": f"${p.estimate['usd']:,.2f} ({p.estimate['credits']} credits)",
                    }
                ]
                if "usd" in p.estimate
                else []
            ),
            {"item": "approval required", "value": str(p.requires_approval)},
            {"item": "source watermark", "value": str(p.source_watermark)},
        ],
    )
    render_table(
        "affected dashboards",
        [{"dashboard": e.label, "owner": e.owner_email, "slack": e.slack_channel} for e in p.exposures],
    )
    console.print(f"next: restate run {p.restatement_id}")


@app.command()
def run(
    restatement_id: int = typer.Argument(..., help="plan id from `restate plan`"),
    use_prefect: bool = typer.Option(
        False,
        "--prefect",
        help="run as a Prefect flow run (the default when PREFECT_API_URL is set; "
        "otherwise restate runs in this process, no Prefect server needed)",
    ),
    on_worker: bool = typer.Option(
        False,
        "--on-worker",
        help="queue the run for a warm `restate worker` process and wait for it "
        "(needs PREFECT_API_URL: the server both reach)",
    ),
    pickup_timeout: float = typer.Option(
        120.0,
        "--pickup-timeout",
        min=1.0,
        help="with --on-worker: seconds to wait for a worker to take the run before giving up "
        "(the queued run is then withdrawn)",
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Recompute, validate and diff a planned restatement (resumes after a crash)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from restate.engines import connect

    s = get_settings()
    if on_worker and not s.prefect_api_url:
        raise _fail("--on-worker needs PREFECT_API_URL: the Prefect server `restate worker` serves from")
    with connect(s) as engine:
        _require_restatement(engine, s, restatement_id)  # before any work starts
    if on_worker:
        from restate.engines import release_sessions

        release_sessions()  # the worker writes the warehouse; this process only waits
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=as_json,
    ) as progress:
        bar = progress.add_task(f"restatement {restatement_id}", total=None)
        try:
            if on_worker:
                result = _run_on_worker(s, restatement_id, progress, bar, as_json, pickup_timeout)
            elif use_prefect or s.prefect_api_url:
                result = _run_as_flow(s, restatement_id, progress, bar, as_json)
            else:
                from restate.actions import run_restatement

                def on_chunk(done: int, total: int, chunk: dict[str, Any]) -> None:
                    progress.update(bar, total=total, completed=done)
                    if not as_json:
                        how = "reused" if chunk.get("reused") else "done"
                        progress.console.print(f"chunk {chunk.get('chunk_id')} {how}", markup=False)

                def on_step(message: str) -> None:
                    progress.update(bar, description=f"restatement {restatement_id}: {message}")

                result = run_restatement(s, restatement_id, on_chunk=on_chunk, on_step=on_step)
        except (typer.Exit, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise _fail(str(exc)) from exc
    v = result.get("validation") or {}
    if as_json:
        emit_json(result)
    else:
        console.print(
            f"[green]recomputed[/] {result['recompute']['done']} chunks "
            f"({result.get('reused', 0)} reused from an earlier run), "
            f"{result['recompute']['rows_written']:,} rows -> restate_{restatement_id}; "
            f"validation {'passed' if v.get('passed') else '[red]FAILED[/]'}"
        )
        _say_refreshed(v.get("refreshed"))
        if v.get("report"):
            console.print(v["report"], markup=False)
    if not v.get("passed"):
        # Scripts must see it: the gate would refuse this promotion anyway.
        raise typer.Exit(code=1)
    if not as_json:
        console.print(f"next: restate diff {restatement_id}; restate promote {restatement_id}")


def _say_refreshed(chunks: list[str] | None) -> None:
    """What a validation recomputed first: chunks loads changed since the plan."""
    if chunks:
        console.print(f"before checking, recomputed chunks loads changed since the plan: {', '.join(chunks)}")


def _run_as_flow(s: Any, restatement_id: int, progress: Any, bar: Any, as_json: bool) -> dict[str, Any]:
    """The restatement flow run (Prefect), its progress read from the warehouse's chunk rows."""
    from flows.restatement import with_concurrency

    def as_flow(s: Any, restatement_id: int) -> dict[str, Any]:
        result: dict[str, Any] = with_concurrency(s.chunk_concurrency)(restatement_id=restatement_id)
        return result

    return _watch_chunks(s, restatement_id, progress, bar, as_json, as_flow)


def _run_on_worker(
    s: Any, restatement_id: int, progress: Any, bar: Any, as_json: bool, pickup_s: float
) -> dict[str, Any]:
    """The run queued for a `restate worker` (a Prefect task run) and awaited. The wait ends
    with one line when no worker takes the run within `pickup_s`, or when the worker's
    process is gone (same host). A run no worker has taken yet is then (and on Ctrl-C)
    withdrawn: one ticket file decides between a worker taking it and this command
    withdrawing it, and Prefect's run is cancelled, so no worker runs it later unattended.
    A run a worker has taken keeps going after Ctrl-C (`restate status ID`)."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    from flows.restatement import run_on_worker, run_ticket, worker_marker
    from restate.state.runner import decide, is_alive, runner_in

    marker = worker_marker(s, restatement_id)
    earlier = runner_in(marker)  # left by a worker that died on an earlier run
    future = run_on_worker.delay(restatement_id, s.warehouse_id)
    ticket = run_ticket(s, str(future.task_run_id))
    progress.update(bar, description=f"restatement {restatement_id}: queued for a restate worker")
    queued_at, taken = time.monotonic(), False
    seen: set[str] = set()

    def withdraw() -> bool:
        """Withdraw the queued run unless a worker took it first; True when withdrawn."""
        if decide(ticket, "withdrawn") != "withdrawn":
            return False
        try:
            with get_client(sync_client=True) as client:
                client.set_task_run_state(
                    future.task_run_id, Cancelled(message="withdrawn by restate run --on-worker"), force=True
                )
        except Exception:
            pass  # the ticket alone keeps any worker from running it
        return True

    try:
        with get_client(sync_client=True) as client:
            while True:
                state = client.read_task_run(future.task_run_id).state
                if state is not None and state.is_final():
                    break
                runner = runner_in(marker)
                if not taken and (runner not in (None, earlier) or runner_in(ticket) == "taken"):
                    taken = True
                    progress.update(bar, description=f"restatement {restatement_id}: on a restate worker")
                if not taken and time.monotonic() - queued_at > pickup_s:
                    if withdraw():
                        raise RuntimeError(
                            f"no restate worker took restatement {restatement_id}'s run within "
                            f"{pickup_s:g} s (none is up, or all are busy): it was withdrawn; start "
                            "one (`restate worker`, this installation's settings and PREFECT_HOME) "
                            "and run this again"
                        )
                    taken = True  # a worker took it just now
                if runner is not None and runner != earlier and is_alive(runner) is False:
                    raise RuntimeError(
                        f"the restate worker running restatement {restatement_id} stopped ({runner}); "
                        f"with a worker up, `restate run {restatement_id} --on-worker` again resumes "
                        "(done chunks are kept)"
                    )
                # On DuckDB the worker holds the file: even a read could make its dbt fail.
                rows = _chunk_rows(s, restatement_id) if s.engine != "duckdb" else None
                _show_chunks(progress, bar, rows, seen, as_json)
                time.sleep(1.0)
    except BaseException:
        withdraw()  # a run a worker took keeps its ticket: only a queued one is withdrawn
        raise
    result: dict[str, Any] = future.result()
    return result


def _watch_chunks(
    s: Any,
    restatement_id: int,
    progress: Any,
    bar: Any,
    as_json: bool,
    run: Callable[[Any, int], dict[str, Any]],
) -> dict[str, Any]:
    """`run` in a thread, its progress read from the warehouse's chunk rows meanwhile."""
    import threading
    import time

    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = run(s, restatement_id)
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    seen: set[str] = set()
    while worker.is_alive():
        worker.join(timeout=1.0)
        _show_chunks(progress, bar, _chunk_rows(s, restatement_id), seen, as_json)
        time.sleep(0.2)
    if "error" in outcome:
        raise RuntimeError(str(outcome["error"]))
    result: dict[str, Any] = outcome["result"]
    return result


def _show_chunks(
    progress: Any, bar: Any, rows: list[tuple[str, str]] | None, seen: set[str], as_json: bool
) -> None:
    """The chunk rows read as progress: the bar, and a line per chunk newly done."""
    if rows is None:
        return
    progress.update(bar, total=len(rows), completed=sum(r[1] == "done" for r in rows))
    for chunk_id, status in rows:
        if status == "done" and chunk_id not in seen:
            seen.add(chunk_id)
            if not as_json:
                progress.console.print(f"chunk {chunk_id} done", markup=False)


def _chunk_rows(s: Any, restatement_id: int) -> list[tuple[str, str]] | None:
    """(chunk, status) of a restatement's chunks, or None when the warehouse cannot be read now."""
    from restate.engines import connect

    sql = f"select chunk_id, status from {s.meta_schema}.restatement_partitions where restatement_id = ?"
    try:
        with connect(s) as engine:
            return [(r[0], r[1]) for r in engine.query(sql, [restatement_id])]
    except Exception:
        return None


@app.command()
def validate(
    restatement_id: int = typer.Argument(...),
    force: bool = typer.Option(False, help="override a failed validation (needs approver + reason)"),
    approved_by: str | None = typer.Option(
        None, help="listed approver (not the requester) who takes responsibility for --force"
    ),
    reason: str | None = typer.Option(None, help="why the failure is acceptable"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run the Soda contracts on the restatement schema; the promotion gate reads the result."""
    from restate.actions import force_validation, run_validation_step

    s = get_settings()
    if force:
        if not (approved_by and reason):
            raise _fail("--force needs --approved-by and --reason")
        try:
            force_validation(s, restatement_id, approved_by, reason)
        except ValueError as exc:  # duties.DutyError included: the rule it broke
            raise _fail(str(exc)) from exc
        console.print(
            f"validation of {restatement_id} overridden by {approved_by}: {reason}; "
            f"another approver must approve: restate promote {restatement_id} --approved-by NAME",
            markup=False,
        )
        return
    out = run_validation_step(s, restatement_id)
    if as_json:
        emit_json(out)
    else:
        _say_refreshed(out.get("refreshed"))
        console.print(out["report"], markup=False)
    if not out["passed"]:
        raise typer.Exit(code=1)


@app.command()
def diff(
    restatement_id: int = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """As-reported vs restated per month and metric (computes the diff if missing)."""
    from restate.actions import monthly_diff, run_diff

    s = get_settings()
    rows = monthly_diff(s, restatement_id)
    if not rows:
        run_diff(s, restatement_id)
        rows = monthly_diff(s, restatement_id)
    if as_json:
        emit_json(rows)
    else:
        render_table(f"restatement {restatement_id}: as-reported vs restated", rows)


@app.command()
def promote(
    restatement_id: int = typer.Argument(...),
    approved_by: str | None = typer.Option(
        None, help="listed approver (RESTATE_APPROVERS), not the requester, when approval is required"
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Switch the restated partitions into production atomically (archiving the old ones)."""
    from restate import actions
    from restate.partitions.promotion import GateError

    s = get_settings()
    try:
        out = actions.promote(s, restatement_id, approved_by)
    except GateError as exc:
        raise _fail(str(exc)) from exc
    if out["status"] == "promoted":  # announced only when the switch happened now
        _say_notices(out.get("notices") or {}, restatement_id, "promoted", as_json)
    elif not as_json:
        console.print(
            f"restatement {restatement_id} was already promoted; nothing switched, nothing "
            f"announced (owed notices: restate notify {restatement_id} --event promoted)"
        )
    if as_json:
        emit_json(out)
    else:
        console.print(
            f"[green]{out['status']}[/] restatement {restatement_id} "
            f"(changelog v{out.get('changelog_version')}, refreshed chunks: "
            f"{len(out.get('refreshed_chunks', []))})"
        )


@app.command()
def rollback(
    restatement_id: int = typer.Argument(...),
    actor: str = typer.Option(..., "--by", help="who rolls back"),
    reason: str | None = typer.Option(None),
    cascade: bool = typer.Option(False, help="also roll back later overlapping restatements"),
    keep_later_loads: bool = typer.Option(
        False,
        "--keep-later-loads",
        help="partitions that loads changed since the promotion stay as loaded; the rest are restored",
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Restore the as-reported partitions a promotion replaced, in one transaction.

    Refuses (naming them) when loads since the promotion changed some of its partitions,
    since restoring those would drop their events; --keep-later-loads keeps them.
    """
    from restate import actions
    from restate.partitions.promotion import GateError

    s = get_settings()
    try:
        out = actions.rollback(s, restatement_id, actor, reason, cascade, keep_later_loads=keep_later_loads)
    except GateError as exc:
        raise _fail(str(exc)) from exc
    if out["status"] != "rolled_back":  # nothing was restored: nobody may be told otherwise
        raise _fail(f"restatement {restatement_id} was not rolled back: {out['status']}")
    for rid, notices in (out.get("notices") or {}).items():
        _say_notices(notices, rid, "rolled_back", as_json)
    if as_json:
        emit_json(out)
    else:
        console.print(f"[yellow]{out['status']}[/] restatement {restatement_id}")


def _say_notices(notices: dict[str, Any], restatement_id: int, event: str, as_json: bool) -> None:
    """Notices that could not go out are owed, not lost: say how to send them (stderr)."""
    if notices.get("error") or notices.get("failed") or notices.get("in_doubt"):
        err_console.print(
            f"warning: {event} notices for restatement {restatement_id} not all delivered "
            f"({notices.get('error') or notices}); retry: restate notify {restatement_id} --event {event}",
            markup=False,
        )
    elif not as_json and notices.get("sent"):
        console.print(f"{notices['sent']} notices sent ({event})")


@app.command()
def notify(
    restatement_id: int = typer.Argument(...),
    event: str = typer.Option(
        ...,
        help="restatement_planned | validation_failed | approval_needed | promoted | "
        "rolled_back | drift_detected",
    ),
    occurrence: int | None = typer.Option(
        None, help="which time the event happened (2 = the second promotion); default the latest"
    ),
    resolve: list[str] = typer.Option(
        [],
        "--resolve",
        help="an in-doubt recipient you checked by hand, e.g. slack:#finance (repeatable)",
    ),
    delivered: bool | None = typer.Option(
        None, "--delivered/--not-delivered", help="with --resolve: what you found"
    ),
    by: str | None = typer.Option(None, "--by", help="with --resolve: who checked (audited)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Send (or finish sending) one notice: recipients already served are skipped.

    A delivery interrupted mid-send (Slack, email) is listed as in doubt; check the
    channel or mailbox, then record it with --resolve RECIPIENT --delivered (it arrived)
    or --not-delivered (it is sent again now), --by NAME.
    """
    from notifications.events import NoticeEvent
    from notifications.lifecycle import notify_restatement, resolve_restatement

    try:
        NoticeEvent(event)
    except ValueError as exc:
        raise _fail(f"unknown event {event!r}") from exc
    if resolve and (delivered is None or not by):
        raise _fail("--resolve needs --delivered or --not-delivered, and --by NAME (who checked)")
    if not resolve and delivered is not None:
        raise _fail("--delivered/--not-delivered go with --resolve RECIPIENT")
    s = get_settings()
    try:
        if resolve and delivered is not None and by:
            occurrence = resolve_restatement(
                s, restatement_id, event, resolve, delivered=delivered, actor=by, occurrence=occurrence
            )
        with working(f"sending {event} notices"):
            report = notify_restatement(s, restatement_id, event, occurrence=occurrence)
    except ValueError as exc:  # never happened, unknown id, not in doubt
        raise _fail(str(exc)) from exc
    out = {
        "event": report.event,
        "sent": report.sent,
        "already_sent": report.already_sent,
        "failed": report.failed,
        "in_doubt": report.in_doubt,
    }
    if as_json:
        emit_json(out)
    else:
        console.print(
            f"{report.event}: sent {len(report.sent)}, already sent {len(report.already_sent)}, "
            f"failed {len(report.failed)}, in doubt {len(report.in_doubt)}",
            markup=False,
        )
        for recipient, why in report.failed.items():
            console.print(f"  failed: {recipient}: {why} (rerun to retry)", markup=False)
        again = f" --occurrence {occurrence}" if occurrence is not None else ""
        for recipient in report.in_doubt:
            console.print(
                f"  in doubt: {recipient}; check it, then: restate notify {restatement_id} "
                f"--event {event}{again} --resolve {recipient} --delivered|--not-delivered --by NAME",
                markup=False,
            )
    if report.failed or report.in_doubt:
        raise typer.Exit(code=1)


@app.command()
def status(
    restatement_id: int | None = typer.Argument(None),
    wide: bool = typer.Option(
        False, "--wide", help="the list with reason, requester, approver and ticket (wider than 80 columns)"
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Lifecycle state of one restatement (with ID: every detail), or of the latest ones."""
    from restate.engines import connect
    from restate.state.status import list_restatements, restatement_status
    from restate.validation.reconcile import latest

    s = get_settings()
    with connect(s) as engine:
        rows = (
            [r]
            if restatement_id is not None and (r := restatement_status(engine, s, restatement_id))
            else list_restatements(engine, s)
            if restatement_id is None
            else []
        )
        nightly = latest(engine, s, limit=1) if restatement_id is None else []
    if restatement_id is not None and not rows:
        raise _fail(f"no restatement with id {restatement_id}")
    if as_json:  # one restatement: its object; the list: a list
        emit_json(rows[0] if restatement_id is not None else rows)
        return
    if restatement_id is not None:
        _status_detail(rows[0])
        return
    table = [
        {
            "id": r["restatement_id"],
            "phase": r["phase"],
            "models": ",".join(r["models"]),
            "period": f"{r['period_start']}..{r['period_end']}",
            "chunks": f"{r['chunks_done']}/{r['chunks_total']}",
            **(
                {
                    "requested_by": r["requested_by"],
                    "approved_by": r["approved_by"],
                    "ticket": r.get("ticket"),
                    "reason": r["reason"],
                }
                if wide
                else {}
            ),
        }
        for r in rows
    ]
    render_table("restatements" + ("" if wide else " (restate status ID for one, --wide for more)"), table)
    for n in nightly:
        verdict = "[green]passed[/]" if n["passed"] else "[red]drift found[/]"
        console.print(
            f"last reconciliation {n['reconciliation_id']} at {n['checked_at']:%Y-%m-%d %H:%M} UTC: "
            f"{verdict} ({n['period_start']}..{n['period_end']})"
        )


@app.command()
def cancel(
    restatement_id: int = typer.Argument(..., help="a restatement that is not live"),
    reason: str = typer.Option(..., help="why it is withdrawn (recorded in the changelog)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Withdraw a planned, running or validated restatement (or a rolled-back one): it can
    no longer be run, validated or promoted. Audited; restate_<id> stays as evidence."""
    from restate.actions import cancel as do_cancel

    out = do_cancel(get_settings(), restatement_id, reason)
    if as_json:
        emit_json(out)
        return
    console.print(
        f"restatement {restatement_id} cancelled (was {str(out['was']).replace('_', ' ')}); "
        f"changelog v{out['changelog_version']}",
        markup=False,
    )


@app.command()
def reject(
    restatement_id: int = typer.Argument(..., help="a restatement waiting for a decision"),
    by: str = typer.Option(..., "--by", help="the approver who rejects it (RESTATE_APPROVERS)"),
    comment: str = typer.Option(..., help="why (recorded in the changelog)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """An approver turns a restatement down: it is withdrawn (never promoted, restate_<id>
    kept as evidence) and the decision is audited with the approver and the comment."""
    from restate.actions import reject as do_reject

    out = do_reject(get_settings(), restatement_id, by, comment)
    if as_json:
        emit_json(out)
        return
    console.print(
        f"restatement {restatement_id} rejected by {out['by']} (was {str(out['was']).replace('_', ' ')}); "
        f"changelog v{out['changelog_version']}",
        markup=False,
    )


def _status_detail(r: dict[str, Any]) -> None:
    """One restatement, a field per line: what `status ID` shows a person."""
    v = r.get("validation") or {}
    verdict = (
        "not run"
        if not v
        else f"{'passed' if v.get('passed') else 'FAILED'} at {str(v.get('checked_at'))[:19]}"
        + (f", forced by {v['forced_by']}" if v.get("forced_by") else "")
    )
    entities = r.get("accounts")
    fields = {
        "restatement": r["restatement_id"],
        "phase": r["phase"],
        "models": ", ".join(r["models"]),
        "period": f"{r['period_start']}..{r['period_end']}",
        "entities": entities if entities else "all",
        "chunks": f"{r['chunks_done']}/{r['chunks_total']} done"
        + (f", {r['chunks_running']} running" if r.get("chunks_running") else "")
        + (f" ({', '.join(r['runners'])})" if r.get("runners") else "")
        + (f", {r['chunks_interrupted']} interrupted" if r.get("chunks_interrupted") else "")
        + (f", {r['chunks_failed']} failed" if r.get("chunks_failed") else ""),
        "validation": verdict,
        "requested by": r["requested_by"],
        "reason": r["reason"],
        "ticket": r.get("ticket") or "",
        "approval": (
            f"approved by {r['approved_by']}"
            if r.get("approved_by")
            else ("needed: " + "; ".join(r["approval_reasons"]))
            if r.get("approval_reasons")
            else "not required"
        ),
        "schema": r.get("restate_schema") or "",
        "created": str(r.get("created_at"))[:19],
        "updated": str(r.get("updated_at"))[:19],
    }
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in fields.items():
        table.add_row(key, Text(str(value)))  # text, never markup: reasons are user input
    console.print(table)


@app.command("log")
def log_(
    restatement_id: int | None = typer.Option(None, "--id", help="only this restatement"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The changelog: what changed, when, why, who, with which code."""
    from restate.engines import connect
    from restate.state import changelog

    s = get_settings()
    with connect(s) as engine:
        rows = changelog.entries(engine, s.meta_schema, restatement_id)
        if restatement_id is not None and not rows:
            _require_restatement(engine, s, restatement_id)
    if as_json:
        emit_json(rows)
        return
    render_table(
        "changelog",
        [
            {
                "v": r["version"],
                "at": str(r["recorded_at"])[:19],
                "id": r["restatement_id"],
                "event": r["event"],
                "by": r["actor"],
                "detail": _brief(r["payload"]),
            }
            for r in rows
        ],
    )


def _brief(payload: dict[str, Any]) -> str:
    keys = ("reason", "period", "validation_id", "chunks", "rows", "recipient", "archive_versions")
    return "; ".join(f"{k}={payload[k]}" for k in keys if k in payload)[:90]


@app.command()
def demo(
    folder: Path | None = typer.Option(
        None, "--dir", help="the demo's own folder (default <data_dir>/demo); created and marked by it"
    ),
) -> None:
    """The project's demo (RESTATE_DEMO): for the bundled example, buggy production, drift,
    restatement, promotion.

    The demo runs in its own folder with its own warehouse, landing, exports and outbox;
    it refuses a folder it did not create and never touches the installation's data.
    """
    import importlib

    s = get_settings()
    target = s.demo
    if not target:
        raise _fail("this project declares no demo (RESTATE_DEMO)")
    module_name, _, attr = target.partition(":")
    try:
        run_demo = getattr(importlib.import_module(module_name), attr) if module_name and attr else None
    except (ImportError, AttributeError) as exc:
        raise _fail(f"RESTATE_DEMO {target!r} cannot be loaded: {exc}") from exc
    if not callable(run_demo):
        raise _fail(f"RESTATE_DEMO {target!r} must name a function as 'package.module:function'")
    # A folder the demo did not create: its error (a ValueError) is one line, exit 1.
    out = run_demo(s, lambda line: console.print(line, markup=False, highlight=False), folder)
    if out.get("summary_rows"):
        render_table(str(out.get("summary_title") or "summary"), out["summary_rows"])
    if out.get("summary_note"):
        console.print(str(out["summary_note"]), markup=False)


@app.command()
def worker(
    limit: int = typer.Option(1, min=1, help="task runs (restatements or chunks) at a time"),
) -> None:
    """Run restatements warm: import dbt and Soda and parse the project once, then serve
    `restate run ID --on-worker` and the chunks a restatement flow queues
    (RESTATE_CHUNK_EXECUTION=task_workers) until stopped. Needs PREFECT_API_URL."""
    from flows.worker import serve

    s = get_settings()
    if not s.prefect_api_url:
        raise _fail("restate worker needs PREFECT_API_URL: the Prefect server it serves task runs from")
    serve(s, limit=limit, say=lambda line: console.print(line, markup=False, soft_wrap=True))


slack = typer.Typer(help="Slack slash command app.", no_args_is_help=True)
app.add_typer(slack, name="slack")


@slack.command("serve")
def slack_serve(host: str = "127.0.0.1", port: int = 3000) -> None:
    """Serve /restatement (status, list, diff, approve) over HTTP for Slack."""
    from interfaces.slack import serve

    serve(get_settings(), host, port)


webhooks = typer.Typer(help="Payment webhooks (Stripe): receive, then land.", no_args_is_help=True)
app.add_typer(webhooks, name="webhooks")


@webhooks.command("serve")
def webhooks_serve(host: str = "127.0.0.1", port: int = 8088) -> None:
    """Receive Stripe's signed deliveries on POST /stripe/webhook (journaled before the 200)."""
    from interfaces.webhooks import serve

    serve(get_settings(), host, port)


@webhooks.command("flush")
def webhooks_flush(as_json: bool = typer.Option(False, "--json")) -> None:
    """Land every journaled, not yet landed event as one Parquet file in the landing."""
    from sources.stripe_webhooks import Journal

    s = get_settings()
    journal = Journal(s.webhook_journal_path)
    try:
        path = journal.flush(s, s.webhook_folder)
        counts = journal.counts()
    finally:
        journal.close()
    if as_json:
        emit_json({"landed_file": path, **counts})
    elif path is None:
        console.print(f"nothing to land ({counts['events']:,} events journaled, all landed)")
    else:
        console.print(f"landed {path} ({counts['landed']:,}/{counts['events']:,} events landed so far)")


sources_app = typer.Typer(
    help="Run a declared source once (RESTATE_SOURCES_FILE), as its deployment does.",
    no_args_is_help=True,
)
app.add_typer(sources_app, name="sources")


def _declared_sources() -> Any:
    from sources.config import SourceConfigError
    from sources.runs import declared

    try:
        return declared(get_settings())
    except SourceConfigError as exc:
        raise _fail(str(exc)) from exc


def _say_source(row: dict[str, Any]) -> None:
    figures = ", ".join(f"{k} {v}" for k, v in row.items() if k != "source" and v not in (None, {}, []))
    # Partners name their files and values: printed as they are, never read as markup.
    console.print(f"{row.get('source', 'load')}: {figures}", markup=False, highlight=False)


@sources_app.command("orders")
def sources_orders(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every declared PostgreSQL table since its cursor (keyset pages), then the load."""
    from sources import runs

    s, config = get_settings(), _declared_sources()
    with working("extracting") as status:
        tables = []
        for source in config.postgres:
            status.update(f"extracting {source.name}")
            tables.append(runs.extract_table(s, source))
        status.update("incremental load")
        load = runs.load_landed(s)  # skips at once when nothing new landed, this run or before
    if as_json:
        emit_json({"tables": tables, "load": load})
        return
    for row in tables:
        _say_source(row)
    _say_source(load)


@sources_app.command("payments")
def sources_payments(as_json: bool = typer.Option(False, "--json")) -> None:
    """The webhook journal's events not landed yet as one file, then the load."""
    from sources import runs

    s, config = get_settings(), _declared_sources()
    with working("landing the webhook journal"):
        landed = runs.flush_webhooks(s, config)
        due = runs.load_due(s, "payments", landed["rows"])
        load = runs.load_landed(s, other_source="payments") if due else {"load": None}
    if as_json:
        emit_json({"webhooks": landed, "load": load})
        return
    _say_source(landed)
    _say_source(load)


@sources_app.command("fulfilment")
def sources_fulfilment(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every partner's SFTP drop: complete files landed, drifted ones quarantined; then
    the load."""
    from sources import runs

    s, config = get_settings(), _declared_sources()
    with working("picking up partner files"):
        drops = [runs.pick_up_drop(s, d) for d in config.sftp]
        due = runs.load_due(s, "fulfilment", sum(d["rows"] for d in drops))
        load = runs.load_landed(s, other_source="fulfilment") if due else {"load": None}
    if as_json:
        emit_json({"drops": drops, "load": load})
        return
    for row in drops:
        _say_source(row)
    _say_source(load)


@app.command()
def unlock(
    by: str = typer.Option(..., "--by", help="who releases the lock"),
    reason: str = typer.Option(..., help="why (recorded in the changelog)"),
    force: bool = typer.Option(False, help="release even though its holder still renews it"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Release the production write lock left by a process that is gone; audited.

    A lock whose holder died on this machine, or whose lease ran out, is taken over by the
    next load or promotion anyway; this is for a holder on a lost host.
    """
    from restate.engines import connect
    from restate.state import locks

    s = get_settings()
    with connect(s) as engine:
        try:
            out = locks.unlock(engine, s.meta_schema, by, reason, force)
        except locks.LockError as exc:
            raise _fail(str(exc)) from exc
    if as_json:
        emit_json(out)
    elif out["released"] is None:
        console.print("the production write lock is free")
    else:
        console.print(f"released the lock held by {out['released']} (recorded in the changelog)")


@app.command()
def evidence(
    restatement_id: int = typer.Argument(..., help="the restatement to document"),
    out: Path | None = typer.Option(
        None, "--out", help="pack folder (default data_dir/evidence/restatement-ID)"
    ),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Write the evidence pack: one self-contained HTML page (request, plan, as reported vs
    restated per month, every check, overrides, approvals, audit entries with their MACs,
    code version) plus diff.csv, changelog.json, evidence.json and SHA256SUMS. The export
    is recorded in the audit log; `restate audit verify-pack FOLDER` checks it offline."""
    from notifications.evidence import export_pack
    from restate.evidence.collect import EvidenceError

    s = get_settings()
    with working(f"collecting the evidence of restatement {restatement_id}"):
        try:
            result = export_pack(s, restatement_id, out)
        except EvidenceError as exc:
            raise _fail(f"{exc} (see `restate status`)") from None
    if as_json:
        emit_json(result)
        return
    console.print(
        f"evidence pack of restatement {restatement_id}: {escape(result['folder'])}", soft_wrap=True
    )
    console.print(f"  page      {escape(result['page'])}", soft_wrap=True)
    console.print(f"  manifest  SHA256SUMS sha256 {result['manifest_sha256']}", soft_wrap=True)
    console.print(f"  audit log {escape(result['chain'])}", soft_wrap=True)
    console.print(f"  recorded as changelog entry {result['changelog_version']}")


audit = typer.Typer(help="Audit the changelog.", no_args_is_help=True)
app.add_typer(audit, name="audit")


@audit.command("verify")
def audit_verify(as_json: bool = typer.Option(False, "--json")) -> None:
    """Check the changelog's keyed MAC chain and its checkpoints; name the first bad entry."""
    from restate.engines import connect
    from restate.state import changelog

    s = get_settings()
    with connect(s) as engine:
        try:
            broken = changelog.verify(engine, s.meta_schema)
        except changelog.AuditKeyMissing as exc:
            if as_json:
                emit_json({"ok": False, "key_available": False, "reason": str(exc)})
                raise typer.Exit(code=1) from None
            raise _fail(f"cannot verify the changelog: {exc}") from None
        count = engine.scalar(f"select count(*) from {s.meta_schema}.changelog")
        head = changelog.chain_head(engine, s.meta_schema)
    checkpoints = changelog.read_checkpoints(s, s.meta_schema)
    latest = max((c.version for c in checkpoints), default=None)
    if as_json:
        emit_json(
            {
                "ok": broken is None,
                "key_available": True,
                "entries": count,
                "chain_head": head,
                "checkpoints": len(checkpoints),
                "latest_checkpoint": latest,
                "broken_version": broken.version if broken else None,
                "reason": broken.reason if broken else None,
            }
        )
    elif broken is None:
        where = (
            f"{len(checkpoints)} checkpoints match (latest v{latest})"
            if checkpoints
            else f"[yellow]no checkpoints in {escape(str(s.audit_checkpoint_path))}[/]"
        )
        console.print(
            f"[green]ok[/] changelog intact: {count} entries, head {escape(head or 'none')}; {where}",
            soft_wrap=True,
        )
    else:
        console.print(f"[red]TAMPERED[/] entry {broken.version}: {escape(broken.reason)}", soft_wrap=True)
    if broken is not None:
        raise typer.Exit(code=1)


@audit.command("verify-pack")
def audit_verify_pack(
    pack: Path = typer.Argument(..., help="an evidence pack folder, or a zip of one"),
    key_file: Path | None = typer.Option(
        None, "--key-file", help="the audit key's file: also recompute every entry's MAC"
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Check an evidence pack offline (no warehouse, no settings): exactly the pack's files,
    each against SHA256SUMS, the changelog slice well formed. Without the key that shows no
    file changed without new sums; with the audit key (--key-file, or RESTATE_AUDIT_KEY)
    the manifest's MAC and every entry's MAC are checked, so nothing can have changed.
    Exit 1 when anything is off, 2 for a missing pack or key file."""
    import os

    from restate.evidence import verify_pack
    from restate.evidence.pack import PackError

    if not pack.exists():
        raise _fail(f"no such pack: {pack}", code=2)
    key: bytes | None = None
    if key_file is not None:
        try:
            key = key_file.read_text().strip().encode() or None
        except OSError as exc:
            raise _fail(f"cannot read the key file {key_file}: {exc.strerror}", code=2) from None
        except UnicodeDecodeError:
            raise _fail(f"the key file {key_file} is not text: is it the audit key?", code=2) from None
    elif os.environ.get("RESTATE_AUDIT_KEY"):
        key = os.environ["RESTATE_AUDIT_KEY"].encode()
    try:
        problems, info = verify_pack(pack, key)
    except PackError as exc:
        if as_json:
            emit_json({"ok": False, "problems": [str(exc)]})
        else:
            console.print(f"[red]BAD[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(code=1) from None
    except OSError as exc:
        raise _fail(f"cannot read the pack {pack}: {exc.strerror or exc}") from None
    if as_json:
        emit_json({"ok": not problems, **info, "problems": [str(p) for p in problems]})
    elif not problems:
        proof = (
            "with the key: the manifest's MAC and every entry's MAC check, nothing was changed"
            if info["macs_checked"]
            else "no key given: no file changed without new sums (--key-file proves the sums are restate's)"
        )
        console.print(
            f"[green]ok[/] {info['files']} files match SHA256SUMS (sha256 {info['manifest_sha256']}); "
            f"{info['entries']} audit entries; {proof}",
            soft_wrap=True,
        )
    else:
        for p in problems:
            console.print(f"[red]BAD[/] {escape(str(p))}", soft_wrap=True)
    if problems:
        raise typer.Exit(code=1)


if __name__ == "__main__":
    app()
