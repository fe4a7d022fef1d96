"""SQLMesh project config: a DuckDB file named by the benchmark, analytics off."""

import os

from sqlmesh.core.config import Config, DuckDBConnectionConfig, GatewayConfig, ModelDefaultsConfig

config = Config(
    gateways={
        "local": GatewayConfig(
            connection=DuckDBConnectionConfig(database=os.environ["BENCH_SQLMESH_DUCKDB"]),
        )
    },
    default_gateway="local",
    model_defaults=ModelDefaultsConfig(dialect="duckdb", start="2025-09-01"),
    # No network here, and finance data must not leave the machine.
    disable_anonymized_analytics=True,
)
