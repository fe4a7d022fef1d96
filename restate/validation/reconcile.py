"""Nightly reconciliation of production against the reference exports.

Every night (flows/reconciliation.py, 02:00 UTC) production's marts are checked
for the last ``reconcile_days`` closed days - days up to yesterday that every
reference export covers - with the same Soda contracts that gate a promotion, and
each declared drift metric of each reference export (restate/validation/reference.py) is
compared with its mart per grain row at the export's tolerance.

Drift comes only from disagreement with a reference or from the contract checks the
declarations name as drift (``drift_checks``, e.g. broken row conservation); every
other failing or warning check is reported as a warning and never drafts or alerts.
The result is stored in ``<meta>.reconciliations`` and the changelog. On drift the
drifted period (month-aligned) gets a drafted restatement plan of the drifted marts,
ready to run, with the project's root-cause evidence attached when it declares an
explainer (``RESTATE_EXPLAINER``); the alert itself (``drift_detected``) is delivered
by the notifications package.
"""

from __future__ import annotations

import calendar
import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from restate.context import Context
from restate.engines.base import Engine
from restate.settings import Settings
from restate.state import changelog
from restate.state.clock import utc_now
from restate.validation import reference

DRAFT_REQUESTER = "nightly-reconciliation"


@dataclass
class Reconciliation:
    reconciliation_id: str
    checked_at: datetime
    period_start: date
    period_end: date
    passed: bool
    validation_id: str | None
    failed_checks: list[dict[str, Any]]
    drift_days: list[dict[str, Any]]
    drift_months: list[str]
    # Checks that failed or warned without being drift (see DRIFT_CHECKS): reported only.
    warnings: list[dict[str, Any]] = field(default_factory=list)
    draft_start: date | None = None
    draft_end: date | None = None
    draft_restatement_id: int | None = None
    draft_error: str | None = None
    explanation: dict[str, Any] | None = None
    explanation_text: str | None = None
    notices: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(json.dumps(asdict(self), default=str))
        return data


def closed_period(engine: Engine, settings: Settings, days: int, today: date) -> tuple[date, date] | None:
    """The last ``days`` days that are over (before today) and covered by every reference export."""
    lasts = [reference.last_reference_date(engine, settings, e) for e in reference.declared(settings)]
    if not lasts or any(d is None for d in lasts):
        return None
    end = min(today - timedelta(days=1), *[d for d in lasts if d is not None])
    return end - timedelta(days=days - 1), end


def drift_days(engine: Engine, settings: Settings, start: date, end: date) -> list[dict[str, Any]]:
    """Grain rows (day x the export's other grain columns) x metric where production is off a
    reference export beyond its tolerance; a row on one side only counts (0 on the other)."""
    rows: list[dict[str, Any]] = []
    for export in reference.declared(settings):
        rows += reference.drift_rows(engine, settings, export, start, end)
    return sorted(rows, key=lambda r: (str(r["day"]), r["export"], r["metric"]))


def _dates(labels: list[str]) -> list[date]:
    out = []
    for label in labels:
        try:
            out.append(date.fromisoformat(str(label)[:10]))
        except ValueError:
            continue
    return out


def drafted_span(days: list[date], period_end: date) -> tuple[date, date]:
    """Whole months around the drifted days (a restatement recomputes month chunks)."""
    first, last = min(days), max(days)
    month_end = last.replace(day=calendar.monthrange(last.year, last.month)[1])
    return first.replace(day=1), min(month_end, period_end)


def _existing_draft(engine: Engine, settings: Settings, start: date, end: date) -> int | None:
    value = engine.scalar(
        f"select max(restatement_id) from {settings.meta_schema}.restatements "
        "where requested_by = ? and status = 'planned' and period_start = ? and period_end = ?",
        [DRAFT_REQUESTER, start, end],
    )
    return None if value is None else int(value)


def check_production(
    engine: Engine, settings: Settings, days: int | None = None, today: date | None = None
) -> Reconciliation:
    """Run the contracts and the reference comparison on production (no side effects but records)."""
    from restate.state.meta import init_meta
    from restate.validation.contracts import ValidationCheck, run_validation, store_validation

    init_meta(engine, settings.meta_schema)
    if not reference.declared(settings):
        raise ValueError(
            "the project declares no reference export (RESTATE_REFERENCE_EXPORTS): "
            "nothing to reconcile against"
        )
    reference.load_reference_exports(engine, settings)
    today = today or utc_now().date()
    span = closed_period(engine, settings, days or settings.reconcile_days, today)
    if span is None:
        raise ValueError(f"no reference export files under {settings.finance}: nothing to reconcile against")
    start, end = span
    result = run_validation(settings, engine, settings.prod_schema, start, end, None)
    validation_id = store_validation(engine, settings, result)
    drifted = drift_days(engine, settings, start, end)

    def entry(c: ValidationCheck) -> dict[str, Any]:
        return {
            "check": c.name,
            "qualifier": c.qualifier,
            "dataset": c.dataset,
            "outcome": c.outcome,
            "measured": c.measured,
            "threshold": c.threshold,
            "partitions": c.partitions[:50],
        }

    drift_checks = reference.declarations(settings).drift_checks
    failed = [entry(c) for c in result.failed_checks if c.qualifier in drift_checks]
    warnings = [
        entry(c)
        for c in result.checks
        if c.outcome != "passed" and not (not c.passed and c.qualifier in drift_checks)
    ]
    dated = [d for c in failed for d in _dates(c["partitions"])]
    months = sorted({str(d["day"])[:7] for d in drifted} | {d.isoformat()[:7] for d in dated})
    # A contract that could not be verified at all leaves the verdict open: not passed,
    # but with no dated partition nothing is drafted (see draft_plan).
    errors = [{"check": e, "dataset": "", "partitions": []} for e in result.errors]
    return Reconciliation(
        reconciliation_id=uuid.uuid4().hex[:12],
        checked_at=utc_now(),
        period_start=start,
        period_end=end,
        passed=not drifted and not failed and not errors,
        validation_id=validation_id,
        failed_checks=failed + errors,
        drift_days=drifted,
        drift_months=months,
        warnings=warnings,
    )


