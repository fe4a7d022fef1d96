"""Lifecycle events the core publishes, and the notifier that hears them.

The core never imports a delivery channel: an action that committed a step calls
`publish(settings, restatement_id, Event.PROMOTED)`, and the notifier in use decides
who is told. The default notifier is the one installed under the `restate.notifiers`
entry point (the project's `notifications` package: Slack and email, exactly once);
`use_notifier` replaces it for a block of code (a test, an interface with its own).
Without any, events are only logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import StrEnum
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from restate.settings import Settings

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "restate.notifiers"


class Event(StrEnum):
    """The moments in a restatement's life that people are told about."""

    RESTATEMENT_PLANNED = "restatement_planned"
    VALIDATION_FAILED = "validation_failed"
    APPROVAL_NEEDED = "approval_needed"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    DRIFT_DETECTED = "drift_detected"


class Notifier(Protocol):
    def publish(
        self,
        settings: Settings,
        restatement_id: int,
        event: Event,
        *,
        detail: str | None = None,
        manifest: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Tell whoever should know; return counts for the caller's output. May raise."""
        ...


class LogOnly:
    """No delivery channel installed: the event is logged and nothing else happens."""

    def publish(
        self,
        settings: Settings,
        restatement_id: int,
        event: Event,
        *,
        detail: str | None = None,
        manifest: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        log.warning(
            "restatement %s: %s not announced: no notifier is installed (the `restate.notifiers` "
            "entry point: install the project with pip)",
            restatement_id,
            event.value,
        )
        return {"error": "no notifier installed"}


_current: ContextVar[Notifier | None] = ContextVar("restate_notifier", default=None)


@cache
def installed_notifier() -> Notifier:
    """The notifier registered under the `restate.notifiers` entry point, else LogOnly."""
    found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    if not found:
        return LogOnly()
    notifier: Notifier = found[0].load()()
    return notifier


def current_notifier() -> Notifier:
    return _current.get() or installed_notifier()


@contextmanager
def use_notifier(notifier: Notifier) -> Iterator[Notifier]:
    token = _current.set(notifier)
    try:
        yield notifier
    finally:
        _current.reset(token)


def publish(
    settings: Settings,
    restatement_id: int,
    event: Event | str,
    *,
    detail: str | None = None,
    manifest: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Publish an event after the step it follows has committed.

    A delivery problem is logged, never raised: the step stays committed and the
    notifier's own retry (`restate notify`) finishes the job.
    """
    event = Event(event)
    try:
        return current_notifier().publish(settings, restatement_id, event, detail=detail, manifest=manifest)
    except Exception as exc:  # the committed step must not fail because of a notice
        log.warning(
            "restatement %s: %s notices not sent yet (%s); retry: restate notify %s --event %s",
            restatement_id,
            event.value,
            exc,
            restatement_id,
            event.value,
        )
        return {"error": str(exc)}
