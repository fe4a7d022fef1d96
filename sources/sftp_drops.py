"""Partner file drops over SFTP: pick up complete files only, once per content, each
checked against its declared schema; a drifted file is quarantined with its reason and
the others continue; every file seen is recorded (restate_meta.source_files).

- complete: a name without a partial suffix (.part, .tmp, .filepart, .partial) whose
  size and modification time did not change between two listings `settle_s` apart;
  a file still growing is left for the next run (recorded as `incomplete`);
- once per content: the SHA-256 of the bytes; the same content under another name, or
  dropped again, is recorded as `duplicate` and not landed again;
- schema: a CSV with a header; the declared columns must all be there and nothing else
  (names compared case- and space-insensitively), every value must parse as its type;
  otherwise `quarantined` with the reason (missing/unexpected columns, the first bad
  value with its line and column), the file copied to `<data_dir>/quarantine/<folder>/`;
- landed: one Parquet file per accepted drop under `<landing>/<folder>/<batch>/`, with
  the drop's name and the pickup time as columns; the record is written after the file.
The client is paramiko; the server's host key must be the one configured (no trust on
first use).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import stat
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from restate.engines.base import Engine
from restate.settings import Settings
from sources.postgres import arrow_type

PARTIAL_SUFFIXES = (".part", ".tmp", ".filepart", ".partial")


@dataclass(frozen=True)
class SftpDrop:
    """One partner's drop folder and what its files must hold."""

    name: str  # e.g. "3pl-east": recorded with every file
    host: str
    port: int
    username: str
    host_key: str  # "ssh-ed25519 AAAA..." (the server's public key, pinned)
    remote_dir: str
    columns: dict[str, str]  # declared column -> type, in order
    password: str | None = None
    key_file: Path | None = None
    settle_s: float = 5.0


@dataclass
class DropReport:
    source: str
    accepted: list[str] = field(default_factory=list)
    quarantined: dict[str, str] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    rows: int = 0
    files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _norm(name: str) -> str:
    return "_".join(name.strip().lower().split())


def _parse(value: str, kind: pa.DataType) -> Any:
    text = value.strip()
    if text == "":
        return None
    if pa.types.is_decimal(kind):
        number = Decimal(text.replace(",", ""))
        if not number.is_finite():
            raise InvalidOperation(text)
        return number
    if pa.types.is_timestamp(kind):
        return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)
    if pa.types.is_date(kind):
        return datetime.fromisoformat(text).date()
    if pa.types.is_integer(kind):
        return int(text)
    if pa.types.is_floating(kind):
        return float(text)
    if pa.types.is_boolean(kind):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(text)
        return text.lower() in ("true", "1")
    return text