def draft_plan(ctx: Context | Settings, rec: Reconciliation) -> Reconciliation:
    """Explain the drifted months and draft (or reuse) a restatement plan; never runs it."""
    from restate.actions.plan import create_plan
    from restate.plan.plans import PlanError, PlanRequest

    ctx = Context.of(ctx)
    settings = ctx.settings
    days = [
        d["day"] if isinstance(d["day"], date) else date.fromisoformat(str(d["day"])) for d in rec.drift_days
    ]
    for check in rec.failed_checks:
        days += _dates(check.get("partitions") or [])
    if not days:
        rec.draft_error = "checks failed without a dated partition; see failed_checks"
        return rec
    start, end = drafted_span(days, rec.period_end)
    rec.draft_start, rec.draft_end = start, end
    with ctx.session() as engine:
        rec = explain_drift(engine, settings, rec)
        existing = _existing_draft(engine, settings, start, end)
    if existing is not None:
        rec.draft_restatement_id = existing
        return rec
    cause = (rec.explanation or {}).get("verdict", ["unknown"])[0]
    exports = {e.name: e for e in reference.declared(settings)}
    drifted = sorted({exports[d["export"]].model for d in rec.drift_days if d.get("export") in exports})
    if drifted:
        selector: str | None = " ".join(f"{m}+" for m in drifted)
    else:  # drift from contract checks only (e.g. rows not conserved): every restatable model
        from restate.contract.project import default_selector

        selector = default_selector(settings)
    if not selector:
        rec.draft_error = "the project has no restatable model to draft a restatement of"
        return rec
    metrics = sorted({str(d["metric"]) for d in rec.drift_days})
    request = PlanRequest(
        selector=selector,
        start=start,
        end=end,
        reason=(
            f"Nightly reconciliation {rec.reconciliation_id}: {', '.join(metrics) or 'checks'} "
            f"differ from the reference exports on {len(rec.drift_days)} rows "
            f"({', '.join(rec.drift_months)}). Likely cause: {cause}"
        ),
        requested_by=DRAFT_REQUESTER,
        ticket=f"recon-{rec.reconciliation_id}",
    )
    try:
        # The drift alert announces the draft; no separate "planned" notice.
        rec.draft_restatement_id = create_plan(ctx, request, notify=False).restatement_id
    except PlanError as exc:
        rec.draft_error = str(exc)
    return rec


def store_reconciliation(engine: Engine, settings: Settings, rec: Reconciliation) -> int:
    """The reconciliation record and its changelog entry, in one transaction."""
    body = rec.as_dict()
    with engine.transaction():
        engine.execute(
            f"insert into {settings.meta_schema}.reconciliations values (?, ?, ?, ?, ?, ?)",
            [
                rec.reconciliation_id,
                rec.checked_at,
                rec.period_start,
                rec.period_end,
                rec.passed,
                json.dumps(body, sort_keys=True),
            ],
        )
        return changelog.append(
            engine,
            settings.meta_schema,
            "reconciled" if rec.passed else "drift_detected",
            {k: body[k] for k in body if k not in ("explanation_text",)},
            restatement_id=rec.draft_restatement_id,
            actor=DRAFT_REQUESTER,
        )


def latest(engine: Engine, settings: Settings, limit: int = 10) -> list[dict[str, Any]]:
    return engine.query_dicts(
        f"select reconciliation_id, checked_at, period_start, period_end, passed "
        f"from {settings.meta_schema}.reconciliations order by checked_at desc limit ?",
        [limit],
    )


def explain_drift(engine: Engine, settings: Settings, rec: Reconciliation) -> Reconciliation:
    """Attach the project's root-cause evidence for the drafted (or the whole) period, when
    it declares an explainer (RESTATE_EXPLAINER; see restate/validation/explainer.py)."""
    from restate.validation.explainer import run_explainer

    start, end = rec.draft_start or rec.period_start, rec.draft_end or rec.period_end
    found = run_explainer(engine, settings, start, end)
    if found is not None:
        rec.explanation, rec.explanation_text = found
    return rec


def alert_text(rec: Reconciliation) -> str:
    """What the on-call engineer and the dashboard owners read in the drift alert."""
    lines = [
        f"Nightly reconciliation {rec.reconciliation_id} ({rec.period_start}..{rec.period_end}) failed.",
        f"Production differs from the reference exports on {len(rec.drift_days)} rows "
        f"in {', '.join(rec.drift_months) or 'no month'}.",
    ]
    lines += [f"Failed check: {c['check']}" for c in rec.failed_checks[:10]]
    lines += [f"Warning (no drift): {w['check']}" for w in rec.warnings[:10]]
    if rec.draft_restatement_id is not None:
        lines.append(
            f"Drafted restatement #{rec.draft_restatement_id} for {rec.draft_start}..{rec.draft_end}: "
            f"review with `restate status {rec.draft_restatement_id}`, run with "
            f"`restate run {rec.draft_restatement_id}`."
        )
    elif rec.draft_error:
        lines.append(f"No plan drafted: {rec.draft_error}")
    if rec.explanation_text:
        lines.append(rec.explanation_text)
    return "\n".join(lines)
