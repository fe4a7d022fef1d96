"""dbt-duckdb plugin: read an s3:// landing through s3fs (DuckDB's httpfs needs the internet).

The profile's plain `filesystems:` setting registers the filesystem on every dbt
connection, but a DuckDB database opened twice in one process is one instance, and
the tool's own engine may have registered `s3` on it already; registering twice is
an error. This plugin registers it only when missing. s3fs reads the standard AWS
chain that restate.settings exports (AWS_ENDPOINT_URL_S3 for S3-compatible servers).
"""

from __future__ import annotations

from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin
from duckdb import DuckDBPyConnection


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self.options = dict(plugin_config)

    def configure_connection(self, conn: DuckDBPyConnection) -> None:
        if "s3" not in conn.list_filesystems():
            import s3fs

            conn.register_filesystem(s3fs.S3FileSystem(use_listings_cache=False, **self.options))
