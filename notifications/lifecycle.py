"""One call for the lifecycle commands: notify everyone about a restatement event.

from notifications.lifecycle import notify_restatement
report = notify_restatement(settings, restatement_id, "promoted")
"""

from __future__ import annotations

import json
import logging
from typing import Any

from notifications.dispatch import (
    DispatchReport,
    build_context,
    notify,
    occurrence_of,
    resolve_in_doubt,
)
from notifications.events import NoticeEvent
from restate.settings import Settings

log = logging.getLogger(__name__)


def load_manifest(settings: Settings) -> dict[str, Any]:
    """The dbt manifest for routing: freshly parsed, or else the last one dbt wrote."""
    from restate.dbt.runner import DbtProject

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


# The notices that link (and attach) the evidence pack: the approver's and the promotion's.
EVIDENCE_EVENTS = (NoticeEvent.APPROVAL_NEEDED, NoticeEvent.PROMOTED)


def _evidence_pack(settings: Settings, restatement_id: int, event: NoticeEvent) -> tuple[str, str] | None:
    """Write the restatement's evidence pack for the notice: (where readers open it, the
    page's path). A pack that cannot be written never stops the notice (logged)."""
    if event not in EVIDENCE_EVENTS:
        return None
    from notifications.evidence import export_pack
    from restate.evidence.pack import default_folder

    # One pack per notice event: the promotion's never replaces what the approver was shown.
    name = f"restatement-{restatement_id}-{event.value}"
    try:
        pack = export_pack(settings, restatement_id, default_folder(settings, restatement_id).with_name(name))
    except Exception as exc:
        log.warning("restatement %s: evidence pack not written for the notice: %s", restatement_id, exc)
        return None
    if settings.evidence_url:
        link = f"{settings.evidence_url.rstrip('/')}/{name}/evidence.html"
    else:
        link = f"{pack['page']} (on the tool's host; `restate evidence {restatement_id}` writes it again)"
    return link, str(pack["page"])


def notify_restatement(
    settings: Settings,
    restatement_id: int,
    event: NoticeEvent | str,
    *,
    detail: str | None = None,
    manifest: dict[str, Any] | None = None,
    occurrence: int | None = None,
) -> DispatchReport:
    """Build the notice from the stored restatement and deliver it exactly once.

    Call after the change has committed (e.g. right after promote/rollback returns).
    Re-running it after a failure sends only what has not gone out yet. The notice is
    for the latest occurrence of the event (or `occurrence`); dispatch.NoticeNotOwed,
    with nothing enqueued, when the event never happened.
    """
    from restate.engines import connect

    if manifest is None:
        with connect(settings) as engine:  # refuse before the (slow) dbt parse
            occurrence_of(engine, settings, restatement_id, event, occurrence)
        manifest = load_manifest(settings)
    evidence = _evidence_pack(settings, restatement_id, NoticeEvent(event))
    with connect(settings) as engine:
        context = build_context(engine, settings, restatement_id, event, detail=detail, occurrence=occurrence)
        if evidence is not None:
            context.evidence, context.evidence_file = evidence
        report = notify(engine, settings, manifest, context)
    if report.failed:
        log.warning("notices not delivered yet (rerun to retry): %s", report.failed)
    if report.in_doubt:
        log.warning(
            "notices in doubt (check the channel or mailbox, then `restate notify %s --event %s "
            "--resolve RECIPIENT --delivered|--not-delivered --by NAME`): %s",
            restatement_id,
            NoticeEvent(event).value,
            report.in_doubt,
        )
    return report


def resolve_restatement(
    settings: Settings,
    restatement_id: int,
    event: NoticeEvent | str,
    recipients: list[str],
    *,
    delivered: bool,
    actor: str,
    occurrence: int | None = None,
) -> int:
    """Record what someone found when checking in-doubt deliveries by hand, for the latest
    occurrence of the event (or `occurrence`); returns the occurrence resolved. Each is
    audited as a notice_resolved changelog entry by `actor`."""
    from restate.engines import connect

    with connect(settings) as engine:
        occurrence = occurrence_of(engine, settings, restatement_id, event, occurrence)
        for recipient in recipients:
            resolve_in_doubt(
                engine,
                settings,
                restatement_id,
                event,
                recipient,
                delivered=delivered,
                actor=actor,
                occurrence=occurrence,
            )
    return occurrence
