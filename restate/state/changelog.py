"""Append-only, versioned audit log in the meta schema, tamper-evident against the
warehouse's own writers.

* Keyed chain. Every entry stores an HMAC-SHA256 (column ``entry_hash``) over all of its
  stored fields and the previous entry's MAC (column ``prev_hash``). The key is held
  outside the warehouse: ``RESTATE_AUDIT_KEY``, else the key file
  (``RESTATE_AUDIT_KEY_FILE``, default ``<state_dir>/audit.key``: 32 random bytes in hex,
  created with mode 0600 by the first append). The key is the text of the setting or of
  the file, so the file's content can be given as ``RESTATE_AUDIT_KEY`` elsewhere. Whoever
  can write the warehouse but not read the key cannot rewrite an entry and recompute the
  chain. Logs written before the chain was keyed do not verify.
* Checkpoints. After an append has committed, ``{schema, version, mac, recorded_at}`` is
  appended to the checkpoint file (``RESTATE_AUDIT_CHECKPOINT_FILE``, default
  ``<state_dir>/audit_checkpoints.jsonl``), outside the warehouse. An append made inside
  a caller's transaction is checkpointed when that transaction commits and never when it
  rolls back, so every checkpoint names an entry that did commit. Hence the rule verify
  applies: every checkpoint must be in the log with the same MAC. A checkpoint past the
  log's last entry means its tail was deleted (or the log emptied); a checkpoint whose
  version holds another MAC means the log was rewritten. A crash between a commit and its
  checkpoint only leaves the checkpoints behind the log (less evidence, never a false
  alarm).
* Serialised appends. ``<meta>.changelog_head`` holds one row, the chain head. An append
  moves it compare-and-set (``update ... where version = <read version>``, then reads it
  back) in the same transaction as its insert, so two writers can never both append
  version N, on Snowflake too (where primary keys are not enforced). Outside a caller's
  transaction a losing append retries; inside one it raises ChangelogConflict and the
  caller's transaction rolls back.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import random
import secrets
import tempfile
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from restate.engines.base import Engine
from restate.settings import Settings, get_settings

log = logging.getLogger(__name__)

GENESIS = "0" * 64
CHAIN = "changelog"
# Domain separation of the MAC material (changes if the field layout ever changes).
MAC_SCHEME = "restate-changelog-hmac-sha256-v1"
_RETRIES = 200
# Schemas whose changelog_head table this engine has already seen (one lookup per session).
_HEAD_SEEN: weakref.WeakKeyDictionary[Engine, set[str]] = weakref.WeakKeyDictionary()
BAD_MAC = "MAC does not match: the entry was changed, or re-chained without the key, or the key is wrong"


@dataclass(frozen=True)
class ChainBreak:
    version: int
    reason: str


@dataclass(frozen=True)
class Checkpoint:
    version: int
    mac: str
    recorded_at: str


class ChangelogError(RuntimeError):
    """The changelog cannot be appended to as it stands."""


class ChangelogConflict(ChangelogError):
    """Another writer appended the same version first."""


class AuditKeyMissing(ChangelogError):
    """The MAC key is not available (not configured, file missing)."""


def _canonical(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))


# ---------------------------------------------------------------- key and checkpoints


def audit_settings(engine: Engine) -> Settings:
    """The installation whose key and checkpoints belong to this engine's changelog."""
    if engine.settings is not None:
        return engine.settings
    path = getattr(engine, "path", None)
    if isinstance(path, Path):
        # A DuckDB file opened without settings: its installation is the folder it is in.
        return Settings(data_dir=path.parent, duckdb_path=path)
    return get_settings()


def _missing_key_message(settings: Settings) -> str:
    return (
        f"no audit key: set RESTATE_AUDIT_KEY or restore the key file {settings.audit_key_path} "
        "(the key the changelog was written with)"
    )


def audit_key(settings: Settings, schema: str, *, create: bool = False) -> bytes | None:
    """The MAC key: the configured one, else the key file's. With `create`, a missing file
    is created (0600) unless checkpoints already exist, which means the key was lost."""
    if settings.audit_key is not None:
        return settings.audit_key.get_secret_value().encode()
    path = settings.audit_key_path
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        if not create:
            return None
        if read_checkpoints(settings, schema):
            raise AuditKeyMissing(
                f"{_missing_key_message(settings)}; checkpoints in {settings.audit_checkpoint_path} "
                "show entries were written with a key, so a new one is not created"
            ) from None
        return _create_key(path)
    if not text:
        raise AuditKeyMissing(f"the audit key file {path} is empty: restore it or set RESTATE_AUDIT_KEY")
    return text.encode()


