"""Append-only, versioned, hash-chained audit log in the meta schema."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from restate.engines.base import Engine

GENESIS = "0" * 64


@dataclass(frozen=True)
class ChainBreak:
    version: int
    reason: str


def _canonical(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))


def entry_hash(
    version: int,
    recorded_at: datetime,
    restatement_id: int | None,
    event: str,
    actor: str | None,
    payload_json: str,
    prev_hash: str,
) -> str:
    """sha256 over every stored field of an entry and the previous entry's hash."""
    material = "\x1f".join(
        [
            str(version),
            recorded_at.isoformat(),
            "" if restatement_id is None else str(restatement_id),
            event,
            actor or "",
            payload_json,
            prev_hash,
        ]
    )
    return hashlib.sha256(material.encode()).hexdigest()


def append(
    engine: Engine,
    schema: str,
    event: str,
    payload: dict[str, Any],
    restatement_id: int | None = None,
    actor: str | None = None,
) -> int:
    """Append one entry; returns its version. Call inside the caller's transaction
    when the entry must commit with the change it records."""
    last = engine.query(f"select version, entry_hash from {schema}.changelog order by version desc limit 1")
    version, prev = (last[0][0] + 1, last[0][1]) if last else (1, GENESIS)
    recorded_at = datetime.now(UTC).replace(tzinfo=None)
    body = _canonical(payload)
    digest = entry_hash(version, recorded_at, restatement_id, event, actor, body, prev)
    engine.execute(
        f"insert into {schema}.changelog values (?, ?, ?, ?, ?, ?, ?, ?)",
        [version, recorded_at, restatement_id, event, actor, body, prev, digest],
    )
    return version


def entries(engine: Engine, schema: str, restatement_id: int | None = None) -> list[dict[str, Any]]:
    rows = engine.query_dicts(
        f"select * from {schema}.changelog where (? is null or restatement_id = ?) order by version",
        [restatement_id, restatement_id],
    )
    for r in rows:
        r["payload"] = json.loads(r.pop("payload_json"))
    return rows


def verify(engine: Engine, schema: str) -> ChainBreak | None:
    """Recompute the chain; the first entry whose content or link is wrong, or None."""
    rows = engine.query(
        f"select version, recorded_at, restatement_id, event, actor, payload_json, prev_hash, "
        f"entry_hash from {schema}.changelog order by version"
    )
    prev = GENESIS
    expected_version = 1
    for version, recorded_at, rid, event, actor, body, prev_hash, digest in rows:
        if version != expected_version:
            return ChainBreak(expected_version, f"entry {expected_version} is missing")
        if prev_hash != prev:
            return ChainBreak(version, "link to the previous entry does not match")
        if entry_hash(version, recorded_at, rid, event, actor, body, prev_hash) != digest:
            return ChainBreak(version, "content does not match its hash")
        prev = digest
        expected_version += 1
    return None
