"""Validate a recomputed restatement (Soda contracts, reference exports), or force a
failed validation through with a listed approver's name and reason."""

from __future__ import annotations

import json
from typing import Any

from restate.actions.plan import refuse_cancelled
from restate.context import Context
from restate.events import Event
from restate.ingest.loads import last_watermark
from restate.plan.plans import load_plan
from restate.settings import Settings
from restate.state.faults import crash_point

# The states a restatement is validated in: its chunks are all done and it is neither
# live (promoted) nor withdrawn (cancelled). A rolled-back one may be promoted again.
VALIDATABLE = ("recomputed", "validated", "validation_failed", "rolled_back")


def run_validation_step(ctx: Context | Settings, restatement_id: int) -> dict[str, Any]:
    """Run the Soda contracts on restate_<id> for the plan's period and store the evidence."""
    from restate.partitions.promotion import refresh_late_chunks
    from restate.partitions.recompute import set_status
    from restate.state import changelog, locks
    from restate.state.duties import run_by
    from restate.validation.contracts import format_report, run_validation, store_validation
    from restate.validation.kept_checks import previous_validation

    ctx = Context.of(ctx)
    settings = ctx.settings
    meta = settings.meta_schema
    refreshed: list[str] = []
    with ctx.session() as engine:
        refuse_cancelled(engine, settings, restatement_id)
        # Checks compare the restated schema with production's upstream (conservation):
        # under the write lock, with the chunks loads changed since recomputed, both are
        # as of the same load; loads wait for the checks (as they wait for a promotion).
        with locks.held(engine, meta, locks.new_holder(f"validate:{restatement_id}")):
            # Read under the lock: a promotion, rollback or cancellation that held it
            # first decides whether there is anything left to check, and a promotion
            # may have moved the plan's watermark.
            plan = load_plan(engine, settings, restatement_id)  # an unknown id stops here
            status = engine.scalar(
                f"select status from {meta}.restatements where restatement_id = ?", [restatement_id]
            )
            if status not in VALIDATABLE:
                raise ValueError(
                    f"restatement {restatement_id} is {status}: only a recomputed restatement is validated"
                )
            if last_watermark(engine, meta) != plan.source_watermark:
                refreshed = refresh_late_chunks(engine, settings, plan, ctx.dbt)
            crash_point(settings, "validation_refreshed")
            result = run_validation(
                settings,
                engine,
                plan.restate_schema,
                plan.period_start,
                plan.period_end,
                restatement_id,
                project=ctx.project(),  # the context's parsed project: no second dbt parse
                # Partition-local checks that passed last time run on the changed dates only.
                previous=previous_validation(engine, settings, restatement_id),
            )
            validation_id = store_validation(engine, settings, result)
            evidence = json.loads(
                engine.scalar(
                    f"select result_json from {meta}.validations where validation_id = ?", [validation_id]
                )
            )
            with engine.transaction():
                set_status(
                    engine, settings, restatement_id, "validated" if result.passed else "validation_failed"
                )
                changelog.append(
                    engine,
                    meta,
                    "validated" if result.passed else "validation_failed",
                    {"validation_id": validation_id, "evidence": evidence, "refreshed_chunks": refreshed},
                    restatement_id=restatement_id,
                    actor=run_by(settings),
                )
        crash_point(settings, "validated")
        report = format_report(result)
        approved = engine.scalar(
            f"select approved_by from {settings.meta_schema}.restatements where restatement_id = ?",
            [restatement_id],
        )
    announce_validation(ctx, restatement_id, result.passed, report, plan.requires_approval and not approved)
    return {"validation_id": validation_id, "passed": result.passed, "report": report, "refreshed": refreshed}


def announce_validation(
    ctx: Context, restatement_id: int, passed: bool, report: str, approval_needed: bool
) -> None:
    """The notice a validation owes (its occurrence is the changelog's count of validations,
    so announcing the same validation again reaches only whoever was not served yet)."""
    if not passed:
        ctx.publish(restatement_id, Event.VALIDATION_FAILED, detail=report)
    elif approval_needed:
        ctx.publish(
            restatement_id,
            Event.APPROVAL_NEEDED,
            detail=(
                f"Validation passed. Approve with `restate promote {restatement_id} --approved-by NAME` "
                f"or `/restatement approve {restatement_id}` in Slack."
            ),
        )


