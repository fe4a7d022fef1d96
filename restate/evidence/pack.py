"""The auditor's export of one restatement and its offline check.

A pack is a folder holding the evidence page (``evidence.html``), the diff at its
recorded grain (``diff.csv``), the restatement's changelog entries with every field the
MAC covers (``changelog.json``), the collected facts (``evidence.json``) and
``SHA256SUMS``: one ``<sha256>  <file>`` line per file, the format ``sha256sum -c``
reads, and ``SHA256SUMS.mac``: the manifest's HMAC under the audit key, bound to the
restatement. ``verify_pack`` needs no warehouse: exactly the pack's files must be there
(plain files, no duplicates, nothing added), each with its sum, and the changelog slice
well formed and of this restatement. Without the key that shows the files are as the
sums say (a change made without new sums); with the key the manifest's MAC and every
audit entry's MAC are computed again, so no file can be changed even with new sums. The
manifest's sum is also recorded in the changelog when the pack is written (event
``evidence_exported``).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import hmac
import io
import json
import re
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from restate.evidence.collect import Evidence
from restate.state.changelog import entry_mac

MANIFEST = "SHA256SUMS"
MANIFEST_MAC = "SHA256SUMS.mac"
REQUIRED = ("evidence.html", "diff.csv", "changelog.json", "evidence.json")
PACK_FILES = frozenset({*REQUIRED, MANIFEST, MANIFEST_MAC})
MAX_FILE_BYTES = 256 * 1024 * 1024
MAC_SCHEME = "restate-evidence-manifest-hmac-sha256-v1"
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


def manifest_mac(key: bytes, restatement_id: int, manifest: bytes) -> str:
    """HMAC-SHA256 of the manifest under the audit key, bound to the restatement: only the
    holder of the key could have written a pack whose MAC checks."""
    material = b"\x1f".join([MAC_SCHEME.encode(), str(int(restatement_id)).encode(), manifest])
    return hmac.new(key, material, hashlib.sha256).hexdigest()


class PackError(ValueError):
    """A pack cannot be written or read as asked (one line, no traceback)."""


def _is_pack_folder(folder: Path) -> bool:
    """A real folder (not a link) holding only a pack's own files."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    return all(p.is_file() and not p.is_symlink() and p.name in PACK_FILES for p in folder.iterdir())


def write_pack(folder: Path, files: Mapping[str, bytes], mac: Callable[[bytes], str] | None = None) -> str:
    """Write the files, their manifest and (with ``mac``) the manifest's MAC into
    ``folder``. An earlier pack there is replaced whole (a sibling folder renamed into
    place); a folder holding anything else, or a link, is refused and left alone.
    Returns the manifest's SHA-256."""
    folder = Path(folder)
    if (folder.exists() or folder.is_symlink()) and not _is_pack_folder(folder):
        raise PackError(
            f"{folder} exists and is not an evidence pack: choose a new folder (nothing was changed)"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    manifest = manifest_text(files).encode()
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for name, data in [*files.items(), (MANIFEST, manifest)]:
            (staging / name).write_bytes(data)
        if mac is not None:
            (staging / MANIFEST_MAC).write_text(mac(manifest) + "\n")
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            old.rmdir()
            folder.rename(old)
            staging.rename(folder)
            _remove_pack(old)
        else:
            staging.rename(folder)
    except BaseException:
        if staging.exists():
            _remove_pack(staging)
        raise
    return _sha256(manifest)


def _remove_pack(path: Path) -> None:
    """Remove a folder this module wrote (its pack files only)."""
    for child in path.iterdir():
        if child.name in PACK_FILES and child.is_file() and not child.is_symlink():
            child.unlink()
    path.rmdir()


def _read(path: Path) -> dict[str, bytes]:
    """The files of a pack folder or zip, by name (a zip's single top folder dropped).
    Anything but plain files with plain names, duplicates and oversized members are refused."""
    files: dict[str, bytes] = {}
    if path.is_dir():
        for p in sorted(path.iterdir()):
            if p.is_symlink() or not p.is_file():
                raise PackError(f"{p.name} in the pack is not a plain file")
            if p.stat().st_size > MAX_FILE_BYTES:
                raise PackError(f"{p.name} is larger than a pack file can be ({MAX_FILE_BYTES:,} bytes)")
            files[p.name] = p.read_bytes()
        return files
    if not zipfile.is_zipfile(path):
        raise PackError(f"{path} is neither a pack folder nor a zip of one")
    try:
        with zipfile.ZipFile(path) as z:
            infos = [i for i in z.infolist() if not i.is_dir()]
            names = [i.filename for i in infos]
            tops = {n.split("/", 1)[0] for n in names}
            strip = len(tops) == 1 and all("/" in n for n in names)
            total = 0
            for info in infos:
                name = info.filename.split("/", 1)[1] if strip else info.filename
                parts = info.filename.split("/")
                if (
                    not name
                    or "/" in name
                    or "\\" in info.filename
                    or info.filename.startswith("/")
                    or any(p in (".", "..") for p in parts)
                ):
                    raise PackError(f"{info.filename!r} in the zip is not a pack file name")
                if name in files:
                    raise PackError(f"{name} appears twice in the zip")
                total += info.file_size
                if info.file_size > MAX_FILE_BYTES or total > 4 * MAX_FILE_BYTES:
                    raise PackError(f"{info.filename} is larger than a pack can be")
                files[name] = z.read(info)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, NotImplementedError, EOFError) as exc:
        raise PackError(f"{path} cannot be read as a zip: {exc}") from None
    return files


