"""The tool's own state schema (restate_meta): created idempotently, next to the data."""

from __future__ import annotations

from restate.engines.base import Engine

# One statement per table; every one is `create table if not exists` so init is idempotent.
META_TABLES: dict[str, str] = {
    # Incremental load history: each row is one load and the watermark it reached.
    "loads": """
        load_id varchar primary key,
        started_at timestamp not null,
        finished_at timestamp,
        status varchar not null,
        ingested_since timestamp,
        ingested_until timestamp,
        rows_in_window bigint,
        rows_new bigint,
        rows_quarantined bigint,
        partitions_touched bigint,
        error varchar
    """,
    # Every landing file checked before a load reads it: accepted, or quarantined with
    # the reason (restate/ingest/landing.py); files themselves are never moved or deleted.
    "landing_files": """
        path varchar primary key,
        status varchar not null,
        reason varchar,
        checked_at timestamp not null,
        rows bigint,
        processed_until timestamp
    """,
    # A named write lock on production shared by loads, promotions and rollbacks.
    "locks": """
        lock_name varchar primary key,
        holder varchar not null,
        acquired_at timestamp not null,
        expires_at timestamp not null
    """,
    # One row per restatement request and its lifecycle state.
    "restatements": """
        restatement_id bigint primary key,
        created_at timestamp not null,
        status varchar not null,
        selector varchar not null,
        models varchar not null,
        period_start date not null,
        period_end date not null,
        accounts varchar,
        reason varchar not null,
        ticket varchar,
        requested_by varchar not null,
        approved_by varchar,
        approval_comment varchar,
        requires_approval boolean not null,
        source_watermark timestamp,
        code_version varchar,
        plan_json varchar not null,
        restate_schema varchar not null,
        updated_at timestamp not null
    """,
    # One row per partition chunk of a restatement: status, rows and timings.
    "restatement_partitions": """
        restatement_id bigint not null,
        chunk_id varchar not null,
        period_start date not null,
        period_end date not null,
        bucket integer not null,
        buckets integer not null,
        status varchar not null,
        rows_written bigint,
        started_at timestamp,
        finished_at timestamp,
        duration_s double,
        attempts integer not null default 0,
        cache_key varchar,
        runner varchar,
        primary key (restatement_id, chunk_id)
    """,
    # Per model x partition date x diff dimensions x metric: as-reported vs restated.
    # `dimensions` holds the model's declared diff dimensions as "name=value" pairs joined
    # by ", " in declared order ('' when it declares none).
    "restatement_diffs": """
        restatement_id bigint not null,
        model varchar not null,
        partition_date date not null,
        dimensions varchar not null,
        metric varchar not null,
        as_reported decimal(38, 2),
        restated decimal(38, 2),
        delta decimal(38, 2),
        pct double,
        only_in varchar,
        primary key (restatement_id, model, partition_date, dimensions, metric)
    """,
    # Stored validation results: what the promotion gate reads.
    "validations": """
        validation_id varchar primary key,
        restatement_id bigint,
        scope varchar not null,
        checked_at timestamp not null,
        passed boolean not null,
        forced_by varchar,
        force_reason varchar,
        result_json varchar not null
    """,
    # Append-only audit log, chained by a keyed MAC (entry_hash) over each entry and the
    # previous MAC; the key and the chain-head checkpoints live outside (restate/state/changelog.py).
    "changelog": """
        version bigint primary key,
        recorded_at timestamp not null,
        restatement_id bigint,
        event varchar not null,
        actor varchar,
        payload_json varchar not null,
        prev_hash varchar not null,
        entry_hash varchar not null
    """,
    # The changelog's chain head (one row): appends move it compare-and-set in their
    # transaction, so two writers can never both append the same version.
    "changelog_head": """
        chain varchar primary key,
        version bigint not null,
        entry_hash varchar not null
    """,
    # Exactly-once notices: one row per (restatement, event, recipient).
    "notification_outbox": """
        restatement_id bigint not null,
        event varchar not null,
        recipient varchar not null,
        channel varchar not null,
        status varchar not null,
        payload_json varchar not null,
        created_at timestamp not null,
        sent_at timestamp,
        attempts integer not null default 0,
        last_error varchar,
        primary key (restatement_id, event, recipient)
    """,
    # One row per archived version of a restated mart's partitions (promotion or rollback).
    "archive_versions": """
        archive_version bigint primary key,
        restatement_id bigint not null,
        model varchar not null,
        action varchar not null,
        period_start date not null,
        period_end date not null,
        accounts varchar,
        rows_archived bigint not null,
        rows_inserted bigint not null,
        created_at timestamp not null
    """,
    # Nightly reconciliation records.
    "reconciliations": """
        reconciliation_id varchar primary key,
        checked_at timestamp not null,
        period_start date not null,
        period_end date not null,
        passed boolean not null,
        result_json varchar not null
    """,
    # Every partition date a load recomputed, per restatable model (the dates of every
    # version of every row it saw): what promotion refreshes and what rollback must not lose.
    "load_partitions": """
        load_id varchar not null,
        model varchar not null,
        partition_date date not null
    """,
    # Where each extracted source table was read up to: (cursor value, key) of the last
    # landed row (sources.postgres).
    "source_cursors": """
        source varchar primary key,
        cursor_value varchar,
        cursor_key varchar,
        rows_landed bigint not null,
        moved_at timestamp not null
    """,
    # Every file a drop folder showed (sources.sftp_drops): accepted, duplicate (same
    # content landed before) or quarantined with its reason.
    "source_files": """
        source varchar not null,
        path varchar not null,
        size_bytes bigint not null,
        sha256 varchar,
        status varchar not null,
        reason varchar,
        kept_at varchar,
        seen_at timestamp not null,
        mtime bigint
    """,
    # Which model code and logic vars built production, per load (for `restate explain`).
    "model_builds": """
        build_id varchar not null,
        built_at timestamp not null,
        source varchar not null,
        model varchar not null,
        logic_version varchar not null,
        model_sha256 varchar not null,
        dbt_vars_json varchar not null
    """,
}


