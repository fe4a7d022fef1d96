"""One run of each source, as the deployments and `restate sources` do it: each returns
the figures a run reports (rows landed, quarantined, the new watermark)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from restate.engines import connect
from restate.settings import Settings
from sources.config import PostgresSource, SftpSource, SourceConfigError, SourcesConfig, load_sources


def declared(settings: Settings) -> SourcesConfig:
    """The sources file of these settings (SourceConfigError when none is set)."""
    if settings.sources_file is None:
        raise SourceConfigError("RESTATE_SOURCES_FILE is not set: no sources are declared")
    return load_sources(settings.sources_file)


def extract_table(settings: Settings, source: PostgresSource) -> dict[str, Any]:
    """One PostgreSQL table since its cursor, landed in keyset pages."""
    from sources.postgres import extract

    with connect(settings) as engine:
        report = extract(settings, engine, source.table_source(), source.folder)
    return {
        "source": source.name,
        "rows": report.rows,
        "statements": report.statements,
        "longest_statement_ms": round(report.longest_statement_ms, 1),
        "watermark": report.cursor_after[0] if report.cursor_after else None,
    }


def _owed(settings: Settings, source: str) -> Path:
    return settings.state_dir / "rebuild-owed" / source


def rebuild_owed(settings: Settings, source: str) -> bool:
    """Whether an earlier run of `source` landed files and stopped before the models that
    read them were rebuilt (its next run rebuilds even when nothing new lands)."""
    return _owed(settings, source).exists()


def load_due(settings: Settings, source: str, landed_rows: int) -> bool:
    """Whether a payments or fulfilment run loads: it landed rows, or a rebuild is owed."""
    return bool(landed_rows) or rebuild_owed(settings, source)


@contextmanager
def _landing_owes_rebuild(settings: Settings, source: str) -> Iterator[list[int]]:
    """Around landing files of `source`: the rebuild is owed before the first file lands
    (a process killed in between still owes it); if nothing landed and nothing was owed
    before, it is not. The caller appends the rows it landed."""
    path = _owed(settings, source)
    owed_before = path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    landed: list[int] = []
    yield landed
    if not any(landed) and not owed_before:
        path.unlink(missing_ok=True)


def load_landed(settings: Settings, other_source: str | None = None) -> dict[str, Any]:
    """The incremental load of what landed, then the warehouse handed back to others.

    `other_source` names a source that is not the project's declared landing (payment
    events, partner files). When that landing holds nothing new the load skips, so the
    models that are not incremental (views, tables joining the systems) are rebuilt
    instead; `rebuilt` says how many. Until that succeeds the source owes a rebuild."""
    from restate.actions import load_once, rebuild_derived
    from restate.dbt import distributed

    owed = _owed(settings, other_source) if other_source else None
    if owed is not None:
        owed.parent.mkdir(parents=True, exist_ok=True)
        owed.touch()
    rebuilt = None
    try:
        result = load_once(settings)
        if owed is not None and result.status == "no_new_data":
            rebuilt = rebuild_derived(settings)
    finally:
        distributed.release_warehouse(settings)  # let a restatement's process in
    if owed is not None:
        owed.unlink(missing_ok=True)
    return {
        "load": None if result.status == "no_new_data" else result.load_id,
        "rows_quarantined": result.rows_quarantined,
        "watermark": str(result.watermark_after),
        **({"rebuilt": rebuilt} if rebuilt is not None else {}),
    }


def flush_webhooks(settings: Settings, config: SourcesConfig) -> dict[str, Any]:
    """The webhook journal's events not landed yet, as one landed file."""
    from sources.stripe_webhooks import Journal

    folder = config.webhooks.folder if config.webhooks is not None else settings.webhook_folder
    journal = Journal(settings.webhook_journal_path)
    try:
        with _landing_owes_rebuild(settings, "payments") as landed:
            before = journal.counts()
            path = journal.flush(settings, folder)
            after = journal.counts()
            landed.append(after["landed"] - before["landed"])
    finally:
        journal.close()
    return {
        "source": "webhooks",
        "rows": after["landed"] - before["landed"],
        "redacted": after["redacted"],
        "file": path,
    }


def pick_up_drop(settings: Settings, source: SftpSource) -> dict[str, Any]:
    """One partner's SFTP drop folder: complete files landed, drifted ones quarantined."""
    from sources.sftp_drops import pick_up

    with _landing_owes_rebuild(settings, "fulfilment") as landed, connect(settings) as engine:
        report = pick_up(settings, engine, source.drop(), source.folder)
        landed.append(report.rows)
    return {
        "source": source.name,
        "rows": report.rows,
        "files_accepted": len(report.accepted),
        "files_quarantined": len(report.quarantined),
        "quarantined": report.quarantined,
        "files_waiting": len(report.incomplete),
        "duplicates": len(report.duplicates),
    }
