"""Who hears about a restatement: the dbt exposures downstream of it, and the platform team.

Recipients are derived from lineage only: the exposures (dashboards) downstream of the
restated models, found by the same walk the plan lists them with (restate.contract.exposures);
each exposure contributes its owner's email and its `meta.slack_channel`.
The platform channel from the settings is always added. Nobody else is told.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from restate.contract.exposures import Exposure, LineageError, downstream_exposures
from restate.settings import Settings

# The lineage walk is the core's, shared with the plan's list of affected dashboards.
AffectedExposure = Exposure
RoutingError = LineageError


def recipients_for(exposures: Iterable[AffectedExposure], settings: Settings) -> list[str]:
    """Recipient addresses ('slack:#channel', 'email:owner@domain'), unique and sorted."""
    found: set[str] = set()
    for e in exposures:
        if e.slack_channel:
            found.add(f"slack:{e.slack_channel.strip()}")
        if e.owner_email:
            found.add(f"email:{e.owner_email.strip()}")
    if settings.slack_platform_channel.strip():
        found.add(f"slack:{settings.slack_platform_channel.strip()}")
    return sorted(found)


def recipients(manifest: dict[str, Any], models: Iterable[str], settings: Settings) -> list[str]:
    """Everyone to tell about a restatement of `models`: see the module docstring."""
    return recipients_for(downstream_exposures(manifest, models), settings)