# Tables whose layout changed, with how to carry rows of the earlier layout over:
# (a column only the earlier layout has, insert-select from the renamed earlier table).
# The earlier layouts named their columns after the first example's: listed here only.
_EARLIER_LAYOUTS = {
    "restatement_diffs": (
        "currency",
        "select restatement_id, model, event_date, 'currency=' || currency, metric, as_reported, "
        "restated, delta, pct, only_in from {old}",
    ),
    "load_partitions": ("event_date", "select load_id, '*', event_date from {old}"),
}


def _carry_over_earlier_layouts(engine: Engine, schema: str) -> None:
    """A meta schema made by an earlier version keeps its rows in the current layout."""
    for table, (old_column, select) in _EARLIER_LAYOUTS.items():
        if not engine.relation_exists(schema, table):
            continue
        columns = {c.lower() for c in engine.columns(schema, table)}
        if old_column not in columns:
            continue
        old = f"{table}_before_upgrade"
        with engine.transaction():
            engine.execute(f"alter table {schema}.{table} rename to {old}")
            engine.execute(f"create table {schema}.{table} ({META_TABLES[table]})")
            engine.execute(f"insert into {schema}.{table} {select.format(old=f'{schema}.{old}')}")
            engine.execute(f"drop table {schema}.{old}")


# Columns added to a table after its first release: (table, column, type).
_ADDED_COLUMNS = [("restatement_partitions", "runner", "varchar")]


def _add_new_columns(engine: Engine, schema: str) -> None:
    for table, column, kind in _ADDED_COLUMNS:
        if column not in {c.lower() for c in engine.columns(schema, table)}:
            engine.execute(f"alter table {schema}.{table} add column {column} {kind}")


def init_meta(engine: Engine, schema: str) -> list[str]:
    """Create the meta schema and its tables if missing; return the table names."""
    engine.execute(f"create schema if not exists {schema}")
    _carry_over_earlier_layouts(engine, schema)
    for table, columns in META_TABLES.items():
        engine.execute(f"create table if not exists {schema}.{table} ({columns})")
    _add_new_columns(engine, schema)
    from restate.state.changelog import seed_head

    seed_head(engine, schema)
    return list(META_TABLES)
