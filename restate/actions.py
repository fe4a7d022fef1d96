"""Lifecycle actions the flows call by restatement id: approval gate, promote, rollback."""

from __future__ import annotations

import os
import socket
from typing import Any

from restate.engines import connect
from restate.planning import load_plan
from restate.settings import Settings


def awaiting_approval(settings: Settings, restatement_id: int) -> bool:
    """Approval is required (the plan, a forced validation or a closed period: see
    restate.duties), none is recorded, and validation passed (or was forced).

    A failed validation is not put in front of an approver: it must be fixed or forced first.
    """
    from restate.status import restatement_status

    with connect(settings) as engine:
        row = restatement_status(engine, settings, restatement_id)
    if row is None:
        raise ValueError(f"no restatement with id {restatement_id}")
    v = row["validation"]
    validated = v is not None and bool(v["passed"] or v["forced_by"])
    return bool(row["approval_reasons"]) and not row["approved_by"] and validated


def approve(
    settings: Settings,
    restatement_id: int,
    approver: str,
    comment: str | None,
    run_by: str | None = None,
) -> None:
    """Record the approver and comment (restatements row + changelog entry) through the
    segregation-of-duties gate; raises duties.DutyError when a rule refuses it."""
    from restate.status import approve as record

    if not approver.strip():
        raise ValueError("an approval needs the approver's name")
    with connect(settings) as engine:
        record(engine, settings, restatement_id, approver.strip(), comment or None, run_by=run_by)


def promote(settings: Settings, restatement_id: int, approved_by: str | None = None) -> dict[str, Any]:
    """Promote through the gate (validation, approval); raises promotion.GateError if refused."""
    from restate.promotion import promote as do_promote

    with connect(settings) as engine:
        return do_promote(engine, settings, load_plan(engine, settings, restatement_id), approved_by)


def rollback(
    settings: Settings, restatement_id: int, actor: str, reason: str | None, cascade: bool
) -> dict[str, Any]:
    """Restore what the last promotion replaced, in one transaction; audited."""
    from restate.promotion import rollback as do_rollback

    with connect(settings) as engine:
        return do_rollback(
            engine, settings, load_plan(engine, settings, restatement_id), actor, reason, cascade
        )


def cancel(settings: Settings, restatement_id: int, reason: str) -> dict[str, Any]:
    """Withdraw a restatement that is not live: it can no longer be run, validated or
    promoted. Under the production write lock (a promotion in flight finishes first) and
    audited with who ran it. Its schema restate_<id> stays as evidence."""
    from restate import changelog, locks
    from restate.duties import run_by
    from restate.recompute import set_status

    if not reason.strip():
        raise ValueError("a cancellation needs a reason (--reason)")
    meta = settings.meta_schema
    with connect(settings) as engine:
        holder = locks.new_holder(f"cancel:{restatement_id}")
        with locks.held(engine, meta, holder):
            status = engine.scalar(
                f"select status from {meta}.restatements where restatement_id = ?", [restatement_id]
            )
            if status is None:
                raise ValueError(f"no restatement with id {restatement_id} (see `restate status`)")
            if status == "promoted":
                raise ValueError(
                    f"restatement {restatement_id} is promoted (live in production): roll it back "
                    f"with `restate rollback {restatement_id} --by NAME` first"
                )
            if status == "cancelled":
                raise ValueError(f"restatement {restatement_id} is already cancelled")
            with engine.transaction():
                locks.assert_held(engine, meta, holder)
                set_status(engine, settings, restatement_id, "cancelled")
                version = changelog.append(
                    engine,
                    meta,
                    "cancelled",
                    {"reason": reason.strip(), "status_before": status},
                    restatement_id=restatement_id,
                    actor=run_by(settings),
                )
    return {
        "restatement_id": restatement_id,
        "status": "cancelled",
        "was": status,
        "changelog_version": version,
    }


def worker_identity() -> str:
    """host:pid of the process running a chunk (chunks may run on task workers)."""
    return f"{socket.gethostname()}:{os.getpid()}"
