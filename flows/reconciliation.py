"""Nightly reconciliation flow: production vs the finance exports (cron 02:00 UTC)."""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from restate.engines import connect
from restate.settings import apply_process_env, get_settings
from restate.validation import reconcile


@task(cache_policy=NO_CACHE)
def check_production(days: int | None, today: date | None) -> reconcile.Reconciliation:
    with connect(get_settings()) as engine:
        return reconcile.check_production(engine, get_settings(), days, today)


@task(cache_policy=NO_CACHE)
def draft_and_explain(rec: reconcile.Reconciliation) -> reconcile.Reconciliation:
    return reconcile.draft_plan(get_settings(), rec)


@task(cache_policy=NO_CACHE)
def record(rec: reconcile.Reconciliation) -> int:
    with connect(get_settings()) as engine:
        return reconcile.store_reconciliation(engine, get_settings(), rec)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=30)
def alert(rec: reconcile.Reconciliation) -> dict[str, Any]:
    # Exactly once per (drafted restatement, event, recipient): a retry sends only what is missing.
    from notifications.lifecycle import notify_restatement

    assert rec.draft_restatement_id is not None
    report = notify_restatement(
        get_settings(), rec.draft_restatement_id, "drift_detected", detail=reconcile.alert_text(rec)
    )
    return {"sent": len(report.sent), "already_sent": len(report.already_sent), "failed": report.failed}


@flow(name="nightly-reconciliation", log_prints=True)
def nightly_reconciliation(days: int | None = None, today: date | None = None) -> dict[str, Any]:
    """Check production for the last `days` closed days (default RESTATE_RECONCILE_DAYS).

    On drift: draft a restatement plan for the drifted months, attach root-cause
    evidence, record everything and alert the owners of the affected dashboards.
    """
    apply_process_env(get_settings())
    logger = get_run_logger()
    rec = check_production(days, today)
    if not rec.passed:
        rec = draft_and_explain(rec)
    version = record(rec)
    if not rec.passed and rec.draft_restatement_id is not None:
        rec.notices = alert(rec)
    summary = reconcile.alert_text(rec) if not rec.passed else "production agrees with finance"
    create_markdown_artifact(
        key="nightly-reconciliation",
        markdown=f"```\n{summary}\n```",
        description=f"reconciliation {rec.reconciliation_id}",
    )
    logger.info(
        "reconciliation %s: %s (%s drifted rows; draft %s; changelog v%s)",
        rec.reconciliation_id,
        "passed" if rec.passed else "FAILED",
        len(rec.drift_days),
        rec.draft_restatement_id,
        version,
    )
    return rec.as_dict()