def _check_changelog(data: bytes, key: bytes | None, restatement_id: int | None) -> list[PackProblem]:
    name = "changelog.json"
    try:
        entries = json.loads(data)
    except (ValueError, RecursionError) as exc:
        return [PackProblem(name, f"not JSON: {str(exc)[:80]}")]
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
        if restatement_id is not None and e["restatement_id"] != restatement_id:
            problems.append(PackProblem(name, f"entry {n} belongs to restatement {e['restatement_id']!r}"))
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
            problems.append(PackProblem(name, f"entry {n}: unreadable ({exc})"))
            continue
        stored = e["entry_hash"]
        if not (isinstance(stored, str) and stored.isascii() and hmac.compare_digest(mac, stored)):
            problems.append(PackProblem(name, f"entry v{e['version']}: MAC does not match (changed entry)"))
    return problems


def _restatement_id(files: Mapping[str, bytes]) -> int | None:
    try:
        value = json.loads(files.get("evidence.json", b"{}")).get("restatement_id")
    except (ValueError, RecursionError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def verify_pack(path: Path, key: bytes | None = None) -> tuple[list[PackProblem], dict[str, Any]]:
    """Check a pack offline. Returns the problems (none: intact) and what was checked.

    Without the key the sums show the files are as SHA256SUMS lists them: a change made
    without writing new sums. With the key, the manifest's MAC (SHA256SUMS.mac) shows
    restate wrote these sums for this restatement, and every audit entry's MAC is
    computed again: no file can be changed, even with new sums. Raises PackError for
    something that is not a readable pack."""
    files = _read(Path(path))
    info: dict[str, Any] = {"files": 0, "entries": 0, "macs_checked": key is not None, "manifest_mac": None}
    if MANIFEST not in files:
        return [PackProblem(MANIFEST, "missing: not a restate evidence pack")], info
    manifest = files[MANIFEST]
    info["manifest_sha256"] = _sha256(manifest)
    problems: list[PackProblem] = []
    listed: dict[str, str] = {}
    try:
        lines = manifest.decode().splitlines()
    except UnicodeDecodeError:
        return [PackProblem(MANIFEST, "not text")], info
    for n, line in enumerate(lines, 1):
        m = _LINE.match(line)
        if m is None:
            problems.append(PackProblem(MANIFEST, f"line {n} is not '<sha256>  <file>'"))
            continue
        if m.group(2) in listed:
            problems.append(PackProblem(MANIFEST, f"line {n} lists {m.group(2)} again"))
            continue
        listed[m.group(2)] = m.group(1)
    for name, digest in sorted(listed.items()):
        if name not in REQUIRED:
            problems.append(PackProblem(name, "listed in the manifest but not a pack file"))
        elif name not in files:
            problems.append(PackProblem(name, "listed in the manifest but missing"))
        elif not hmac.compare_digest(_sha256(files[name]), digest):
            problems.append(PackProblem(name, "SHA-256 does not match the manifest (the file was changed)"))
    for name in sorted(set(files) - set(listed) - {MANIFEST, MANIFEST_MAC}):
        problems.append(PackProblem(name, "not listed in the manifest (added to the pack)"))
    for name in REQUIRED:
        if name not in listed:
            problems.append(PackProblem(name, "required file not in the manifest"))
    info["files"] = len(listed)
    rid = _restatement_id(files)
    info["restatement_id"] = rid
    if key is not None:
        stored = files.get(MANIFEST_MAC, b"").decode("ascii", "replace").strip()
        expected = manifest_mac(key, rid, manifest) if rid is not None else ""
        info["manifest_mac"] = bool(stored) and hmac.compare_digest(stored, expected)
        if not stored:
            problems.append(PackProblem(MANIFEST_MAC, "missing: the manifest cannot be proved restate's"))
        elif not info["manifest_mac"]:
            problems.append(
                PackProblem(MANIFEST_MAC, "does not match: the sums were rewritten, or the key is another")
            )
    if "changelog.json" in files:
        problems += _check_changelog(files["changelog.json"], key, rid)
        with contextlib.suppress(ValueError, TypeError, RecursionError):
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
