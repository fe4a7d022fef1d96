"""Validate a recomputed restatement (Soda contracts, reference exports), or force a
failed validation through with a listed approver's name and reason."""

from __future__ import annotations

from typing import Any

from restate.actions.plan import refuse_cancelled
from restate.context import Context
from restate.events import Event
from restate.plan.plans import load_plan
from restate.settings import Settings
from restate.state.faults import crash_point


def run_validation_step(ctx: Context | Settings, restatement_id: int) -> dict[str, Any]:
    """Run the Soda contracts on restate_<id> for the plan's period and store the evidence."""
    import json

    from restate.partitions.recompute import set_status
    from restate.state import changelog
    from restate.state.duties import run_by
    from restate.validation.contracts import format_report, run_validation, store_validation

    ctx = Context.of(ctx)
    settings = ctx.settings
    with ctx.session() as engine:
        plan = load_plan(engine, settings, restatement_id)
        refuse_cancelled(engine, settings, restatement_id)
        result = run_validation(
            settings,
            engine,
            plan.restate_schema,
            plan.period_start,
            plan.period_end,
            restatement_id,
            project=ctx.project(),  # the context's parsed project: no second dbt parse
        )
        validation_id = store_validation(engine, settings, result)
        evidence = json.loads(
            engine.scalar(
                f"select result_json from {settings.meta_schema}.validations where validation_id = ?",
                [validation_id],
            )
        )
        with engine.transaction():
            set_status(
                engine, settings, restatement_id, "validated" if result.passed else "validation_failed"
            )
            changelog.append(
                engine,
                settings.meta_schema,
                "validated" if result.passed else "validation_failed",
                {"validation_id": validation_id, "evidence": evidence},
                restatement_id=restatement_id,
                actor=run_by(settings),
            )
        crash_point(settings, "validated")
        report = format_report(result)
        approved = engine.scalar(
            f"select approved_by from {settings.meta_schema}.restatements where restatement_id = ?",
            [restatement_id],
        )
    if not result.passed:
        ctx.publish(restatement_id, Event.VALIDATION_FAILED, detail=report)
    elif plan.requires_approval and not approved:
        ctx.publish(
            restatement_id,
            Event.APPROVAL_NEEDED,
            detail=(
                f"Validation passed. Approve with `restate promote {restatement_id} --approved-by NAME` "
                f"or `/restatement approve {restatement_id}` in Slack."
            ),
        )
    return {"validation_id": validation_id, "passed": result.passed, "report": report}


def force_validation(
    ctx: Context | Settings, restatement_id: int, approver: str, reason: str, run_by: str | None = None
) -> None:
    """Override a failed validation: needs a listed approver who is not the requester, and a
    reason; audited with who ran it. Approval by another approver is then required."""
    from restate.state import changelog, duties

    ctx = Context.of(ctx)
    settings = ctx.settings
    with ctx.session() as engine:
        refuse_cancelled(engine, settings, restatement_id)
        who = duties.load(engine, settings, restatement_id)
        if who.validation_id is None:
            raise ValueError(f"restatement {restatement_id} has no validation to override")
        if who.validation_passed:
            raise ValueError(f"restatement {restatement_id} passed validation; there is nothing to force")
        name = duties.check_forcer(settings, who, approver)
        with engine.transaction():
            engine.execute(
                f"update {settings.meta_schema}.validations set forced_by = ?, force_reason = ? "
                "where validation_id = ?",
                [name, reason, who.validation_id],
            )
            changelog.append(
                engine,
                settings.meta_schema,
                "validation_forced",
                {
                    "validation_id": who.validation_id,
                    "reason": reason,
                    "run_by": run_by or duties.run_by(settings),
                },
                restatement_id=restatement_id,
                actor=name,
            )
        approved = who.approved_by
    if not approved:
        ctx.publish(
            restatement_id,
            Event.APPROVAL_NEEDED,
            detail=(
                f"Validation was forced by {name}: {reason}. Another approver must approve: "
                f"`restate promote {restatement_id} --approved-by NAME` or "
                f"`/restatement approve {restatement_id}` in Slack."
            ),
        )
