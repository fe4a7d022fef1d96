"""Segregation of duties: the one approval gate the CLI, the Prefect form and Slack use.

Rules:
- approvers come from a configured list (settings.approvers; each Slack id in
  settings.slack_approvers counts as the identity `slack:<id>`);
- the approver is not the requester; whoever forced a failed validation is a listed
  approver and not the requester; the approver is not whoever forced the validation;
- approval is required when the plan says so (by default on the production engine),
  when a validation was forced, and when the period is closed;
- every approval, forced validation and promotion records who ran the command
  (`run_by`) apart from the approver it names.

Names are compared without case and surrounding blanks, so "Ana" cannot approve what
"ana" requested.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from datetime import date

from restate.engines.base import Engine
from restate.partitions.promotion import GateError
from restate.settings import Settings

SLACK_PREFIX = "slack:"


class DutyError(GateError, ValueError):
    """An approval or override refused by a segregation-of-duties rule; the message names it."""


def _key(name: str | None) -> str:
    return (name or "").strip().casefold()


def approvers(settings: Settings) -> list[str]:
    """The configured approvers, Slack ids as `slack:<id>`, in order, without repeats."""
    names = [*settings.approvers, *(f"{SLACK_PREFIX}{u}" for u in settings.slack_approvers)]
    out: list[str] = []
    for name in (n.strip() for n in names):
        if name and _key(name) not in {_key(o) for o in out}:
            out.append(name)
    return out


def run_by(settings: Settings) -> str:
    """Who runs this command: settings.actor (RESTATE_ACTOR), else the OS user."""
    if settings.actor and settings.actor.strip():
        return settings.actor.strip()
    try:
        return getpass.getuser()
    except Exception:  # no login name in this environment (e.g. a container uid)
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def approval_required_by_default(settings: Settings) -> bool:
    """settings.require_approval when set; otherwise True on Snowflake, False on DuckDB."""
    if settings.require_approval is not None:
        return settings.require_approval
    return settings.engine == "snowflake"


def closed_period(settings: Settings, period_start: date) -> bool:
    return settings.close_date is not None and period_start < settings.close_date


def plan_requires_approval(settings: Settings, requested: bool | None, period_start: date) -> bool:
    """Whether a new plan needs an approver. A request may add the requirement, never waive
    what the installation requires; a closed period always needs one."""
    required = approval_required_by_default(settings) or closed_period(settings, period_start)
    if requested is False and required:
        why = "the period is closed" if closed_period(settings, period_start) else "RESTATE_REQUIRE_APPROVAL"
        raise DutyError(f"approval is required for this restatement ({why}); a plan cannot waive it")
    return required or bool(requested)


@dataclass(frozen=True)
class Duties:
    """Who did what so far on one restatement (read from restate_meta)."""

    restatement_id: int
    status: str
    requested_by: str
    approved_by: str | None
    requires_approval: bool
    period_start: date
    validation_id: str | None
    validation_passed: bool | None
    forced_by: str | None


def load(engine: Engine, settings: Settings, restatement_id: int) -> Duties:
    meta = settings.meta_schema
    rows = engine.query_dicts(
        f"select status, requested_by, approved_by, requires_approval, period_start "
        f"from {meta}.restatements where restatement_id = ?",
        [restatement_id],
    )
    if not rows:
        raise ValueError(f"no restatement with id {restatement_id} (see `restate status`)")
    r = rows[0]
    v = engine.query_dicts(
        f"select validation_id, passed, forced_by from {meta}.validations "
        "where restatement_id = ? order by checked_at desc limit 1",
        [restatement_id],
    )
    latest = v[0] if v else {}
    return Duties(
        restatement_id=restatement_id,
        status=str(r["status"]),
        requested_by=str(r["requested_by"]),
        approved_by=r["approved_by"] if approval_still_counts(engine, meta, restatement_id) else None,
        requires_approval=bool(r["requires_approval"]),
        period_start=r["period_start"],
        validation_id=latest.get("validation_id"),
        validation_passed=latest.get("passed"),
        forced_by=latest.get("forced_by"),
    )


def approval_still_counts(engine: Engine, meta: str, restatement_id: int) -> bool:
    """An approval covers what was in front of the approver: one given before the
    latest rollback or forced validation does not count for what came after."""
    row = engine.query(
        f"select max(case when event = 'approved' then version end), "
        f"max(case when event in ('rolled_back', 'validation_forced') then version end) "
        f"from {meta}.changelog where restatement_id = ?",
        [restatement_id],
    )
    approved, voided = row[0] if row else (None, None)
    if voided is None:
        return True
    return approved is not None and approved > voided


def approval_reasons(settings: Settings, duties: Duties) -> list[str]:
    """Why this restatement needs an approver (empty: it does not)."""
    reasons = []
    if duties.requires_approval:
        reasons.append("the plan requires it")
    if duties.forced_by:
        reasons.append(f"validation was forced by {duties.forced_by}")
    if closed_period(settings, duties.period_start):
        reasons.append(f"closed period: it starts before the close date {settings.close_date}")
    return reasons


def eligible(settings: Settings, duties: Duties) -> list[str]:
    """Listed approvers who may still approve (neither the requester nor the forcer)."""
    taken = {_key(duties.requested_by), _key(duties.forced_by)}
    return [a for a in approvers(settings) if _key(a) not in taken]


def _names(names: list[str]) -> str:
    return ", ".join(names) or "none left (add one to RESTATE_APPROVERS)"


def _listed(settings: Settings, name: str, others: list[str]) -> str:
    """The configured spelling of `name`; `others` are named in the refusal."""
    listed = approvers(settings)
    if not listed:
        raise DutyError("no approvers configured: set RESTATE_APPROVERS")
    match = next((a for a in listed if _key(a) == _key(name)), None)
    if match is None:
        raise DutyError(
            f"{name.strip() or '(no name)'} is not a configured approver; approvers: {_names(others)}"
        )
    return match


def require_listed(settings: Settings, name: str) -> str:
    """The configured spelling of an approver's name; raises DutyError for anyone else."""
    return _listed(settings, name, approvers(settings))


