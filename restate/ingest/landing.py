"""The landing's files, checked once before any load reads them (DuckDB engine).

The landing is declared on a dbt source (``meta.restate.landing``: its folder, its
typed columns and the columns that give a row's processing time; restate/contract/spec.py).
One unreadable file must not stop a load. Before a load plans its window, every
Parquet file under ``<landing>/<folder>/`` that has not been checked yet is checked
once. A file outside ``<folder>/<batch>/<file>.parquet`` (deeper, shallower, another
suffix case) is quarantined as ``unexpected_location`` and one whose name holds a
glob character (``*?[]{}``, which ``read_parquet`` would expand into other files) as
``glob_characters_in_name``; neither is read. Otherwise its footer is read with
pyarrow (an empty, truncated or corrupt file fails here), then DuckDB reads all of
it once (a damaged data page fails here) and takes its latest processing time (a
file without a single one could never be loaded). A new file holding a row processed
at or before where the next load's window starts (last watermark - lookback) would
be read by no load, so it is quarantined as ``behind_watermark``, not accepted and
silently never loaded.
The outcome is recorded in ``<meta>.landing_files`` (path, status, reason,
checked_at, rows): ``accepted`` or ``quarantined`` with the reason. Files are never
moved, rewritten or deleted.

What dbt and the tool read is a view named like the source (``<schema>.<identifier>``)
over the accepted files only, with their lineage (``filename``, ``file_row_number``)
and a typed processing time, ``landing_processed_at`` = the first declared processing
time column that parses as a timestamp; a row with none gets its file's latest
processing time, so it is still read by exactly one load and lands in quarantine
instead of being lost. The view is replaced when newly checked files are accepted; the
dbt manifest never changes with the file list, so a parsed manifest stays reusable.
Snowflake reads its COPY-filled landing table instead; nothing here applies to it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from restate.contract.spec import ContractError, LandingContract, ProjectContract
from restate.engines.base import Engine
from restate.engines.object_store import landing_filesystem
from restate.settings import Settings
from restate.state.clock import utc_now
from restate.state.meta import META_TABLES

# The landing is declared on a dbt source (meta.restate.landing, restate/contract/spec.py): its
# folder, its typed columns (a file may lack some: union_by_name fills nulls; one missing
# from every accepted file is null typed) and which columns give a row's processing time.
PROCESSED_AT = "landing_processed_at"
_READ_OPTIONS = "hive_partitioning = false, union_by_name = true"
_INSERT_BATCH = 200
PARQUET_SUFFIX = ".parquet"
# Characters DuckDB's read_parquet expands in a file name.
GLOB_CHARACTERS = "*?[]{}"


@dataclass(frozen=True)
class FileCheck:
    path: str
    status: str  # accepted | quarantined
    reason: str | None
    rows: int | None
    processed_until: datetime | None = None


def _table(settings: Settings) -> str:
    return f"{settings.meta_schema}.landing_files"


def _sql_literal(value: str) -> str:
    """A string literal (table functions take no bound parameters inside a view)."""
    return "'" + value.replace("'", "''") + "'"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def landing_of(project: ProjectContract) -> LandingContract:
    """The project's landing declaration; ContractError says what to declare when there is none."""
    if project.landing is None:
        raise ContractError(
            "no dbt source declares meta.restate.landing (folder, processed_at, typed columns): "
            "loads read landed files through it (see docs/your-project.md)"
        )
    return project.landing


def relation(engine: Engine, lc: LandingContract) -> str | None:
    """The landed rows: on DuckDB the view over the accepted files, elsewhere the table the
    landing is copied into. None before the first file was accepted."""
    return f"{lc.schema}.{lc.identifier}" if engine.relation_exists(lc.schema, lc.identifier) else None


def processed_at(engine: Engine, lc: LandingContract) -> str:
    """A landed row's processing time as SQL on `relation()`."""
    if engine.name == "duckdb":
        return PROCESSED_AT
    return f"coalesce({', '.join(lc.processed_at)})" if len(lc.processed_at) > 1 else lc.processed_at[0]


