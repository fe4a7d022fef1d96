"""dbt-duckdb plugin: read an s3:// landing through s3fs (DuckDB's httpfs needs the internet).

The profile's plain `filesystems:` setting registers the filesystem on every dbt
connection, but a DuckDB database opened twice in one process is one instance, and
the tool's own engine may have registered `s3` on it already; registering twice is
an error. This plugin registers it only when missing. s3fs reads the standard AWS
chain that restate.settings exports (AWS_ENDPOINT_URL_S3 for S3-compatible servers).

It also puts the e-mail hash key (DBT_RESTATE_PII_HASH_KEY, exported by the settings)
into the session variable the sha256_hex macro reads with getvariable(): the key is bound
as a parameter, never rendered into SQL, so no view definition or dbt target file holds it.
"""

from __future__ import annotations

import os
from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin
from duckdb import DuckDBPyConnection

PII_KEY_ENV = "DBT_RESTATE_PII_HASH_KEY"
PII_KEY_VARIABLE = "restate_pii_hash_key"


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self.options = dict(plugin_config)

    def configure_cursor(self, cursor: Any) -> None:
        # Session variables live per cursor (each is its own DuckDB connection).
        key = os.environ.get(PII_KEY_ENV)
        if key:
            cursor.execute(f"set variable {PII_KEY_VARIABLE} = ?", [key])

    def configure_connection(self, conn: DuckDBPyConnection) -> None:
        self.configure_cursor(conn)
        # The tool's memory and thread bounds, when dbt opens the database first.
        from restate.engines.duckdb import limit_resources

        threads = os.environ.get("DBT_RESTATE_DUCKDB_THREADS")
        limit_resources(
            conn, os.environ.get("DBT_RESTATE_DUCKDB_MEMORY_LIMIT"), int(threads) if threads else None
        )
        if "s3" not in conn.list_filesystems():
            import s3fs

            conn.register_filesystem(s3fs.S3FileSystem(use_listings_cache=False, **self.options))
