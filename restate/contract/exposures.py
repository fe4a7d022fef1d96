"""Which dashboards read a set of models: one walk of the dbt lineage, shared by the plan
(what it lists as affected) and the notices (whom they tell).

Starting from the models, the manifest's `child_map` is walked through downstream models
(and snapshots, seeds) to the exposures that read them; an exposure that lists one of them
in `depends_on` counts too (older manifests lack exposures in child_map).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Node kinds data flows through on its way to a dashboard (tests and unit tests do not).
_DATA_NODES = ("model.", "snapshot.", "seed.")


class LineageError(ValueError):
    """A model cannot be found in the dbt manifest."""


@dataclass(frozen=True)
class Exposure:
    """A dashboard (dbt exposure) that reads affected data."""

    name: str
    label: str
    owner_name: str | None
    owner_email: str | None
    slack_channel: str | None
    url: str | None
    unique_id: str = ""


def model_ids(manifest: dict[str, Any], models: Iterable[str]) -> list[str]:
    """Unique ids of `models` (names or unique ids); LineageError for one not in the manifest."""
    nodes: dict[str, Any] = manifest.get("nodes", {})
    by_name: dict[str, str] = {}
    for uid, node in nodes.items():
        if uid.startswith(_DATA_NODES):
            by_name.setdefault(node["name"], uid)
    ids = []
    for m in models:
        found = m if m in nodes else by_name.get(m)
        if found is None:
            raise LineageError(
                f"model {m!r} is not in the dbt manifest, so its dashboards cannot be found; "
                "re-parse the project (dbt parse) or fix the model name"
            )
        ids.append(found)
    return ids


def downstream_exposures(manifest: dict[str, Any], models: Iterable[str]) -> list[Exposure]:
    """Exposures that read any of `models`, directly or through downstream models, by name."""
    start = model_ids(manifest, models)
    child_map: dict[str, list[str]] = manifest.get("child_map", {})
    exposures: dict[str, Any] = manifest.get("exposures", {})
    seen: set[str] = set(start)
    queue = deque(start)
    while queue:
        for child in child_map.get(queue.popleft(), []):
            if child not in seen and (child.startswith(_DATA_NODES) or child in exposures):
                seen.add(child)
                queue.append(child)
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
            Exposure(
                name=exp["name"],
                label=exp.get("label") or exp["name"],
                owner_name=owner.get("name"),
                owner_email=owner.get("email"),
                slack_channel=meta.get("slack_channel"),
                url=exp.get("url"),
                unique_id=uid,
            )
        )
    return sorted(out, key=lambda e: e.name)
