"""What a notice is about, what it says, and where it can be delivered."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from restate.events import Event

# The core's lifecycle events are what notices are about (the core never imports this package).
NoticeEvent = Event

LABELS = {
    Event.RESTATEMENT_PLANNED: "Restatement planned",
    Event.VALIDATION_FAILED: "Restatement failed validation",
    Event.APPROVAL_NEEDED: "Restatement awaiting approval",
    Event.PROMOTED: "Restated numbers are live",
    Event.ROLLED_BACK: "Restatement rolled back",
    Event.DRIFT_DETECTED: "Reported numbers drifted",
}


def label(event: Event | str) -> str:
    """The event as a notice's subject says it."""
    return LABELS[Event(event)]


@dataclass(frozen=True)
class Message:
    """One rendered notice, the same for every recipient of a (restatement, event)."""

    key: str  # stable id of the notice, e.g. "restatement-7-promoted"
    subject: str
    text: str  # plain text (email body, Slack fallback text)
    html: str
    blocks: list[dict[str, Any]] = field(default_factory=list)  # Slack Block Kit
    chart_png: bytes | None = None
    chart_filename: str = "restatement.png"
    chart_title: str = "As reported vs restated, per month"
    # Further files for email (filename, content, MIME type), e.g. the evidence page.
    attachments: tuple[tuple[str, bytes, str], ...] = ()
    # The audit log's head when composed (email header X-Restate-Audit-Head).
    audit_head: str | None = None


class DeliveryError(Exception):
    """The target is certain the notice was NOT delivered, so sending it again is safe.

    Any other exception from `Target.send` means the outcome is unknown (for example a
    timeout after the request went out) and the notice is left "in doubt".
    """


def split_recipient(recipient: str) -> tuple[str, str]:
    """'slack:#finance' -> ('slack', '#finance'); 'email:a@b.com' -> ('email', 'a@b.com')."""
    scheme, sep, address = recipient.partition(":")
    if not sep or not address or scheme not in ("slack", "email", "outbox"):
        raise ValueError(
            f"recipient {recipient!r} must look like 'slack:#channel', 'email:person@domain' or 'outbox:name'"
        )
    return scheme, address


class Target(ABC):
    """A delivery channel. `send` delivers one message to one recipient."""

    #: name stored in notification_outbox.channel ('slack', 'email', 'outbox')
    channel: str

    @abstractmethod
    def send(self, recipient: str, message: Message) -> str | None:
        """Deliver; return a reference (Slack ts, Message-ID, file path) for the audit log.

        Raise DeliveryError only when nothing was delivered; let anything else propagate.
        """

    def was_delivered(self, recipient: str, message: Message) -> bool | None:
        """Whether an earlier, interrupted send got through: True/False, or None if the
        target cannot tell (Slack, email)."""
        return None
