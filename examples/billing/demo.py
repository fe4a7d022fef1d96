"""The billing example's whole story on the embedded default, for `make demo`.

`restate demo` calls :func:`run_demo` (``RESTATE_DEMO`` = ``examples.billing.demo:run_demo``)
and prints the summary it returns. The demo works in its own folder (default
``<data_dir>/demo``, or ``restate demo --dir``) with settings derived from the
installation's: its own DuckDB file, landing, finance exports, state and local outbox
inside that folder, no Slack/e-mail, no Snowflake. It writes ``.restate-demo`` into the
folder when it creates it, clears only a folder carrying that marker, and refuses any
other folder: it never deletes data it did not make.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb

from examples.billing.generate import GenerateSpec, generate
from restate.engines import connect
from restate.settings import Settings, prepare_prefect, use_settings
from restate.validation.diff import dimension_values

Say = Callable[[str], None]

DEMO_MARKER = ".restate-demo"
# Settings that point outside the demo folder or at the outside world: the demo's own
# settings reset them (paths then derive from the demo folder, notices go to the outbox).
_OUTSIDE = (
    "duckdb_path",
    "landing_uri",
    "finance_uri",
    "audit_key",
    "audit_key_file",
    "audit_checkpoint_file",
    "slack_token",
    "slack_signing_secret",
    "smtp_host",
    "snowflake_credentials_block",
    "aws_credentials_block",
    "s3_endpoint_url",
    "crash_at",
)


class DemoFolderError(ValueError):
    """The demo was pointed at a folder it did not create."""


def demo_folder(settings: Settings, folder: Path | None = None) -> Path:
    return Path(folder) if folder is not None else settings.data_dir / "demo"


def demo_settings(settings: Settings, folder: Path | None = None) -> Settings:
    """The installation's settings with every location moved into the demo folder."""
    fields = Settings.model_fields
    update: dict[str, Any] = {k: fields[k].default for k in _OUTSIDE if k in fields}
    update.update(
        {"data_dir": demo_folder(settings, folder).resolve(), "engine": "duckdb", "dbt_target": "dev"}
    )
    return settings.model_copy(update=update)


def claim_demo_folder(folder: Path) -> None:
    """Create the demo folder with its marker, or clear one that carries the marker.
    Any other folder (even an empty one) is refused: it is not the demo's to delete."""
    marker = folder / DEMO_MARKER
    if not folder.exists():
        folder.mkdir(parents=True)
        marker.write_text("created by `restate demo`; the demo clears this folder on every run\n")
        return
    if not folder.is_dir() or folder.is_symlink() or not marker.is_file() or marker.is_symlink():
        raise DemoFolderError(
            f"refusing to use {folder} for the demo: it was not created by `restate demo` (no "
            f"{DEMO_MARKER} file); pass a new path with `restate demo --dir PATH`"
        )
    for child in folder.iterdir():
        if child.name == DEMO_MARKER:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def run_demo(
    settings: Settings, say: Say, folder: Path | None = None, spec: GenerateSpec | None = None
) -> dict[str, Any]:
    """generate -> buggy prod -> nightly reconciliation (drift, cause, draft) -> recompute ->
    validate/diff -> promote -> notices -> reconciliation passes, in the demo's own folder
    (see demo_settings; DemoFolderError for a folder the demo did not create).

    Returns the story's figures with ``summary_title``, ``summary_rows`` (net revenue per
    month, as reported vs restated) and ``summary_note``, which `restate demo` prints."""
    claim_demo_folder(demo_folder(settings, folder))
    demo = demo_settings(settings, folder)
    prepare_prefect(demo)  # before Prefect is imported (restate demo): its home in the folder
    with use_settings(demo):  # the flows read get_settings(): the demo's, not the installation's
        out = _story(demo, say, spec or default_spec())
    out["summary_title"] = "net revenue restated minus as reported, per month, in each currency"
    out["summary_rows"] = monthly_summary(out["diff"])
    where = out["folder"]
    out["summary_note"] = (
        f"Restatement {out['restatement_id']} corrected {len(out['summary_rows'])} months of net revenue "
        f"(refunds now subtracted). The as-reported numbers stay queryable in "
        f"{demo.prod_schema}.fct_revenue_daily_as_of. Everything is in {where}; look around with "
        f"`RESTATE_DATA_DIR={where} restate log` (or status, diff {out['restatement_id']}, rollback)."
    )
    return out


