"""One call for the lifecycle commands: notify everyone about a restatement event.

from notifications.lifecycle import notify_restatement
report = notify_restatement(settings, restatement_id, "promoted")
"""

from __future__ import annotations

import json
import logging
from typing import Any

from notifications.dispatch import DispatchReport, build_context, notify
from notifications.events import NoticeEvent
from restate.settings import Settings

log = logging.getLogger(__name__)


def load_manifest(settings: Settings) -> dict[str, Any]:
    """The dbt manifest for routing: freshly parsed, or else the last one dbt wrote."""
    from restate.dbt_runner import DbtProject

    project = DbtProject(settings)
    try:
        return project.manifest()
    except Exception as exc:
        for path in (project.target_path / "manifest.json", project.prod_state_dir / "manifest.json"):
            if path.is_file():
                log.warning("dbt parse failed (%s); routing with the saved %s", exc, path)
                loaded: dict[str, Any] = json.loads(path.read_text())
                return loaded
        raise


def notify_restatement(
    settings: Settings,
    restatement_id: int,
    event: NoticeEvent | str,
    *,
    detail: str | None = None,
    manifest: dict[str, Any] | None = None,
) -> DispatchReport:
    """Build the notice from the stored restatement and deliver it exactly once.

    Call after the change has committed (e.g. right after promote/rollback returns).
    Re-running it after a failure sends only what has not gone out yet.
    """
    from restate.engines import connect

    manifest = manifest if manifest is not None else load_manifest(settings)
    with connect(settings) as engine:
        context = build_context(engine, settings, restatement_id, event, detail=detail)
        report = notify(engine, settings, manifest, context)
    if report.failed:
        log.warning("notices not delivered yet (rerun to retry): %s", report.failed)
    if report.in_doubt:
        log.warning("notices in doubt (check, then resolve_in_doubt): %s", report.in_doubt)
    return report
