"""A dbt profile that builds production somewhere other than where restate reads it is
refused with one line before dbt builds anything: a user's profile names its own schema
and DuckDB file, and restate's settings must agree with them."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import pytest

from examples.northstar.generate import GenerateSpec, generate

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PROFILE = """
northstar:
  target: dev
  outputs:
    dev:
      type: duckdb
      path: "{path}"
      schema: sales
      threads: 1
"""


def _restate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "interfaces.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("where", ["schema", "file"])
def test_a_profile_building_elsewhere_is_refused_before_dbt_runs(tmp_path: Path, where: str) -> None:
    data = tmp_path / "data"
    generate(GenerateSpec(end_date=date(2026, 10, 31), months=1, stores=2, orders_per_day=5, seed=3),
             data / "landing", data / "finance")  # fmt: skip
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    profile_file = tmp_path / "other.duckdb" if where == "file" else data / "warehouse.duckdb"
    (profiles / "profiles.yml").write_text(PROFILE.format(path=profile_file))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RESTATE_", "DBT_RESTATE_"))},
        "RESTATE_DATA_DIR": str(data),
        "RESTATE_DBT_PROJECT_DIR": str(ROOT / "dbt" / "northstar"),
        "RESTATE_DBT_PROFILES_DIR": str(profiles),
        # The schema agrees in the "file" case, so only the file differs there.
        "RESTATE_PROD_SCHEMA": "sales" if where == "file" else "analytics",
    }
    for args in (["load"], ["models"]):
        out = _restate(env, *args)
        assert out.returncode == 1, (args, out.stdout[-2000:], out.stderr[-2000:])
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
        assert ("RESTATE_PROD_SCHEMA=sales" if where == "schema" else "RESTATE_DUCKDB_PATH") in lines[0]
    # Nothing was built, in either file.
    for db in (data / "warehouse.duckdb", tmp_path / "other.duckdb"):
        if db.exists():
            con = duckdb.connect(str(db), read_only=True)
            built = con.execute(
                "select table_schema, table_name from information_schema.tables "
                "where table_schema in ('sales', 'analytics')"
            ).fetchall()
            con.close()
            assert built == [], built

    # Agreeing settings load.
    env["RESTATE_PROD_SCHEMA"] = "sales"
    env["RESTATE_DUCKDB_PATH"] = str(profile_file)
    out = _restate(env, "load")
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-2000:])