def list_files(settings: Settings, lc: LandingContract) -> dict[str, int]:
    """Every Parquet file anywhere under ``<landing>/<folder>/`` (path as DuckDB names it ->
    size in bytes), whatever the case of its suffix: the ones outside the layout are
    recorded too (quarantined by ``check_file``), so no landed file goes unnoticed."""
    root = settings.landing.rstrip("/")
    fs = landing_filesystem(settings)
    if fs is None:
        found_local: dict[str, int] = {}
        for folder, _, names in os.walk(f"{root}/{lc.folder}"):
            for name in names:
                if name.lower().endswith(PARQUET_SUFFIX):
                    path = os.path.join(folder, name)
                    found_local[path] = os.path.getsize(path)
        return dict(sorted(found_local.items()))
    protocol = root.split("://", 1)[0]
    found = fs.find(f"{root}/{lc.folder}", detail=True)
    return {
        f"{protocol}://{p}": int(info.get("size") or 0)
        for p, info in sorted(found.items())
        if p.lower().endswith(PARQUET_SUFFIX)
    }


def layout_problem(settings: Settings, lc: LandingContract, path: str) -> str | None:
    """Why a landed file cannot be read by name in ``<landing folder>/<batch>/<file>.parquet``."""
    prefix = settings.landing.rstrip("/") + f"/{lc.folder}/"
    relative = path[len(prefix) :] if path.startswith(prefix) else path
    parts = relative.split("/")
    if any(ch in relative for ch in GLOB_CHARACTERS):
        # read_parquet expands these: the name would read other files (or none).
        return "glob_characters_in_name"
    if len(parts) != 2 or not parts[1].endswith(PARQUET_SUFFIX) or not all(parts):
        return "unexpected_location"
    return None


def check_file(settings: Settings, lc: LandingContract, path: str, size: int) -> FileCheck:
    """Read the file's footer: an empty, truncated or corrupt file fails here."""
    import pyarrow.parquet as pq

    problem = layout_problem(settings, lc, path)
    if problem is not None:
        return FileCheck(path, "quarantined", problem, None)
    if size == 0:
        return FileCheck(path, "quarantined", "empty_file", 0)
    fs = landing_filesystem(settings)
    try:
        with fs.open(path, "rb") if fs is not None else open(path, "rb") as fh:
            meta = pq.read_metadata(fh)
    except Exception as exc:  # any reader error: the file cannot be read at all
        return FileCheck(path, "quarantined", f"unreadable_parquet: {_first_line(exc)}", None)
    return FileCheck(path, "accepted", None, meta.num_rows)


def _read(paths: list[str], lineage: bool = False) -> str:
    files = ", ".join(_sql_literal(p) for p in paths)
    extra = "filename = true, file_row_number = true" if lineage else "filename = true"
    return f"read_parquet([{files}], {extra}, {_READ_OPTIONS})"


def _union_columns(engine: Engine, relation: str) -> set[str]:
    return {str(r[0]).lower() for r in engine.query(f"describe select * from {relation}")}


_Span = tuple[datetime | None, datetime | None]


def _latest(engine: Engine, lc: LandingContract, paths: list[str]) -> dict[str, _Span]:
    """Earliest and latest processing time per file, from the time columns the files have."""
    relation = _read(paths)
    present = _union_columns(engine, relation)
    times = [f"try_cast(r.{c} as timestamp)" for c in lc.processed_at if c.lower() in present]
    time = f"coalesce({', '.join(times)})" if times else "cast(null as timestamp)"
    # hash(r) decodes every column: a damaged data page behind an intact footer fails here.
    rows = engine.query(
        f"select r.filename, min({time}), max({time}), count(hash(r)) "
        f"from {relation} as r group by r.filename"
    )
    return {str(row[0]): (row[1], row[2]) for row in rows}


def _processed_until(
    engine: Engine, lc: LandingContract, checks: list[FileCheck], read_since: datetime | None = None
) -> list[FileCheck]:
    """Each accepted file's latest processing time, read by DuckDB (which must read it too).

    ``read_since`` is where the next load's window starts (last watermark - lookback): a
    row processed at or before it is read by no load, so a new file holding one is
    quarantined rather than accepted and silently never loaded."""
    accepted = [c.path for c in checks if c.status == "accepted"]
    latest: dict[str, _Span] = {}
    failed: dict[str, str] = {}
    if accepted:
        try:
            latest = _latest(engine, lc, accepted)
        except Exception:  # one of them does not read: find which, file by file
            for path in accepted:
                try:
                    latest.update(_latest(engine, lc, [path]))
                except Exception as exc:
                    failed[path] = f"unreadable_parquet: {_first_line(exc)}"
    out = []
    for c in checks:
        if c.status != "accepted":
            out.append(c)
        elif c.path in failed:
            out.append(FileCheck(c.path, "quarantined", failed[c.path], c.rows))
        else:
            earliest, until = latest.get(c.path, (None, None))
            if until is None and (c.rows or 0) > 0:
                # Not one row with a processing time: no load could ever read the file.
                out.append(FileCheck(c.path, "quarantined", "no_processing_time", c.rows))
            elif read_since is not None and earliest is not None and earliest <= read_since:
                reason = _behind(lc, earliest, until, read_since)
                out.append(FileCheck(c.path, "quarantined", reason, c.rows, until))
            else:
                out.append(FileCheck(c.path, "accepted", None, c.rows, until))
    return out


