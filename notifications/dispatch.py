"""Exactly-once delivery of notices through the notification_outbox table.

Protocol, per (restatement_id, event, recipient) row of <meta>.notification_outbox, where
event names the occurrence ('promoted', then 'promoted#2' for a promotion after a rollback;
see occurrence_of):

1. enqueue: every recipient routed for the notice gets a row with status 'pending' if it
   has none yet (one transaction; re-running adds only what is missing).
2. claim: the row is moved to 'sending' (attempts + 1) and committed BEFORE the target is
   called.
3. deliver, then record: on success the row becomes 'sent' and a 'notice_sent' changelog
   entry is appended in the same transaction; on a DeliveryError (the target is sure
   nothing went out) it becomes 'failed' and is retried by the next call.

Guarantee:
* A row that is 'sent' is never delivered again, however often notify runs.
* A 'pending' or 'failed' row is delivered by the next notify call, so a crash or a refusal
  never loses a notice: rerunning notify finishes the job.
* The one window that cannot be closed is between the target accepting a message and the
  'sent' commit (a crash, a kill, a timeout waiting for the reply). Such a row is left in
  'sending' and the next run does NOT resend it blindly. Targets that can check delivery
  (the local outbox: its files are written atomically) resolve it automatically; for Slack
  and email it is reported as in doubt (DispatchReport.in_doubt) and stays so until someone
  checks the channel or mailbox and calls `resolve_in_doubt(..., delivered=True|False)`.
  So: at most once always, and exactly once unless a crash hits that window, in which case
  the doubt is recorded and visible instead of silently guessed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from notifications.composer import (
    NoticeContext,
    as_reported_query,
    compose,
    outbox_event,
    totals_from_monthly,
)
from notifications.email import EmailTarget
from notifications.events import DeliveryError, Message, NoticeEvent, Target, split_recipient
from notifications.outbox import OutboxTarget
from notifications.routing import downstream_exposures, recipients_for
from notifications.slack import SlackTarget
from restate.engines.base import Engine
from restate.settings import Settings
from restate.state import changelog
from restate.state.faults import crash_point

log = logging.getLogger(__name__)

ACTOR = "restate-notify"
SENT_EVENT = "notice_sent"
RESOLVED_EVENT = "notice_resolved"

# The changelog entries that record each occurrence of a notice's event (approval is
# needed after a passing validation, or after a failed one was forced).
OCCURRED_AS: dict[NoticeEvent, tuple[str, ...]] = {
    NoticeEvent.RESTATEMENT_PLANNED: ("planned",),
    NoticeEvent.VALIDATION_FAILED: ("validation_failed",),
    NoticeEvent.APPROVAL_NEEDED: ("validated", "validation_forced"),
    NoticeEvent.PROMOTED: ("promoted",),
    NoticeEvent.ROLLED_BACK: ("rolled_back",),
    NoticeEvent.DRIFT_DETECTED: ("drift_detected",),
}
# Announced once however often it is recorded: every nightly reconciliation that finds
# the same drift records it again against the same drafted plan.
_ANNOUNCED_ONCE = {NoticeEvent.DRIFT_DETECTED}


class NoticeNotOwed(ValueError):
    """The event a notice would announce never happened (e.g. a rollback of a restatement
    that was never promoted), or not that many times: nothing may be sent."""


def occurrence_of(
    engine: Engine,
    settings: Settings,
    restatement_id: int,
    event: NoticeEvent | str,
    occurrence: int | None = None,
) -> int:
    """Which occurrence of `event` a notice announces: the latest one (how many changelog
    entries of its kind the restatement has), or `occurrence` if it happened that often.
    Raises NoticeNotOwed when it did not happen."""
    event = NoticeEvent(event)
    kinds = OCCURRED_AS[event]
    count = int(
        engine.scalar(
            f"select count(*) from {settings.meta_schema}.changelog where restatement_id = ? "
            f"and event in ({', '.join('?' for _ in kinds)})",
            [restatement_id, *kinds],
        )
        or 0
    )
    if count == 0:
        if not engine.query(
            f"select 1 from {settings.meta_schema}.restatements where restatement_id = ?",
            [restatement_id],
        ):
            raise ValueError(f"no restatement with id {restatement_id} (see `restate status`)")
        raise NoticeNotOwed(
            f"restatement {restatement_id} has no {' or '.join(repr(k) for k in kinds)} entry in "
            f"its changelog, so there is no {event.value} notice to send; "
            f"`restate status {restatement_id}` shows its state"
        )
    if event in _ANNOUNCED_ONCE:
        count = 1
    if occurrence is None:
        return count
    if not 1 <= occurrence <= count:
        raise NoticeNotOwed(
            f"restatement {restatement_id} has {count} {event.value} occurrence(s), not "
            f"#{occurrence}; omit --occurrence for the latest"
        )
    return occurrence


@dataclass
class DispatchReport:
    """What one notify call did. Recipients are 'slack:#x' / 'email:a@b' strings."""

    restatement_id: int
    event: str
    recipients: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)  # delivered by this call
    already_sent: list[str] = field(default_factory=list)  # delivered by an earlier call
    failed: dict[str, str] = field(default_factory=dict)  # not delivered; retried next call
    in_doubt: list[str] = field(default_factory=list)  # interrupted mid-send; see module doc

    @property
    def complete(self) -> bool:
        return not self.failed and not self.in_doubt


def build_targets(settings: Settings) -> dict[str, Target]:
    """Slack when a token is set, email when an SMTP host is set, the local outbox always."""
    targets: dict[str, Target] = {"outbox": OutboxTarget.from_settings(settings)}
    if settings.slack_token is not None:
        targets["slack"] = SlackTarget.from_settings(settings)
    if settings.smtp_host:
        targets["email"] = EmailTarget.from_settings(settings)
    return targets


def channel_for(recipient: str, targets: Mapping[str, Target]) -> str:
    """The delivery channel fixed for a recipient when its row is created."""
    scheme, _ = split_recipient(recipient)
    return scheme if scheme in targets else "outbox"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _key(row: Mapping[str, Any]) -> list[Any]:
    return [row["restatement_id"], row["event"], row["recipient"]]


_WHERE_KEY = "restatement_id = ? and event = ? and recipient = ?"


def enqueue(
    engine: Engine,
    settings: Settings,
    context: NoticeContext,
    recipients: list[str],
    targets: Mapping[str, Target],
    subject: str,
) -> None:
    """Create the missing outbox rows for this notice, all in one transaction."""
    table = f"{settings.meta_schema}.notification_outbox"
    with engine.transaction():
        for r in recipients:
            channel = channel_for(r, targets)
            payload = json.dumps(
                {"subject": subject, "context": context.to_json()}, sort_keys=True, default=str
            )
            engine.execute(
                f"insert into {table} (restatement_id, event, recipient, channel, status, "
                "payload_json, created_at, attempts) "
                f"select ?, ?, ?, ?, 'pending', ?, ?, 0 "
                f"where not exists (select 1 from {table} where {_WHERE_KEY})",
                [
                    context.restatement_id,
                    context.outbox_event,
                    r,
                    channel,
                    payload,
                    _now(),
                    context.restatement_id,
                    context.outbox_event,
                    r,
                ],
            )


def _claim(engine: Engine, table: str, row: dict[str, Any]) -> bool:
    """Move a pending/failed row to 'sending'; False if someone else changed it first."""
    with engine.transaction():
        engine.execute(
            f"update {table} set status = 'sending', attempts = attempts + 1 "
            f"where {_WHERE_KEY} and status = ? and attempts = ?",
            [*_key(row), row["status"], row["attempts"]],
        )
        now = engine.query(f"select status, attempts from {table} where {_WHERE_KEY}", _key(row))
    return bool(now) and now[0][0] == "sending" and now[0][1] == row["attempts"] + 1


def _mark_sent(
    engine: Engine,
    settings: Settings,
    row: dict[str, Any],
    reference: str | None,
    recovered: bool = False,
) -> None:
    table = f"{settings.meta_schema}.notification_outbox"
    with engine.transaction():
        engine.execute(
            f"update {table} set status = 'sent', sent_at = ?, last_error = null where {_WHERE_KEY}",
            [_now(), *_key(row)],
        )
        payload: dict[str, Any] = {
            "notice": row["event"],
            "recipient": row["recipient"],
            "channel": row["channel"],
            "reference": reference,
            "attempts": row["attempts"] + (0 if recovered else 1),
        }
        if recovered:
            payload["recovered"] = True
        changelog.append(
            engine,
            settings.meta_schema,
            SENT_EVENT,
            payload,
            restatement_id=row["restatement_id"],
            actor=ACTOR,
        )


def _set(engine: Engine, table: str, row: dict[str, Any], status: str, error: str) -> None:
    engine.execute(
        f"update {table} set status = ?, last_error = ? where {_WHERE_KEY}",
        [status, error[:2000], *_key(row)],
    )


def notify(
    engine: Engine,
    settings: Settings,
    manifest: dict[str, Any],
    context: NoticeContext,
    *,
    targets: Mapping[str, Target] | None = None,
) -> DispatchReport:
    """Tell everyone downstream of the restated models about `context.event`, exactly once.

    Safe to call again after a crash, a refusal or a partial run: only what is not yet
    sent goes out (see the module docstring for the precise guarantee). Call it after the
    change it announces has committed, outside any open transaction.
    """
    targets = dict(targets) if targets is not None else build_targets(settings)
    exposures = downstream_exposures(manifest, context.models)
    message = compose(context, exposures)
    report = DispatchReport(context.restatement_id, context.outbox_event)
    enqueue(engine, settings, context, recipients_for(exposures, settings), targets, message.subject)
    deliver_pending(engine, settings, message, context, targets, report)
    return report


def deliver_pending(
    engine: Engine,
    settings: Settings,
    message: Message,
    context: NoticeContext,
    targets: Mapping[str, Target],
    report: DispatchReport,
) -> None:
    """Deliver every not-yet-sent row of this notice (including rows from earlier calls)."""
    table = f"{settings.meta_schema}.notification_outbox"
    rows = engine.query_dicts(
        f"select * from {table} where restatement_id = ? and event = ? order by recipient",
        [context.restatement_id, context.outbox_event],
    )
    for row in rows:
        recipient = row["recipient"]
        report.recipients.append(recipient)
        target = targets.get(row["channel"])
        if row["status"] == "sent":
            report.already_sent.append(recipient)
            continue
        if row["status"] == "sending":
            delivered = target.was_delivered(recipient, message) if target else None
            if delivered is None:
                log.warning(
                    "notice %s to %s is in doubt: an earlier send was interrupted", message.key, recipient
                )
                report.in_doubt.append(recipient)
                continue
            if delivered:
                _mark_sent(engine, settings, row, None, recovered=True)
                report.already_sent.append(recipient)
                continue
            # Verified not delivered: safe to send again.
            with engine.transaction():
                _set(engine, table, row, "failed", "interrupted before delivery")
            row["status"] = "failed"
        if target is None:
            error = f"no {row['channel']} target is configured"
            with engine.transaction():
                _set(engine, table, row, row["status"], error)
            report.failed[recipient] = error
            continue
        if not _claim(engine, table, row):
            report.in_doubt.append(recipient)  # another process is on it
            continue
        try:
            reference = target.send(recipient, message)
        except DeliveryError as exc:
            with engine.transaction():
                _set(engine, table, row, "failed", str(exc))
            report.failed[recipient] = str(exc)
            continue
        except Exception as exc:
            with engine.transaction():
                _set(engine, table, row, "sending", f"outcome unknown: {exc!r}")
            report.in_doubt.append(recipient)
            continue
        _mark_sent(engine, settings, row, reference)
        report.sent.append(recipient)
        crash_point(settings, "notice_sent")


def resolve_in_doubt(
    engine: Engine,
    settings: Settings,
    restatement_id: int,
    event: NoticeEvent | str,
    recipient: str,
    *,
    delivered: bool,
    actor: str,
    occurrence: int = 1,
) -> None:
    """After checking the channel/mailbox by hand: mark an in-doubt notice as sent
    (delivered=True) or release it to be sent by the next notify (delivered=False).
    `occurrence` picks which time the event happened (see occurrence_of)."""
    table = f"{settings.meta_schema}.notification_outbox"
    key = [restatement_id, outbox_event(event, occurrence), recipient]
    rows = engine.query_dicts(f"select * from {table} where {_WHERE_KEY}", key)
    if not rows or rows[0]["status"] != "sending":
        raise ValueError(
            f"no in-doubt notice {key[1]} for restatement {restatement_id} to {recipient}; "
            f"`restate notify {restatement_id} --event {NoticeEvent(event).value}` lists the ones in doubt"
        )
    with engine.transaction():
        if delivered:
            engine.execute(
                f"update {table} set status = 'sent', sent_at = ? where {_WHERE_KEY}",
                [_now(), *key],
            )
        else:
            _set(engine, table, rows[0], "failed", f"released by {actor}: not delivered")
        changelog.append(
            engine,
            settings.meta_schema,
            RESOLVED_EVENT,
            {"notice": key[1], "recipient": recipient, "delivered": delivered},
            restatement_id=restatement_id,
            actor=actor,
        )


def outbox_rows(
    engine: Engine, settings: Settings, restatement_id: int | None = None
) -> list[dict[str, Any]]:
    """The notification_outbox rows (all, or of one restatement), for status displays."""
    return engine.query_dicts(
        f"select restatement_id, event, recipient, channel, status, attempts, created_at, "
        f"sent_at, last_error from {settings.meta_schema}.notification_outbox "
        "where (? is null or restatement_id = ?) order by restatement_id, event, recipient",
        [restatement_id, restatement_id],
    )


def build_context(
    engine: Engine,
    settings: Settings,
    restatement_id: int,
    event: NoticeEvent | str,
    *,
    detail: str | None = None,
    as_reported_sql: str | None = None,
    occurrence: int | None = None,
) -> NoticeContext:
    """Assemble a NoticeContext from the stored restatement, its monthly diff and the
    latest changelog version. For a promotion, the as-reported query defaults to the
    models' `<model>_as_of` views. The notice is for the latest occurrence of the event
    unless `occurrence` says which; NoticeNotOwed if the event never happened."""
    from restate.state import status

    st = status.restatement_status(engine, settings, restatement_id)
    if st is None:
        raise ValueError(f"no restatement with id {restatement_id}")
    occurrence = occurrence_of(engine, settings, restatement_id, event, occurrence)
    monthly = status.diff_by_month(engine, settings, restatement_id)
    version = engine.scalar(
        f"select max(version) from {settings.meta_schema}.changelog where restatement_id = ?",
        [restatement_id],
    )
    event = NoticeEvent(event)
    models = list(st["models"])
    start, end = _as_date(st["period_start"]), _as_date(st["period_end"])
    if as_reported_sql is None and event is NoticeEvent.PROMOTED:
        from restate.plan.plans import PlanError, load_plan

        try:
            plan = load_plan(engine, settings, restatement_id)
            date_columns = {m: plan.contract(m).date_column for m in plan.models}
        except (PlanError, KeyError):  # a stored plan without models' contracts: no query to offer
            date_columns = {}
        if date_columns:
            as_reported_sql = as_reported_query(
                settings.prod_schema, date_columns, start, end, restatement_id
            )
    if event is NoticeEvent.ROLLED_BACK:
        kept = _kept_as_loaded(engine, settings, restatement_id, occurrence)
        if kept:
            note = (
                f"Not rolled back: {len(kept)} day(s) that loads changed after the promotion keep "
                f"the numbers those loads computed (not the ones reported before): {', '.join(kept)}."
            )
            detail = f"{note}\n{detail}" if detail else note
    return NoticeContext(
        restatement_id=restatement_id,
        event=event,
        models=models,
        period_start=start,
        period_end=end,
        reason=st.get("reason") or "",
        ticket=st.get("ticket"),
        requested_by=st.get("requested_by"),
        approved_by=st.get("approved_by"),
        changelog_version=None if version is None else int(version),
        monthly=monthly,
        totals=totals_from_monthly(monthly),
        as_reported_sql=as_reported_sql,
        detail=detail,
        chain_head=changelog.chain_head(engine, settings.meta_schema),
        code_change=_code_change(engine, settings, restatement_id),
        occurrence=occurrence,
        entities=[a for a in str(st.get("accounts") or "").split(",") if a] or None,
        **_forced(engine, settings, restatement_id),
    )


def _code_change(engine: Engine, settings: Settings, restatement_id: int) -> str | None:
    """What changed in the code, in words; a notice never fails for want of it (logged)."""
    from restate.plan.code_version import change_summary

    try:
        return change_summary(engine, settings, restatement_id)
    except Exception as exc:
        log.warning("restatement %s: no code-change summary for the notice: %s", restatement_id, exc)
        return None


def _forced(engine: Engine, settings: Settings, restatement_id: int) -> dict[str, str | None]:
    """The latest validation (its id binds the notice's Approve button to the numbers it
    shows), and who forced it through and why (when it was forced)."""
    rows = engine.query(
        f"select forced_by, force_reason, validation_id from {settings.meta_schema}.validations "
        "where restatement_id = ? order by checked_at desc limit 1",
        [restatement_id],
    )
    if not rows:
        return {}
    found: dict[str, str | None] = {"validation_id": str(rows[0][2])}
    if rows[0][0]:
        found.update(forced_by=str(rows[0][0]), force_reason=rows[0][1])
    return found


def _kept_as_loaded(engine: Engine, settings: Settings, restatement_id: int, occurrence: int) -> list[str]:
    """Days a rollback (its `occurrence`-th) left as loaded instead of restoring them."""
    rows = engine.query(
        f"select payload_json from {settings.meta_schema}.changelog "
        "where restatement_id = ? and event = 'rolled_back' order by version",
        [restatement_id],
    )
    if len(rows) < occurrence:
        return []
    kept = json.loads(rows[occurrence - 1][0]).get("kept_as_loaded") or []
    return [str(d) for d in kept]


def _as_date(v: Any) -> date:
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    return date.fromisoformat(str(v))