def check_csv(data: bytes, columns: dict[str, str]) -> tuple[pa.Table | None, str | None]:
    """The file as a typed table, or the reason it is refused."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, f"not_utf8: {exc}"
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        return None, "empty_file"
    got = [_norm(h) for h in header]
    want = {_norm(c): c for c in columns}
    missing = [want[c] for c in want if c not in got]
    unexpected = [h for h, g in zip(header, got, strict=True) if g not in want]
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(unexpected)}"] if unexpected else []
        )
        return None, "schema_drift: " + "; ".join(parts)
    types = {c: arrow_type(t) for c, t in columns.items()}
    values: dict[str, list[Any]] = {c: [] for c in columns}
    position = {want[g]: i for i, g in enumerate(got)}
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(header):
            return None, f"bad_row: line {line} has {len(row)} fields, the header {len(header)}"
        for column, kind in types.items():
            raw = row[position[column]]
            try:
                values[column].append(_parse(raw, kind))
            except (ValueError, InvalidOperation):
                return None, f"bad_value: line {line} column {column}: {raw[:40]!r} is not {columns[column]}"
    return pa.table({c: pa.array(values[c], type=types[c]) for c in columns}), None


def _connect(drop: SftpDrop) -> Any:
    import paramiko  # type: ignore[import-untyped,unused-ignore]

    client = paramiko.SSHClient()
    kind, _, blob = drop.host_key.strip().partition(" ")
    key = paramiko.PKey.from_type_string(kind, base64.b64decode(blob.split()[0]))
    name = drop.host if drop.port == 22 else f"[{drop.host}]:{drop.port}"
    client.get_host_keys().add(name, kind, key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())  # only the pinned key
    client.connect(
        drop.host,
        port=drop.port,
        username=drop.username,
        password=drop.password,
        key_filename=str(drop.key_file) if drop.key_file else None,
        look_for_keys=False,
        allow_agent=False,
        timeout=30,
    )
    return client


def _listing(sftp: Any, remote_dir: str) -> dict[str, tuple[int, int]]:
    return {
        a.filename: (int(a.st_size or 0), int(a.st_mtime or 0))
        for a in sftp.listdir_attr(remote_dir)
        if a.st_mode is not None and stat.S_ISREG(a.st_mode)
    }


def _record(engine: Engine, meta: str, drop: SftpDrop, name: str, stamp: tuple[int, int], sha: str | None,
            status: str, reason: str | None, landed: str | None) -> None:  # fmt: skip
    size, mtime = stamp
    engine.execute(
        f"insert into {meta}.source_files values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            drop.name,
            f"{drop.remote_dir.rstrip('/')}/{name}",
            size,
            sha,
            status,
            reason,
            landed,
            _now(),
            mtime,
        ],
    )


def _known(
    engine: Engine, meta: str, drop: SftpDrop, name: str, stamp: tuple[int, int]
) -> tuple[str, str] | None:
    """What an earlier pass decided for this very file (same path, size and mtime): it is
    not downloaded again."""
    rows = engine.query(
        f"select status, reason from {meta}.source_files where source = ? and path = ? and size_bytes = ? "
        "and mtime = ? order by seen_at desc limit 1",
        [drop.name, f"{drop.remote_dir.rstrip('/')}/{name}", *stamp],
    )
    return (str(rows[0][0]), str(rows[0][1])) if rows else None


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _count(engine: Engine, meta: str, where: str, params: list[Any]) -> int:
    return int(engine.scalar(f"select count(*) from {meta}.source_files where {where}", params) or 0)


def _take(
    settings: Settings,
    engine: Engine,
    drop: SftpDrop,
    folder: str,
    batch: str,
    name: str,
    stamp: tuple[int, int],
    data: bytes,
    report: DropReport,
) -> None:
    """Land, skip or quarantine one complete file, and record it (once per content and path)."""
    meta = settings.meta_schema
    sha = hashlib.sha256(data).hexdigest()
    path_remote = f"{drop.remote_dir.rstrip('/')}/{name}"
    if _count(engine, meta, "sha256 = ? and status = 'accepted'", [sha]):
        if not _count(engine, meta, "sha256 = ? and path = ?", [sha, path_remote]):
            _record(engine, meta, drop, name, stamp, sha, "duplicate", "same content landed before", None)
        report.duplicates.append(name)
        return
    table, reason = check_csv(data, drop.columns)
    if table is None:
        if not _count(engine, meta, "sha256 = ? and status = 'quarantined'", [sha]):
            keep = settings.data_dir / "quarantine" / folder / f"{sha[:12]}_{name}"
            keep.parent.mkdir(parents=True, exist_ok=True)
            keep.write_bytes(data)
            _record(engine, meta, drop, name, stamp, sha, "quarantined", reason, str(keep))
        report.quarantined[name] = str(reason)
        return
    rows = table.num_rows
    table = table.append_column("source_file", pa.array([name] * rows, pa.string()))
    table = table.append_column("received_at", pa.array([_now()] * rows, pa.timestamp("us")))
    landed = f"{settings.landing.rstrip('/')}/{folder}/{batch}/{os.path.splitext(name)[0]}-{sha[:8]}.parquet"
    os.makedirs(os.path.dirname(landed), exist_ok=True)
    pq.write_table(table, f"{landed}.partial")
    os.replace(f"{landed}.partial", landed)
    _record(engine, meta, drop, name, stamp, sha, "accepted", None, landed)
    report.accepted.append(name)
    report.files.append(landed)
    report.rows += rows


def pick_up(settings: Settings, engine: Engine, drop: SftpDrop, folder: str) -> DropReport:
    """One pass over the drop folder (see the module docstring)."""
    from restate.state.meta import init_meta

    init_meta(engine, settings.meta_schema)
    report = DropReport(drop.name)
    client = _connect(drop)
    try:
        sftp = client.open_sftp()
        first = _listing(sftp, drop.remote_dir)
        time.sleep(drop.settle_s)
        second = _listing(sftp, drop.remote_dir)
        batch = f"sftp_{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
        for name in sorted(second):
            partial = name.startswith(".") or name.lower().endswith(PARTIAL_SUFFIXES)
            if partial or first.get(name) != second[name]:
                report.incomplete.append(name)
                continue
            known = _known(engine, settings.meta_schema, drop, name, second[name])
            if known is not None:  # seen before as it is now: its decision stands
                if known[0] == "quarantined":
                    report.quarantined[name] = known[1]
                else:
                    report.duplicates.append(name)
                continue
            with sftp.open(f"{drop.remote_dir.rstrip('/')}/{name}", "rb") as fh:
                data = fh.read()
            if len(data) != second[name][0]:  # changed while read: next run
                report.incomplete.append(name)
                continue
            _take(settings, engine, drop, folder, batch, name, second[name], data, report)
    finally:
        client.close()
    return report
