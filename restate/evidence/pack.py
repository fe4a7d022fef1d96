"""The auditor's export of one restatement and its offline check.

A pack is a folder holding the evidence page (``evidence.html``), the diff at its
recorded grain (``diff.csv``), the restatement's changelog entries with every field the
MAC covers (``changelog.json``), the collected facts (``evidence.json``) and
``SHA256SUMS``: one ``<sha256>  <file>`` line per file, the format ``sha256sum -c``
reads. ``verify_pack`` needs no warehouse: every listed file must be there with its sum,
no other file may be there, the changelog slice must be well formed, and with the audit
key each entry's MAC is computed again. The manifest's own sum is recorded in the
changelog when the pack is written (event ``evidence_exported``), so an edited manifest
is caught by anyone who can read the log.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import hmac
import io
import json
import os
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from restate.evidence.collect import Evidence
from restate.state.changelog import entry_mac

MANIFEST = "SHA256SUMS"
REQUIRED = ("evidence.html", "diff.csv", "changelog.json", "evidence.json")
_LINE = re.compile(r"^([0-9a-f]{64}) [ *](\S(?:.*\S)?)$")
_DIFF_COLUMNS = (
    "model",
    "partition_date",
    "dimensions",
    "metric",
    "as_reported",
    "restated",
    "delta",
    "pct",
    "only_in",
)


@dataclass(frozen=True)
class PackProblem:
    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def diff_csv(evidence: Evidence) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_DIFF_COLUMNS)
    for r in evidence.diff:
        writer.writerow(["" if r.get(c) is None else r[c] for c in _DIFF_COLUMNS])
    return out.getvalue().encode()


def pack_files(evidence: Evidence, page: str) -> dict[str, bytes]:
    """The pack's files (manifest excluded), byte for byte."""
    facts = {
        "restatement_id": evidence.restatement_id,
        "collected_at": evidence.collected_at.isoformat(),
        "collected_by": evidence.collected_by,
        "request": evidence.request,
        "plan": evidence.plan,
        "chunks": evidence.chunks,
        "validations": evidence.validations,
        "chain": evidence.chain,
        "archive": evidence.archive,
    }
    return {
        "evidence.html": page.encode(),
        "diff.csv": diff_csv(evidence),
        "changelog.json": json.dumps(evidence.changelog, indent=2, sort_keys=True).encode(),
        "evidence.json": json.dumps(facts, indent=2, sort_keys=True, default=str).encode(),
    }


def manifest_text(files: Mapping[str, bytes]) -> str:
    return "".join(f"{_sha256(data)}  {name}\n" for name, data in sorted(files.items()))


def write_pack(folder: Path, files: Mapping[str, bytes]) -> str:
    """Write the files and their manifest into ``folder`` (created; an earlier pack there
    is replaced whole, through a sibling folder renamed into place). Returns the
    manifest's SHA-256."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    if staging.exists():
        _remove(staging)
    staging.mkdir()
    manifest = manifest_text(files)
    for name, data in [*files.items(), (MANIFEST, manifest.encode())]:
        (staging / name).write_bytes(data)
    if folder.exists():
        old = folder.with_name(f".{folder.name}.{os.getpid()}.old")
        folder.rename(old)
        staging.rename(folder)
        _remove(old)
    else:
        staging.rename(folder)
    return _sha256(manifest.encode())


def _remove(path: Path) -> None:
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def _read(path: Path) -> dict[str, bytes]:
    """Every file of a pack folder or zip, by name (a zip's single top folder dropped)."""
    if path.is_dir():
        return {
            p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
        }
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if not n.endswith("/")]
            tops = {n.split("/", 1)[0] for n in names}
            strip = len(tops) == 1 and all("/" in n for n in names)
            return {(n.split("/", 1)[1] if strip else n): z.read(n) for n in names}
    raise ValueError(f"{path} is neither a pack folder nor a zip of one")


