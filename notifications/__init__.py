"""Restatement notices: routed by dbt lineage, rendered once, delivered exactly once.

    from notifications import NoticeContext, NoticeEvent, notify
    report = notify(engine, settings, manifest, context)

The Slack slash command app is an interface: `interfaces.slack`.
"""

from notifications.composer import NoticeContext, as_reported_query, compose
from notifications.dispatch import (
    DispatchReport,
    NoticeNotOwed,
    build_context,
    build_targets,
    notify,
    outbox_rows,
    resolve_in_doubt,
)
from notifications.events import DeliveryError, Message, NoticeEvent, Target
from notifications.routing import AffectedExposure, downstream_exposures, recipients

__all__ = [
    "AffectedExposure",
    "DeliveryError",
    "DispatchReport",
    "Message",
    "NoticeContext",
    "NoticeEvent",
    "NoticeNotOwed",
    "Target",
    "as_reported_query",
    "build_context",
    "build_targets",
    "compose",
    "downstream_exposures",
    "notify",
    "outbox_rows",
    "recipients",
    "resolve_in_doubt",
]
