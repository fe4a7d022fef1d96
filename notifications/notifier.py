"""The notifier the core's events reach by default: Slack and email, exactly once.

Registered under the `restate.notifiers` entry point (pyproject), so the core publishes
`restate.events.Event`s without importing this package.
"""

from __future__ import annotations

import logging
from typing import Any

from notifications.dispatch import NoticeNotOwed
from notifications.lifecycle import notify_restatement
from restate.events import Event
from restate.settings import Settings

log = logging.getLogger(__name__)


class OutboxNotifier:
    """Routes each event to the owners of the affected dashboards through the outbox."""

    def publish(
        self,
        settings: Settings,
        restatement_id: int,
        event: Event,
        *,
        detail: str | None = None,
        manifest: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if manifest is None:
            from restate.dbt.runner import DbtProject

            try:
                manifest = DbtProject(settings).last_manifest()
            except OSError:
                manifest = None
        try:
            report = notify_restatement(settings, restatement_id, event, detail=detail, manifest=manifest)
        except NoticeNotOwed as exc:  # a caller's mistake, not a delivery problem: no retry hint
            log.error("restatement %s: no %s notice sent: %s", restatement_id, event.value, exc)
            return {"error": str(exc)}
        return {"sent": len(report.sent), "failed": len(report.failed), "in_doubt": len(report.in_doubt)}
