"""Who hears about a restatement: the dbt exposures downstream of it, and the platform team.

Recipients are derived from lineage only. Starting from the restated models, the dbt
manifest's `child_map` is walked through downstream models to the exposures (dashboards)
that read them; each exposure contributes its owner's email and its `meta.slack_channel`.
The platform channel from the settings is always added. Nobody else is told.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from restate.settings import Settings

# Node kinds data flows through on its way to a dashboard (tests and unit tests do not).
_DATA_NODES = ("model.", "snapshot.", "seed.")


class RoutingError(ValueError):
    """The restated models cannot be found in the dbt manifest."""


@dataclass(frozen=True)
class AffectedExposure:
    """A dashboard (dbt exposure) that reads restated data."""

    unique_id: str
    name: str
    label: str
    url: str | None
    owner_name: str | None
    owner_email: str | None
    slack_channel: str | None


def _model_ids(manifest: dict[str, Any], models: Iterable[str]) -> list[str]:
    nodes: dict[str, Any] = manifest.get("nodes", {})
    by_name: dict[str, str] = {}
    for uid, node in nodes.items():
        if uid.startswith(_DATA_NODES):
            by_name.setdefault(node["name"], uid)
    ids = []
    for m in models:
        found = m if m in nodes else by_name.get(m)
        if found is None:
            raise RoutingError(
                f"model {m!r} is not in the dbt manifest, so its dashboards cannot be found; "
                "re-parse the project (dbt parse) or fix the model name"
            )
        ids.append(found)
    return ids


def downstream_exposures(manifest: dict[str, Any], models: Iterable[str]) -> list[AffectedExposure]:
    """Exposures that read any of `models` (names or unique ids), directly or through
    downstream models, sorted by name."""
    start = _model_ids(manifest, models)
    child_map: dict[str, list[str]] = manifest.get("child_map", {})
    exposures: dict[str, Any] = manifest.get("exposures", {})
    seen: set[str] = set(start)
    queue = deque(start)
    while queue:
        for child in child_map.get(queue.popleft(), []):
            if child not in seen and (child.startswith(_DATA_NODES) or child in exposures):
                seen.add(child)
                queue.append(child)
    # Older manifests may lack exposures in child_map: also match on depends_on.
    found = {uid for uid in seen if uid in exposures}
    for uid, exp in exposures.items():
        if seen.intersection((exp.get("depends_on") or {}).get("nodes") or []):
            found.add(uid)
    out = []
    for uid in found:
        exp = exposures[uid]
        owner = exp.get("owner") or {}
        meta = exp.get("meta") or (exp.get("config") or {}).get("meta") or {}
        out.append(
            AffectedExposure(
                unique_id=uid,
                name=exp["name"],
                label=exp.get("label") or exp["name"],
                url=exp.get("url"),
                owner_name=owner.get("name"),
                owner_email=owner.get("email"),
                slack_channel=meta.get("slack_channel"),
            )
        )
    return sorted(out, key=lambda e: e.name)


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