def _create_key(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".audit-key-")  # mode 0600
    try:
        os.write(fd, (secrets.token_hex(32) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # atomic; whoever links first wins and everyone reads that key
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return path.read_text().strip().encode()


def read_checkpoints(settings: Settings, schema: str) -> list[Checkpoint]:
    """The checkpoints recorded for this schema's changelog, oldest first."""
    try:
        lines = settings.audit_checkpoint_path.read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            cp = json.loads(line)
            if cp.get("schema") == schema:
                out.append(Checkpoint(int(cp["version"]), str(cp["mac"]), str(cp.get("recorded_at"))))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # a line torn by a crash mid-write
    return out


def _write_checkpoint(settings: Settings, schema: str, version: int, mac: str) -> None:
    path = settings.audit_checkpoint_path
    line = json.dumps(
        {
            "schema": schema,
            "version": version,
            "mac": mac,
            "recorded_at": datetime.now(UTC).replace(tzinfo=None).isoformat(),
        }
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        # The entry is committed: a missing checkpoint only weakens the evidence.
        log.warning(
            "changelog v%s committed but its checkpoint was not written to %s: %s", version, path, exc
        )


# ---------------------------------------------------------------- the chain


def entry_mac(
    key: bytes,
    version: int,
    recorded_at: datetime,
    restatement_id: int | None,
    event: str,
    actor: str | None,
    payload_json: str,
    prev_mac: str,
) -> str:
    """HMAC-SHA256 over every stored field of an entry and the previous entry's MAC."""
    material = "\x1f".join(
        [
            MAC_SCHEME,
            str(version),
            recorded_at.isoformat(),
            "" if restatement_id is None else str(restatement_id),
            event,
            actor or "",
            payload_json,
            prev_mac,
        ]
    )
    return hmac.new(key, material.encode(), hashlib.sha256).hexdigest()


def seed_head(engine: Engine, schema: str) -> None:
    """Create the chain-head row from the log's last entry if it is missing."""
    engine.execute(
        f"insert into {schema}.changelog_head (chain, version, entry_hash) "
        f"select ?, coalesce((select max(version) from {schema}.changelog), 0), "
        f"coalesce((select entry_hash from {schema}.changelog order by version desc limit 1), ?) "
        f"where not exists (select 1 from {schema}.changelog_head where chain = ?)",
        [CHAIN, GENESIS, CHAIN],
    )


def _append_at_head(
    engine: Engine,
    schema: str,
    key: bytes,
    event: str,
    body: str,
    restatement_id: int | None,
    actor: str | None,
) -> tuple[int, str]:
    """Inside an open transaction: move the head compare-and-set and insert the entry."""
    head_sql = f"select version, entry_hash from {schema}.changelog_head where chain = ?"
    head = engine.query(head_sql, [CHAIN])
    if not head:
        seed_head(engine, schema)
        head = engine.query(head_sql, [CHAIN])
    if len(head) != 1:
        raise ChangelogError(
            f"{schema}.changelog_head holds {len(head)} rows for the chain: keep only the one "
            f"matching the last entry of {schema}.changelog"
        )
    prev_version, prev_mac = int(head[0][0]), str(head[0][1])
    version = prev_version + 1
    recorded_at = datetime.now(UTC).replace(tzinfo=None)
    mac = entry_mac(key, version, recorded_at, restatement_id, event, actor, body, prev_mac)
    engine.execute(
        f"update {schema}.changelog_head set version = ?, entry_hash = ? "
        "where chain = ? and version = ? and entry_hash = ?",
        [version, mac, CHAIN, prev_version, prev_mac],
    )
    moved = engine.query(head_sql, [CHAIN])
    if [(int(v), str(h)) for v, h in moved] != [(version, mac)]:
        raise ChangelogConflict(f"another writer appended changelog v{version} first")
    engine.execute(
        f"insert into {schema}.changelog values (?, ?, ?, ?, ?, ?, ?, ?)",
        [version, recorded_at, restatement_id, event, actor, body, prev_mac, mac],
    )
    return version, mac


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
    settings = audit_settings(engine)
    key = audit_key(settings, schema)
    if key is None:
        # No key here: a new one only for a log that has no entries yet. Another host
        # writing this warehouse must use the key the entries were written with.
        entries = engine.scalar(f"select count(*) from {schema}.changelog")
        if entries:
            raise AuditKeyMissing(
                f"{_missing_key_message(settings)}; {schema}.changelog already holds {entries} "
                "entries written with a key, so a new one is not created (every writer must "
                "share the key and the checkpoint file)"
            )
        key = audit_key(settings, schema, create=True)
    assert key is not None
    body = _canonical(payload)
    seen = _HEAD_SEEN.setdefault(engine, set())
    if schema not in seen:
        if not engine.relation_exists(schema, "changelog_head"):
            raise ChangelogError(f"{schema}.changelog_head is missing: run `restate init` to add it")
        seen.add(schema)

    def checkpoint(version: int, mac: str) -> None:
        engine.after_commit(lambda: _write_checkpoint(settings, schema, version, mac))

    if engine.in_transaction:
        try:
            version, mac = _append_at_head(engine, schema, key, event, body, restatement_id, actor)
        except Exception as exc:
            if engine.is_write_conflict(exc):
                raise ChangelogConflict(
                    f"another writer appended to {schema}.changelog at the same time; retry"
                ) from exc
            raise
        checkpoint(version, mac)
        return version
    delay = 0.002
    for _ in range(_RETRIES):
        try:
            with engine.transaction():
                version, mac = _append_at_head(engine, schema, key, event, body, restatement_id, actor)
                checkpoint(version, mac)
            return version
        except ChangelogConflict:
            pass
        except Exception as exc:
            if not engine.is_write_conflict(exc):
                raise
        time.sleep(random.uniform(0, delay))
        delay = min(delay * 2, 0.2)
    raise ChangelogConflict(
        f"could not append to {schema}.changelog: other writers kept appending at the same time; retry"
    )


def entries(engine: Engine, schema: str, restatement_id: int | None = None) -> list[dict[str, Any]]:
    rows = engine.query_dicts(
        f"select * from {schema}.changelog where (? is null or restatement_id = ?) order by version",
        [restatement_id, restatement_id],
    )
    for r in rows:
        r["payload"] = json.loads(r.pop("payload_json"))
    return rows


def chain_head(engine: Engine, schema: str) -> str | None:
    """The log's last entry as notices quote it, e.g. 'changelog v42 mac 3f2a9c1e'."""
    last = engine.query(f"select version, entry_hash from {schema}.changelog order by version desc limit 1")
    if not last:
        return None
    return f"changelog v{int(last[0][0])} mac {str(last[0][1])[:8]}"


def verify(engine: Engine, schema: str, *, key: bytes | None = None) -> ChainBreak | None:
    """Check every MAC and link, and the log against the checkpoints kept outside it.

    Returns the first bad entry (lowest version) with the reason, or None. Raises
    AuditKeyMissing when the log has entries and no key is available.
    """
    settings = audit_settings(engine)
    rows = engine.query(
        f"select version, recorded_at, restatement_id, event, actor, payload_json, prev_hash, "
        f"entry_hash from {schema}.changelog order by version"
    )
    if key is None:
        key = audit_key(settings, schema)
    if rows and key is None:
        raise AuditKeyMissing(_missing_key_message(settings))
    breaks: list[tuple[int, int, str]] = []  # (version, order, reason)
    prev, expected = GENESIS, 1
    for version, recorded_at, rid, event, actor, body, prev_hash, digest in rows:
        assert key is not None
        if version == expected - 1:
            breaks.append((version, 0, f"entry {version} appears twice: the chain was forked"))
            break
        if version != expected:
            breaks.append((expected, 0, f"entry {expected} is missing"))
            break
        if prev_hash != prev:
            breaks.append((version, 0, "link to the previous entry does not match"))
            break
        if not hmac.compare_digest(
            entry_mac(key, version, recorded_at, rid, event, actor, body, prev_hash), digest
        ):
            breaks.append((version, 0, BAD_MAC))
            break
        prev, expected = digest, expected + 1

    stored = {int(r[0]): str(r[7]) for r in rows}
    last = max(stored, default=0)
    cps = read_checkpoints(settings, schema)
    beyond = [cp for cp in cps if cp.version > last]
    if beyond:
        top = max(beyond, key=lambda cp: cp.version)
        breaks.append(
            (
                last + 1,
                1,
                f"entries {last + 1}..{top.version} are missing: checkpoint v{top.version} "
                f"(recorded {top.recorded_at}) is not in the log; its tail was deleted or it was emptied",
            )
        )
    for cp in cps:
        if cp.version > last:
            continue
        if cp.version not in stored:
            breaks.append((cp.version, 1, f"entry {cp.version} is missing (checkpointed {cp.recorded_at})"))
        elif not hmac.compare_digest(stored[cp.version], cp.mac):
            breaks.append(
                (
                    cp.version,
                    1,
                    f"entry differs from checkpoint v{cp.version} ({cp.recorded_at}): the log was rewritten",
                )
            )
    if not breaks:
        return None
    version, _, reason = min(breaks)
    return ChainBreak(version, reason)
