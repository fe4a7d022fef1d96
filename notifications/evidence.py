"""The evidence page of one restatement: one self-contained HTML file (styles inline,
charts embedded as data: images, a Content-Security-Policy that forbids every network
request) rendered from restate.evidence.Evidence with Jinja2 (every value escaped)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from notifications.chart import build_figure
from notifications.composer import metric_label, month_table, totals_from_monthly, totals_table
from restate.evidence.collect import Evidence

_TEMPLATES = Path(__file__).parent / "templates"
_ENV = Environment(
    loader=FileSystemLoader(_TEMPLATES),
    autoescape=select_autoescape(["html", "j2"], default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
# Panels per chart: every metric and dimension of a model, up to this many.
MAX_PANELS = 12


def _chart_uri(rows: Sequence[dict[str, Any]], title: str) -> str | None:
    fig = build_figure(rows, title, max_panels=MAX_PANELS)
    if fig is None:
        return None
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _changed(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of every (metric, dimensions) that changed in some month, and the labels
    of those that changed in none (charted: only what changed)."""
    moved = {(r["metric"], r.get("dimensions")) for r in rows if r.get("delta")}
    still = dict.fromkeys(
        metric_label(r["metric"]) + (f" ({r['dimensions']})" if r.get("dimensions") else "")
        for r in rows
        if (r["metric"], r.get("dimensions")) not in moved
    )
    return [r for r in rows if (r["metric"], r.get("dimensions")) in moved], list(still)


def _models(evidence: Evidence) -> list[dict[str, Any]]:
    """Per restated model: totals, the per-month table and the chart of what changed."""
    out = []
    names = list(dict.fromkeys([*evidence.plan.get("models", []), *(r["model"] for r in evidence.monthly)]))
    for model in names:
        rows = [r for r in evidence.monthly if r["model"] == model]
        changed, unchanged = _changed(rows)
        out.append(
            {
                "name": model,
                "totals": totals_table(totals_from_monthly(rows)) if rows else None,
                "months": month_table(rows) if rows else None,
                "chart": _chart_uri(changed, f"{model}: as reported vs restated, per month")
                if changed
                else None,
                "unchanged": unchanged,
                "series": len({(r["metric"], r.get("dimensions")) for r in changed}),
            }
        )
    return out


def _payload(entry: dict[str, Any]) -> str:
    try:
        return json.dumps(json.loads(entry["payload_json"]), sort_keys=True)
    except (ValueError, TypeError):
        return str(entry["payload_json"])


def render_evidence(evidence: Evidence) -> str:
    """The page as a string (deterministic for the same evidence)."""
    request = evidence.request
    plan = evidence.plan
    code = plan.get("code_version") or {}
    template = _ENV.get_template("evidence.html.j2")
    return template.render(
        e=evidence,
        request=request,
        plan=plan,
        code=code,
        entities=evidence.entities,
        models=_models(evidence),
        exposures=plan.get("exposures") or [],
        chunks_done=sum(1 for c in evidence.chunks if c.get("status") == "done"),
        payload=_payload,
        metric_label=metric_label,
        number_columns=4,
        max_panels=MAX_PANELS,
    )


def export_pack(
    ctx: Any, restatement_id: int, folder: Path | None = None, *, record: bool = True
) -> dict[str, Any]:
    """Collect, render and write the pack of one restatement (``ctx``: a restate Context
    or Settings); the export is recorded in the changelog with the manifest's SHA-256."""
    from restate.context import Context
    from restate.evidence import collect_evidence, write_pack
    from restate.evidence.pack import default_folder, manifest_mac, pack_files, record_export
    from restate.state.changelog import audit_key

    ctx = Context.of(ctx)
    settings = ctx.settings
    folder = Path(folder) if folder is not None else default_folder(settings, restatement_id)
    with ctx.session() as engine:
        evidence = collect_evidence(engine, settings, restatement_id)
        files = pack_files(evidence, render_evidence(evidence))
        key = audit_key(settings, settings.meta_schema)
        mac = (lambda manifest: manifest_mac(key, restatement_id, manifest)) if key else None
        digest = write_pack(folder, files, mac)
        version = record_export(engine, settings, restatement_id, digest, len(files) + 1) if record else None
    return {
        "restatement_id": restatement_id,
        "folder": str(folder),
        "page": str(folder / "evidence.html"),
        "manifest_sha256": digest,
        "files": sorted([*files, "SHA256SUMS", *(["SHA256SUMS.mac"] if mac else [])]),
        "chain": evidence.chain["result"],
        "changelog_version": version,
    }
