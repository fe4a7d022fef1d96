"""Gather everything an approver or auditor needs about one restatement from the meta
schema: the request, the plan, the per-month diff, every validation with its checks,
overrides, approvals, the changelog entries with their MACs, and the chain's
verification at the time of collection."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from restate.engines.base import Engine
from restate.settings import Settings
from restate.state import changelog
from restate.state.clock import utc_now


class EvidenceError(ValueError):
    """The restatement cannot be documented (unknown id)."""


@dataclass
class Evidence:
    restatement_id: int
    collected_at: datetime
    collected_by: str
    request: dict[str, Any]
    plan: dict[str, Any]
    chunks: list[dict[str, Any]]
    monthly: list[dict[str, Any]]
    diff: list[dict[str, Any]]
    validations: list[dict[str, Any]]
    changelog: list[dict[str, Any]]
    chain: dict[str, Any]
    archive: list[dict[str, Any]] = field(default_factory=list)

    @property
    def entities(self) -> list[str] | None:
        return [a for a in str(self.request.get("accounts") or "").split(",") if a] or None

    @property
    def overrides(self) -> list[dict[str, Any]]:
        """Validations that failed and were forced through, with who and why."""
        return [v for v in self.validations if v.get("forced_by")]

    @property
    def approvals(self) -> list[dict[str, Any]]:
        """Approval and rejection decisions as the changelog recorded them."""
        return [e for e in self.changelog if e["event"] in ("approved", "rejected", "approval_revoked")]


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _changelog_slice(engine: Engine, meta: str, restatement_id: int) -> list[dict[str, Any]]:
    """This restatement's entries with every stored field, as the MAC covers them, so a
    holder of the audit key can re-check each entry offline."""
    rows = engine.query_dicts(
        f"select version, recorded_at, restatement_id, event, actor, payload_json, prev_hash, entry_hash "
        f"from {meta}.changelog where restatement_id = ? order by version",
        [restatement_id],
    )
    for r in rows:
        r["recorded_at"] = r["recorded_at"].isoformat()
        r["version"] = int(r["version"])
        r["restatement_id"] = int(r["restatement_id"])
    return rows


def _chain(engine: Engine, settings: Settings) -> dict[str, Any]:
    """The whole log's verification now: a pack says whether its entries were intact."""
    head = engine.query(
        f"select version, entry_hash from {settings.meta_schema}.changelog order by version desc limit 1"
    )
    out: dict[str, Any] = {
        "checked_at": utc_now().isoformat(),
        "head_version": int(head[0][0]) if head else None,
        "head_mac": str(head[0][1]) if head else None,
    }
    try:
        broken = changelog.verify(engine, settings.meta_schema)
    except changelog.AuditKeyMissing as exc:
        out.update(verified=False, result=f"not verified: {exc}")
        return out
    if broken is None:
        out.update(verified=True, result=f"intact: {out['head_version'] or 0} entries, every MAC and link")
    else:
        out.update(verified=False, result=f"BROKEN at entry {broken.version}: {broken.reason}")
    return out


def _validations(engine: Engine, meta: str, restatement_id: int) -> list[dict[str, Any]]:
    rows = engine.query_dicts(
        f"select validation_id, scope, checked_at, passed, forced_by, force_reason, result_json "
        f"from {meta}.validations where restatement_id = ? order by checked_at",
        [restatement_id],
    )
    out = []
    for r in rows:
        result = json.loads(r.pop("result_json"))
        r["checks"] = [
            {
                k: c.get(k)
                for k in ("name", "dataset", "check_type", "outcome", "measured", "threshold", "partitions")
            }
            for c in result.get("checks", [])
        ]
        r["errors"] = result.get("errors", [])
        r["skipped"] = result.get("skipped", [])
        r["duration_s"] = result.get("duration_s")
        out.append(r)
    return out


def collect_evidence(engine: Engine, settings: Settings, restatement_id: int) -> Evidence:
    """Everything recorded about the restatement, read in one session."""
    from restate.state import status
    from restate.state.duties import run_by

    meta = settings.meta_schema
    request = engine.query_dicts(
        f"select * from {meta}.restatements where restatement_id = ?", [restatement_id]
    )
    if not request:
        raise EvidenceError(f"no restatement with id {restatement_id}")
    req = request[0]
    plan = json.loads(req.pop("plan_json"))
    chunks = engine.query_dicts(
        f"select chunk_id, period_start, period_end, bucket, buckets, status, rows_written, "
        f"duration_s, attempts from {meta}.restatement_partitions where restatement_id = ? order by chunk_id",
        [restatement_id],
    )
    diff = engine.query_dicts(
        f"select model, partition_date, dimensions, metric, as_reported, restated, delta, pct, only_in "
        f"from {meta}.restatement_diffs where restatement_id = ? "
        "order by model, partition_date, dimensions, metric",
        [restatement_id],
    )
    archive = engine.query_dicts(
        f"select archive_version, model, action, period_start, period_end, rows_archived, rows_inserted, "
        f"created_at from {meta}.archive_versions where restatement_id = ? order by archive_version",
        [restatement_id],
    )
    return Evidence(
        restatement_id=restatement_id,
        collected_at=utc_now(),
        collected_by=run_by(settings),
        request=_jsonable(req),
        plan=plan,
        chunks=_jsonable(chunks),
        monthly=status.diff_by_month(engine, settings, restatement_id),
        diff=diff,
        validations=_jsonable(_validations(engine, meta, restatement_id)),
        changelog=_changelog_slice(engine, meta, restatement_id),
        chain=_chain(engine, settings),
        archive=_jsonable(archive),
    )
