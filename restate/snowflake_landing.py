"""Snowflake side of the S3 landing: external stage, landing table and the COPY that fills it.

The Parquet tree under RESTATE_LANDING_URI (s3://bucket/prefix/events/event_date=.../*.parquet)
is read by Snowflake through an external stage; COPY INTO keeps per-file load metadata,
so re-running it loads each file once. File lineage (METADATA$FILENAME,
METADATA$FILE_ROW_NUMBER) is stored as source_file / source_row_number, the columns
dbt-duckdb gets from read_parquet(filename, file_row_number). Setup: docs/snowflake.md.
"""

from __future__ import annotations

from restate.engines.base import Engine
from restate.settings import Settings

# Landing columns as in docs/contracts.md, then the lineage COPY records.
LANDING_COLUMNS: dict[str, str] = {
    "event_id": "varchar",
    "account_id": "varchar",
    "event_type": "varchar",
    "amount": "number(18, 2)",
    "currency": "varchar",
    "event_ts": "timestamp_ntz",
    "updated_at": "timestamp_ntz",
    "event_ingested_at": "timestamp_ntz",
    "customer_email": "varchar",
    "source_file": "varchar",
    "source_row_number": "bigint",
}


def landing_table_ddl(settings: Settings) -> str:
    """The landing table (DDL: run outside transactions)."""
    cols = ",\n    ".join(f"{name} {kind}" for name, kind in LANDING_COLUMNS.items())
    return f"create table if not exists {settings.snowflake_landing_table} (\n    {cols}\n)"


def stage_ddl(settings: Settings, storage_integration: str) -> list[str]:
    """Parquet file format and the external stage over the S3 landing (run once, by an admin)."""
    schema = settings.snowflake_stage.rpartition(".")[0] or "public"
    return [
        f"create schema if not exists {schema}",
        f"create file format if not exists {schema}.parquet_landing type = parquet",
        f"create stage if not exists {settings.snowflake_stage} "
        f"url = '{settings.landing.rstrip('/')}/' storage_integration = {storage_integration} "
        f"file_format = {schema}.parquet_landing",
    ]


def copy_landing_sql(settings: Settings) -> str:
    """Load every landed file not loaded yet (COPY's load metadata skips the rest)."""
    data_cols = [c for c in LANDING_COLUMNS if c not in ("source_file", "source_row_number")]
    selects = ", ".join(f"$1:{c}::{LANDING_COLUMNS[c]}" for c in data_cols)
    return (
        f"copy into {settings.snowflake_landing_table} ({', '.join(LANDING_COLUMNS)}) "
        f"from (select {selects}, metadata$filename, metadata$file_row_number "
        f"from @{settings.snowflake_stage}/events/) "
        "pattern = '.*[.]parquet' on_error = abort_statement"
    )


def ensure_landing_table(engine: Engine, settings: Settings) -> None:
    schema = settings.snowflake_landing_table.rpartition(".")[0] or "public"
    engine.execute(f"create schema if not exists {schema}")
    engine.execute(landing_table_ddl(settings))


def copy_landing(engine: Engine, settings: Settings) -> int:
    """Run the COPY; returns the rows loaded."""
    engine.set_query_tag(step="copy_landing")
    rows = engine.query_dicts(copy_landing_sql(settings))
    return sum(int(r.get("rows_loaded") or 0) for r in rows)