def _identities(settings: Settings, name: str) -> set[str]:
    keys = {_key(name)}
    if name.startswith(SLACK_PREFIX):
        person = settings.slack_people.get(name.removeprefix(SLACK_PREFIX))
        if person:
            keys.add(_key(person))
    return keys


def _same_person(settings: Settings, name: str | None, other: str | None) -> bool:
    """Whether two recorded names are one person: equal, or a Slack id (`slack:<id>`) and
    the name RESTATE_SLACK_PEOPLE gives that user."""
    if not name or not other:
        return False
    return bool(_identities(settings, name) & _identities(settings, other))


def check_approver(settings: Settings, duties: Duties, approver: str) -> str:
    """Raise DutyError unless `approver` may approve this restatement; return the listed name."""
    rid = duties.restatement_id
    others = eligible(settings, duties)
    if not approvers(settings):
        raise DutyError("no approvers configured: set RESTATE_APPROVERS")
    if _same_person(settings, approver, duties.requested_by):
        raise DutyError(
            f"{duties.requested_by} requested restatement {rid} and cannot approve it; "
            f"approvers: {_names(others)}"
        )
    if duties.forced_by and _same_person(settings, approver, duties.forced_by):
        raise DutyError(
            f"{duties.forced_by} forced the validation of restatement {rid} and cannot also "
            f"approve it; approvers: {_names(others)}"
        )
    return _listed(settings, approver, others)


def check_forcer(settings: Settings, duties: Duties, forcer: str) -> str:
    """Raise DutyError unless `forcer` may override this restatement's failed validation."""
    rid = duties.restatement_id
    taken = {_key(duties.requested_by), _key(duties.approved_by)}
    others = [a for a in approvers(settings) if _key(a) not in taken]
    if not approvers(settings):
        raise DutyError("no approvers configured: set RESTATE_APPROVERS")
    if _key(forcer) == _key(duties.requested_by):
        raise DutyError(
            f"{duties.requested_by} requested restatement {rid} and cannot force its validation; "
            f"approvers: {_names(others)}"
        )
    if duties.approved_by and _key(forcer) == _key(duties.approved_by):
        raise DutyError(
            f"{duties.approved_by} approved restatement {rid} and cannot also force its validation; "
            f"approvers: {_names(others)}"
        )
    return _listed(settings, forcer, others)


def check_promotion(settings: Settings, duties: Duties, approved_by: str | None) -> str | None:
    """The approver a promotion goes ahead under (None when none is needed or named).

    Re-checks a recorded approval too: the list or the forcer may have changed since.
    """
    approver = approved_by if approved_by and approved_by.strip() else duties.approved_by
    reasons = approval_reasons(settings, duties)
    if approver:
        return check_approver(settings, duties, approver)
    if reasons:
        rid = duties.restatement_id
        if not approvers(settings):
            raise DutyError(
                f"restatement {rid} requires approval ({'; '.join(reasons)}), but "
                "no approvers configured: set RESTATE_APPROVERS"
            )
        raise DutyError(
            f"restatement {rid} requires approval ({'; '.join(reasons)}): "
            f"`restate promote {rid} --approved-by NAME`; approvers: {_names(eligible(settings, duties))}"
        )
    return None