def _check_changelog(data: bytes, key: bytes | None) -> list[PackProblem]:
    name = "changelog.json"
    try:
        entries = json.loads(data)
    except ValueError as exc:
        return [PackProblem(name, f"not JSON: {exc}")]
    if not isinstance(entries, list):
        return [PackProblem(name, "not a list of entries")]
    problems: list[PackProblem] = []
    fields = ("version", "recorded_at", "restatement_id", "event", "actor", "payload_json")
    last = 0
    for n, e in enumerate(entries, 1):
        if not isinstance(e, dict) or any(f not in e for f in (*fields, "prev_hash", "entry_hash")):
            problems.append(PackProblem(name, f"entry {n} lacks fields"))
            continue
        if not isinstance(e["version"], int) or e["version"] <= last:
            problems.append(PackProblem(name, f"entry {n}: versions out of order"))
        last = e["version"] if isinstance(e["version"], int) else last
        if key is None:
            continue
        try:
            mac = entry_mac(
                key,
                e["version"],
                datetime.fromisoformat(e["recorded_at"]),
                e["restatement_id"],
                e["event"],
                e["actor"],
                e["payload_json"],
                e["prev_hash"],
            )
        except (TypeError, ValueError) as exc:
            problems.append(PackProblem(name, f"entry v{e['version']}: unreadable ({exc})"))
            continue
        if not hmac.compare_digest(mac, str(e["entry_hash"])):
            problems.append(PackProblem(name, f"entry v{e['version']}: MAC does not match (changed entry)"))
    return problems


def verify_pack(path: Path, key: bytes | None = None) -> tuple[list[PackProblem], dict[str, Any]]:
    """Check a pack offline. Returns the problems (none: intact) and what was checked:
    files, the manifest's SHA-256, entries and whether their MACs were computed."""
    files = _read(Path(path))
    info: dict[str, Any] = {"files": 0, "entries": 0, "macs_checked": key is not None}
    if MANIFEST not in files:
        return [PackProblem(MANIFEST, "missing: not a restate evidence pack")], info
    info["manifest_sha256"] = _sha256(files[MANIFEST])
    problems: list[PackProblem] = []
    listed: dict[str, str] = {}
    try:
        lines = files[MANIFEST].decode().splitlines()
    except UnicodeDecodeError:
        return [PackProblem(MANIFEST, "not text")], info
    for n, line in enumerate(lines, 1):
        m = _LINE.match(line)
        if m is None:
            problems.append(PackProblem(MANIFEST, f"line {n} is not '<sha256>  <file>'"))
            continue
        listed[m.group(2)] = m.group(1)
    for name, digest in sorted(listed.items()):
        if name not in files:
            problems.append(PackProblem(name, "listed in the manifest but missing"))
        elif not hmac.compare_digest(_sha256(files[name]), digest):
            problems.append(PackProblem(name, "SHA-256 does not match the manifest (the file was changed)"))
    for name in sorted(set(files) - set(listed) - {MANIFEST}):
        problems.append(PackProblem(name, "not listed in the manifest (added to the pack)"))
    for name in REQUIRED:
        if name not in listed:
            problems.append(PackProblem(name, "required file not in the manifest"))
    info["files"] = len(listed)
    if "changelog.json" in files:
        problems += _check_changelog(files["changelog.json"], key)
        with contextlib.suppress(ValueError, TypeError):
            info["entries"] = len(json.loads(files["changelog.json"]))
    return problems, info


def default_folder(settings: Any, restatement_id: int) -> Path:
    """Where `restate evidence ID` writes unless told otherwise."""
    return Path(settings.data_dir) / "evidence" / f"restatement-{int(restatement_id)}"


def record_export(engine: Any, settings: Any, restatement_id: int, manifest_sha256: str, files: int) -> int:
    """Audit the export: who wrote which pack (its manifest's SHA-256)."""
    from restate.state import changelog
    from restate.state.duties import run_by

    with engine.transaction():
        return changelog.append(
            engine,
            settings.meta_schema,
            "evidence_exported",
            {"manifest_sha256": manifest_sha256, "files": files},
            restatement_id=restatement_id,
            actor=run_by(settings),
        )
