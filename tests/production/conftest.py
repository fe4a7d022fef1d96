"""Local stand-ins for production: the Snowflake emulator and an S3 server on 127.0.0.1.

The emulator (fakesnow) pins its own sqlglot, so it runs from its own virtualenv
(.venv-fakesnow, built on first use from the package index) as a subprocess; the
project talks to it only over HTTP through the Snowflake connector and dbt-snowflake.
"""

from __future__ import annotations

import fcntl
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from restate.settings import PROJECT_ROOT, Settings

FAKESNOW_VENV = PROJECT_ROOT / ".venv-fakesnow"
# fakesnow 0.12 imports snowflake.connector.converter, which connector 5.x removed.
FAKESNOW_REQUIREMENTS = ["fakesnow[server]==0.12.1", "snowflake-connector-python>=4.2,<5"]
SERVER_SCRIPT = Path(__file__).with_name("fakesnow_server.py")


def ensure_fakesnow_venv() -> Path:
    """Create the emulator's virtualenv once (a file lock serialises pytest-xdist workers)."""
    python = FAKESNOW_VENV / "bin" / "python"
    stamp = FAKESNOW_VENV / ".installed"
    FAKESNOW_VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(PROJECT_ROOT / ".venv-fakesnow.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            subprocess.run([sys.executable, "-m", "venv", str(FAKESNOW_VENV)], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", *FAKESNOW_REQUIREMENTS], check=True
            )
            stamp.write_text("\n".join(FAKESNOW_REQUIREMENTS))
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"emulator exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@dataclass
class Emulator:
    port: int
    statement_log: Path

    def statements(self) -> list[dict[str, str | None]]:
        """Every statement the emulator ran, with the query tag in force and the login name."""
        if not self.statement_log.exists():
            return []
        return [json.loads(line) for line in self.statement_log.read_text().splitlines() if line]


@pytest.fixture(scope="session")
def snowflake_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    python = ensure_fakesnow_venv()
    port = free_port()
    folder = tmp_path_factory.mktemp("fakesnow")
    log = folder / "statements.jsonl"
    # The emulator's own log (its errors name the SQL it could not run) for failing tests.
    server_log = open(folder / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(python), str(SERVER_SCRIPT), str(port), str(log)],
        stdout=server_log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc)
        yield Emulator(port, log)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        server_log.close()


def snowflake_settings(data_dir: Path, emulator: Emulator, **overrides: object) -> Settings:
    """Settings for the production engine, pointed at the emulator (one database per test)."""
    return Settings(  # type: ignore[arg-type]
        data_dir=data_dir,
        engine="snowflake",
        snowflake_account="restate_test",
        snowflake_user="restate",
        snowflake_password="emulated",
        snowflake_database=f"RESTATE_{uuid.uuid4().hex[:8].upper()}",
        snowflake_warehouse="RESTATE_WH",
        snowflake_role="RESTATE_ROLE",
        snowflake_host="127.0.0.1",
        snowflake_port=emulator.port,
        snowflake_protocol="http",
        dbt_threads=1,
        **overrides,
    )


def load_landing_into_emulator(settings: Settings, landing_dir: Path) -> int:
    """Fill the emulated landing table from local landing files; returns the rows loaded.

    Shim: production fills it with COPY INTO from the external S3 stage
    (restate.engines.snowflake_landing.copy_landing_sql). The emulator cannot run that COPY: it
    has no access to the stage's bucket, its COPY transformations read CSV only and do
    not know METADATA$FILENAME / METADATA$FILE_ROW_NUMBER, and its array binding
    (executemany) rejects decimal and timestamp values. So the same rows, with the same
    file lineage, are inserted as literal VALUES batches.
    """
    import duckdb

    from restate.contract.project import project_contract
    from restate.engines import connect
    from restate.engines.snowflake_landing import (
        LINEAGE_COLUMNS,
        ensure_landing_table,
        landing_columns,
        landing_table,
    )
    from restate.ingest.landing import landing_of

    lc = landing_of(project_contract(settings))
    data_cols = [c for c in landing_columns(lc) if c not in LINEAGE_COLUMNS]
    rows = (
        duckdb.connect()
        .execute(
            f"select {', '.join(f'cast({c} as varchar)' for c in data_cols)}, filename, file_row_number "
            f"from read_parquet('{landing_dir}/events/*/*.parquet', filename = true, "
            "file_row_number = true, hive_partitioning = false, union_by_name = true)"
        )
        .fetchall()
    )

    def literal(value: object) -> str:
        if value is None:
            return "null"
        if isinstance(value, int):
            return str(value)
        return "'" + str(value).replace("'", "''") + "'"

    with connect(settings) as engine:
        engine.execute(f"create database if not exists {settings.snowflake_database}")
        ensure_landing_table(engine, lc)
        engine.execute(f"create schema if not exists {settings.prod_schema}")
        for i in range(0, len(rows), 1000):
            values = ", ".join("(" + ", ".join(literal(v) for v in r) + ")" for r in rows[i : i + 1000])
            engine.execute(f"insert into {landing_table(lc)} values {values}")
    return len(rows)
