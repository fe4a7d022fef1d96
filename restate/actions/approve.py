"""Approve a restatement through the segregation-of-duties gate."""

from __future__ import annotations

from restate.context import Context
from restate.settings import Settings


def awaiting_approval(ctx: Context | Settings, restatement_id: int) -> bool:
    """Approval is required (the plan, a forced validation or a closed period: see
    restate.state.duties), none is recorded, and validation passed (or was forced).

    A failed validation is not put in front of an approver: it must be fixed or forced first.
    """
    from restate.state.status import restatement_status

    ctx = Context.of(ctx)
    settings = ctx.settings
    with ctx.session() as engine:
        row = restatement_status(engine, settings, restatement_id)
    if row is None:
        raise ValueError(f"no restatement with id {restatement_id}")
    v = row["validation"]
    validated = v is not None and bool(v["passed"] or v["forced_by"])
    return bool(row["approval_reasons"]) and not row["approved_by"] and validated


def approve(
    ctx: Context | Settings,
    restatement_id: int,
    approver: str,
    comment: str | None,
    run_by: str | None = None,
) -> None:
    """Record the approver and comment (restatements row + changelog entry) through the
    segregation-of-duties gate; raises duties.DutyError when a rule refuses it."""
    from restate.state.status import approve as record

    if not approver.strip():
        raise ValueError("an approval needs the approver's name")
    ctx = Context.of(ctx)
    settings = ctx.settings
    with ctx.session() as engine:
        record(engine, settings, restatement_id, approver.strip(), comment or None, run_by=run_by)