def _behind(lc: LandingContract, earliest: datetime, until: datetime | None, read_since: datetime) -> str:
    return (
        f"behind_watermark: rows processed from {earliest} to {until}, but loads now read only "
        f"rows processed after {read_since}; land them again with a current {lc.processed_at[0]}, "
        "load, then restate the affected period"
    )


def _read_since(engine: Engine, settings: Settings) -> datetime | None:
    """Where the next load's window starts: the last successful watermark - lookback."""
    if not engine.relation_exists(settings.meta_schema, "loads"):
        return None
    watermark: datetime | None = engine.scalar(
        f"select max(ingested_until) from {settings.meta_schema}.loads where status = 'success'"
    )
    return watermark - timedelta(hours=settings.lookback_hours) if watermark is not None else None


def _record(engine: Engine, settings: Settings, checks: list[FileCheck]) -> None:
    now = utc_now()
    for i in range(0, len(checks), _INSERT_BATCH):
        batch = checks[i : i + _INSERT_BATCH]
        params: list[Any] = []
        for c in batch:
            params += [c.path, c.status, c.reason, now, c.rows, c.processed_until]
        engine.execute(
            f"insert into {_table(settings)} (path, status, reason, checked_at, rows, processed_until) "
            f"values {', '.join(['(?, ?, ?, ?, ?, ?)'] * len(batch))} on conflict do nothing",
            params,
        )


def _replace_view(engine: Engine, settings: Settings, lc: LandingContract) -> bool:
    prefix = settings.landing.rstrip("/") + f"/{lc.folder}/"
    paths = [
        str(r[0])
        for r in engine.query(
            f"select path from {_table(settings)} where status = 'accepted' and starts_with(path, ?) "
            "order by path",
            [prefix],
        )
    ]
    view = f"{lc.schema}.{lc.identifier}"
    engine.execute(f"create schema if not exists {lc.schema}")
    if not paths:
        engine.execute(f"drop view if exists {view}")
        return False
    files = _read(paths, lineage=True)
    present = _union_columns(engine, files)
    nulls = "".join(
        f", cast(null as {kind}) as {name}"
        for name, kind in lc.columns.items()
        if name.lower() not in present
    )
    times = ", ".join(f"try_cast(r.{c} as timestamp)" for c in lc.processed_at)
    engine.execute(
        f"""
        create or replace view {view} as
        select r.*, coalesce({times}, f.processed_until) as {PROCESSED_AT}
        from (select *{nulls} from {files}) as r
        inner join {_table(settings)} as f on f.path = r.filename
        """
    )
    return True


def refresh(engine: Engine, settings: Settings, lc: LandingContract) -> list[FileCheck]:
    """Check the files not checked yet, record them and, if any was accepted, re-create the
    view over the accepted files. Returns the new checks (nothing on other engines)."""
    if engine.name != "duckdb":
        return []
    engine.execute(f"create schema if not exists {settings.meta_schema}")
    engine.execute(f"create table if not exists {_table(settings)} ({META_TABLES['landing_files']})")
    known = {str(r[0]) for r in engine.query(f"select path from {_table(settings)}")}
    new = [(p, size) for p, size in list_files(settings, lc).items() if p not in known]
    read_since = _read_since(engine, settings) if new else None
    checks = _processed_until(engine, lc, [check_file(settings, lc, p, size) for p, size in new], read_since)
    # Records and view together: a crash between them would leave accepted files unread.
    with engine.transaction():
        if checks:
            _record(engine, settings, checks)
        if any(c.status == "accepted" for c in checks) or not engine.relation_exists(
            lc.schema, lc.identifier
        ):
            _replace_view(engine, settings, lc)
    return checks