def monthly_summary(diff: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Net revenue restated minus as reported, per month and currency: one column per
    currency, each in its own unit (never summed across currencies)."""
    months: dict[str, dict[str, Any]] = {}
    for row in diff:
        if row["metric"] != "net_revenue" or row.get("model", "fct_revenue_daily") != "fct_revenue_daily":
            continue
        currency = dimension_values(row.get("dimensions")).get("currency", "?")
        m = months.setdefault(row["month"], {"month": row["month"]})
        m[currency] = m.get(currency, 0) + row["restated"] - row["as_reported"]
    currencies = sorted({c for m in months.values() for c in m if c != "month"})
    return [{"month": m["month"], **{c: m.get(c, 0) for c in currencies}} for m in months.values()]


def _story(settings: Settings, say: Say, spec: GenerateSpec) -> dict[str, Any]:
    from flows.restatement import with_concurrency
    from notifications.dispatch import outbox_rows
    from restate import actions
    from restate.actions import load_once, monthly_diff, reconcile_once
    from restate.plan.plans import load_plan

    con = duckdb.connect()
    con.execute("set enable_progress_bar = false")
    gen = generate(spec, settings.landing, settings.finance, con)
    say(f"1. generated {gen.rows_landed:,} raw billing events, {spec.start_date}..{spec.end_date}")

    buggy = settings.model_copy(update={"project_vars": {**settings.project_vars, "revenue_logic": "v1"}})
    load = load_once(buggy)
    say(
        f"2. production built with the old logic (refunds left out of net revenue): "
        f"{load.rows_new:,} rows, {load.rows_quarantined:,} quarantined"
    )

    today = spec.end_date + timedelta(days=1)
    days = (spec.end_date - spec.start_date).days + 1
    rec = reconcile_once(settings, days=days, today=today)
    months = rec.drift_months
    cause = (rec.explanation or {}).get("verdict", ["?"])[0]
    say(
        f"3. nightly reconciliation {rec.reconciliation_id}: drift vs finance on {len(rec.drift_days):,} "
        f"day x currency rows in {len(months)} months ({months[0]}..{months[-1]})\n"
        f"   root cause: {cause}"
    )
    if rec.draft_restatement_id is None:
        raise RuntimeError(f"no restatement drafted: {rec.draft_error}")
    rid = rec.draft_restatement_id
    with connect(settings) as engine:
        plan = load_plan(engine, settings, rid)
    say(
        f"4. drafted restatement {rid}: {', '.join(plan.models)} (+ {', '.join(plan.follow_views)}), "
        f"{plan.period_start}..{plan.period_end}, {len(plan.chunks)} chunks, "
        f"dashboards: {', '.join(e.label for e in plan.exposures)}"
    )
    result = with_concurrency(settings.chunk_concurrency)(restatement_id=rid)
    validation = result.get("validation") or {}
    say(
        f"5. recomputed {result['recompute']['rows_written']:,} rows into {plan.restate_schema}; "
        f"validation {'passed' if validation.get('passed') else 'FAILED'}"
    )
    promoted = actions.promote(settings, rid)  # announces itself
    notices = promoted.get("notices") or {}
    say(
        f"6. promoted atomically (changelog v{promoted['changelog_version']}); "
        f"{notices.get('sent', 0)} notices to the dashboard owners"
    )
    after = reconcile_once(settings, days=days, today=today)
    say(
        f"7. reconciliation after promotion: {'passed' if after.passed else 'FAILED'} "
        f"({len(after.drift_days)} drifted rows)"
    )
    with connect(settings) as engine:
        outbox = outbox_rows(engine, settings, rid)
    by_event: dict[str, int] = {}
    for row in outbox:
        by_event[row["event"]] = by_event.get(row["event"], 0) + int(row["status"] == "sent")
    say(
        "8. notices in the local outbox "
        f"({_shown(settings.outbox_dir)}): " + ", ".join(f"{k} x{v}" for k, v in sorted(by_event.items()))
    )
    from restate.evidence import verify_pack
    from restate.evidence.pack import default_folder

    pack = default_folder(settings, rid).with_name(f"restatement-{rid}-promoted")  # the promotion notice's
    problems, info = verify_pack(pack) if pack.is_dir() else ([], {})
    say(
        f"9. evidence pack for the approver and the auditor: {_shown(pack / 'evidence.html')} "
        + (
            f"({info['files']} files, SHA256SUMS verified)"
            if pack.is_dir() and not problems
            else "(not written: see the log)"
        )
    )
    return {
        "folder": str(settings.data_dir),
        "restatement_id": rid,
        "drift_months": months,
        "diff": monthly_diff(settings, rid),
        "remaining_drift": after.drift_days,
        "promotion": promoted,
        "notices": by_event,
    }


def _shown(path: Path) -> str:
    """A path relative to the working directory when it is inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def default_spec() -> GenerateSpec:
    return replace(GenerateSpec(), accounts=500, events_per_day=2000)
