"""Snowflake side of the S3 landing: external stage, landing table and the COPY that fills it.

The landing is the dbt source that declares ``meta.restate.landing`` (restate/contract/spec.py):
its Parquet tree under RESTATE_LANDING_URI (``<folder>/<batch>/*.parquet``) is read by
Snowflake through an external stage; COPY INTO keeps per-file load metadata, so re-running
it loads each file once. File lineage (METADATA$FILENAME, METADATA$FILE_ROW_NUMBER) is
stored as source_file / source_row_number, the columns dbt-duckdb gets from
read_parquet(filename, file_row_number). Setup: docs/snowflake.md.
"""

from __future__ import annotations

import re

from restate.contract.spec import LandingContract
from restate.engines.base import Engine
from restate.settings import Settings
from restate.sql import Native

LINEAGE_COLUMNS = {"source_file": "varchar", "source_row_number": "bigint"}


def snowflake_type(declared: str) -> str:
    """The Snowflake type of a declared landing column type."""
    kind = declared.strip().lower()
    if kind.startswith("timestamp"):
        return "timestamp_ntz"
    return re.sub(r"^decimal|^numeric", "number", kind)


def landing_columns(lc: LandingContract) -> dict[str, str]:
    """The landing table's columns: the declared ones (Snowflake types), then the lineage."""
    return {**{c: snowflake_type(t) for c, t in lc.columns.items()}, **LINEAGE_COLUMNS}


def landing_table(lc: LandingContract) -> str:
    return f"{lc.schema}.{lc.identifier}"


def landing_table_ddl(lc: LandingContract) -> str:
    """The landing table (DDL: run outside transactions)."""
    cols = ",\n    ".join(f"{name} {kind}" for name, kind in landing_columns(lc).items())
    return Native(f"create table if not exists {landing_table(lc)} (\n    {cols}\n)")


def stage_ddl(settings: Settings, storage_integration: str) -> list[str]:
    """Parquet file format and the external stage over the S3 landing (run once, by an admin)."""
    schema = settings.snowflake_stage.rpartition(".")[0] or "public"
    return [
        Native(f"create schema if not exists {schema}"),
        Native(f"create file format if not exists {schema}.parquet_landing type = parquet"),
        Native(
            f"create stage if not exists {settings.snowflake_stage} "
            f"url = '{settings.landing.rstrip('/')}/' storage_integration = {storage_integration} "
            f"file_format = {schema}.parquet_landing"
        ),
    ]


def copy_landing_sql(settings: Settings, lc: LandingContract) -> str:
    """Load every landed file not loaded yet (COPY's load metadata skips the rest)."""
    columns = landing_columns(lc)
    data_cols = [c for c in columns if c not in LINEAGE_COLUMNS]
    selects = ", ".join(f"$1:{c}::{columns[c]}" for c in data_cols)
    return Native(
        f"copy into {landing_table(lc)} ({', '.join(columns)}) "
        f"from (select {selects}, metadata$filename, metadata$file_row_number "
        f"from @{settings.snowflake_stage}/{lc.folder}/) "
        "pattern = '.*[.]parquet' on_error = abort_statement"
    )


def ensure_landing_table(engine: Engine, lc: LandingContract) -> None:
    engine.execute(f"create schema if not exists {lc.schema}")
    engine.execute(landing_table_ddl(lc))


def copy_landing(engine: Engine, settings: Settings, lc: LandingContract) -> int:
    """Run the COPY; returns the rows loaded."""
    engine.set_query_tag(step="copy_landing")
    rows = engine.query_dicts(copy_landing_sql(settings, lc))
    return sum(int(r.get("rows_loaded") or 0) for r in rows)