def kept_validation(ctx: Context | Settings, restatement_id: int) -> dict[str, Any] | None:
    """The restatement's last validation when a resumed run changed nothing it checked:
    the restatement is still validated (or failed validation), every chunk is done and in
    the state the validation recorded, no load, promotion or rollback ran since, no
    contract, reference or finance file changed, and the restated rows' per-date digests
    are the ones it saw (a hand edit counts). None: validate again."""
    from restate.validation.contracts import current_state
    from restate.validation.kept_checks import chunk_states, previous_validation

    ctx = Context.of(ctx)
    m = ctx.settings.meta_schema
    with ctx.session() as engine:
        status = engine.scalar(
            f"select status from {m}.restatements where restatement_id = ?", [restatement_id]
        )
        if status not in ("validated", "validation_failed"):
            return None
        rows = engine.query_dicts(
            f"select validation_id, passed, forced_by, checked_at, result_json from {m}.validations "
            "where restatement_id = ? and scope = 'restatement' order by checked_at desc limit 1",
            [restatement_id],
        )
        plan = load_plan(engine, ctx.settings, restatement_id)
        if not rows or is_pending(rows[0]["result_json"]):
            return None  # never validated, or a refresh's placeholder
        if last_watermark(engine, m) != plan.source_watermark:
            return None  # loads changed what it checked
        if _inputs_changed_since(ctx.settings, rows[0]["checked_at"]):
            return None
        previous = previous_validation(engine, ctx.settings, restatement_id)
        if previous is None or previous.validation_id != rows[0]["validation_id"]:
            return None  # a promotion or rollback since, or stored before this was recorded
        states = chunk_states(engine, ctx.settings, restatement_id)
        if any(not state.startswith("done|") for state, _, _ in states.values()):
            return None
        if {k: state for k, (state, _, _) in states.items()} != previous.chunks:
            return None  # a chunk ran again since
        inputs, digests = current_state(
            engine, ctx.settings, plan.restate_schema, plan.period_start, plan.period_end,
            restatement_id, ctx.project(),
        )  # fmt: skip
        if inputs != previous.inputs:
            return None  # contracts, the env values they name, variables or declarations changed
        if digests != previous.digests:
            return None  # restated rows changed since (a hand edit)
        approved = engine.scalar(
            f"select approved_by from {m}.restatements where restatement_id = ?", [restatement_id]
        )
    last = rows[0]
    if bool(last["passed"]) != (status == "validated"):
        return None  # the status and the stored result disagree: validate again
    forced = f", forced by {last['forced_by']}" if last["forced_by"] else ""
    verdict = "passed" if last["passed"] else f"failed{forced}"
    report = (
        f"validation {last['validation_id']} kept ({verdict}): no chunk changed since it ran "
        f"at {last['checked_at']:%Y-%m-%d %H:%M:%S} UTC"
    )
    # A run killed between the validation and its notice still owes it.
    if not last["forced_by"]:
        announce_validation(
            ctx, restatement_id, bool(last["passed"]), report, plan.requires_approval and not approved
        )
    return {
        "validation_id": last["validation_id"],
        "passed": bool(last["passed"]),
        "kept": True,
        "report": report,
    }


def is_pending(result_json: Any) -> bool:
    """Whether a stored validation is the placeholder a refresh of chunks leaves until
    they are checked (restate.partitions.promotion._advance_watermark): never kept, forced
    or passed."""
    try:
        return "pending" in json.loads(result_json or "{}")
    except (TypeError, ValueError):
        return False


def _inputs_changed_since(settings: Settings, checked_at: Any) -> bool:
    """True when what the checks read besides the chunks may have changed since they ran:
    a contract file, the reference exports' declaration, a finance file. A finance
    folder that cannot be listed here (object storage) counts as changed."""
    from datetime import UTC
    from pathlib import Path

    if "://" in settings.finance:
        return True
    paths: list[Path] = []
    if settings.soda_contracts_dir is not None and settings.soda_contracts_dir.is_dir():
        paths += list(settings.soda_contracts_dir.rglob("*.yml"))
    if settings.reference_exports is not None:
        paths.append(settings.reference_exports)
    finance = Path(settings.finance)
    if finance.is_dir():
        paths += [p for p in finance.rglob("*") if p.is_file()]
    since = checked_at.replace(tzinfo=UTC).timestamp()
    for path in paths:
        try:
            if path.stat().st_mtime >= since:
                return True
        except OSError:
            return True
    return False


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
        stored = engine.scalar(
            f"select result_json from {settings.meta_schema}.validations where validation_id = ?",
            [who.validation_id],
        )
        if is_pending(stored):
            raise ValueError(
                f"restatement {restatement_id}: chunks were recomputed for loads and not checked yet; "
                f"run `restate validate {restatement_id}` before forcing anything"
            )
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
