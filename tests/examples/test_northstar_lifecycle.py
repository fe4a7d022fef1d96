"""The second example, Northstar orders, through the same CLI and flows as billing, with no
code of its own in the core: load -> reconcile (drift) -> restate two stores -> force +
approve + promote -> restate every store -> promote -> as-of -> rollback -> notices.

Every figure is checked against examples/northstar/expected.py, an independent
computation from the landed files, to the cent. The CLI runs as a separate process, as a
user types it; only the environment names the project.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from examples.northstar.expected import expected_daily
from examples.northstar.generate import GenerateSpec, generate

ROOT = Path(__file__).resolve().parents[2]
START, END = "2026-09-01", "2026-10-31"
METRICS = ("orders", "gross_sales", "refunds", "tax", "net_sales")


class Cli:
    def __init__(self, tmp: Path) -> None:
        self.data = tmp / "data"
        self.env = {
            **os.environ,
            "RESTATE_DATA_DIR": str(self.data),
            "RESTATE_DBT_PROJECT_DIR": str(ROOT / "dbt" / "northstar"),
            "RESTATE_SODA_CONTRACTS_DIR": str(ROOT / "soda_checks" / "northstar"),
            "RESTATE_REFERENCE_EXPORTS": str(ROOT / "examples" / "northstar" / "reference_exports.yml"),
            "RESTATE_EXPLAINER": "",
            "RESTATE_DEMO": "",
            "RESTATE_LOOKBACK_HOURS": "72",
            "RESTATE_APPROVERS": '["bob", "carol"]',
            "COLUMNS": "200",
        }
        for key in ("RESTATE_DUCKDB_PATH", "RESTATE_PROJECT_VARS", "PREFECT_HOME", "PREFECT_API_URL"):
            self.env.pop(key, None)

    def __call__(self, *args: str, ok: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [sys.executable, "-m", "interfaces.cli", *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=600,
            cwd=self.data.parent,
        )
        if ok:
            assert out.returncode == 0, (args, out.stdout[-3000:], out.stderr[-3000:])
        return out

    def prod(self, relation: str = "analytics.fct_orders_daily") -> dict[tuple[date, str], tuple[Any, ...]]:
        con = duckdb.connect(str(self.data / "warehouse.duckdb"), read_only=True)
        try:
            rows = con.execute(
                f"select order_date, store_id, {', '.join(METRICS)} from {relation}"
            ).fetchall()
        finally:
            con.close()
        return {(r[0], r[1]): tuple(r[2:]) for r in rows}

    def scalar(self, sql: str) -> Any:
        con = duckdb.connect(str(self.data / "warehouse.duckdb"), read_only=True)
        try:
            return con.execute(sql).fetchone()[0]  # type: ignore[index]
        finally:
            con.close()


def as_rows(expected: dict[tuple[date, str], Any]) -> dict[tuple[date, str], tuple[Any, ...]]:
    return {
        k: (v.orders, v.gross_sales, v.refunds, v.tax, v.net_sales)
        for k, v in expected.items()
        if str(k[0]) >= "2026-08-01"
    }


def in_period(
    rows: dict[tuple[date, str], Any], stores: set[str] | None = None
) -> dict[tuple[date, str], Any]:
    return {k: v for k, v in rows.items() if START <= str(k[0]) <= END and (stores is None or k[1] in stores)}


def same(actual: dict[Any, tuple[Any, ...]], expected: dict[Any, tuple[Any, ...]]) -> None:
    def norm(rows: dict[Any, tuple[Any, ...]]) -> dict[Any, tuple[Any, ...]]:
        # A partition whose orders all left holds zeros or no row at all: the same numbers.
        return {k: tuple(Decimal(str(x)) for x in v) for k, v in rows.items() if any(v)}

    a, e = norm(actual), norm(expected)
    assert a.keys() == e.keys(), (sorted(set(a) ^ set(e))[:10], len(a), len(e))
    wrong = {k: (a[k], e[k]) for k in a if a[k] != e[k]}
    assert not wrong, list(wrong.items())[:5]


@pytest.fixture(scope="module")
def northstar(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    tmp = tmp_path_factory.mktemp("northstar")
    cli = Cli(tmp)
    spec = GenerateSpec(end_date=date(2026, 10, 31), months=2, stores=4, orders_per_day=30, seed=11)
    generate(spec, cli.data / "landing", cli.data / "finance")
    # Production is built with the legacy refund logic.
    cli("load", RESTATE_PROJECT_VARS='{"refund_logic": "v1"}')
    return cli


def test_the_whole_lifecycle_on_the_orders_project(northstar: Cli) -> None:
    cli = northstar
    landing = cli.data / "landing"
    v1, v2 = as_rows(expected_daily(landing, "v1")), as_rows(expected_daily(landing, "v2"))
    assert v1 != v2, "the generated data has refunded cancellations"
    same(cli.prod(), v1)

    models = json.loads(cli("models", "--json").stdout)
    assert {m["model"] for m in models if m["restatable"] == "yes"} == {"fct_orders_daily"}

    # The nightly check finds the drift against finance's export and drafts a plan.
    rec = cli("reconcile", ok=False)
    assert rec.returncode == 2, (rec.stdout[-2000:], rec.stderr[-2000:])
    assert "Drafted restatement #1" in rec.stdout

    # 1. Two stores only (by entity): the others keep their numbers, so the finance
    #    comparison (all stores) still fails; an approver forces it, another approves.
    cli(
        "plan", "--select", "fct_orders_daily+", "--start", START, "--end", END,
        "--reason", "refunds of cancelled orders counted twice", "--requested-by", "ana",
        "--entities", "store_01,store_03",
    )  # fmt: skip
    run = cli("run", "2", ok=False)
    assert run.returncode == 1 and "validation FAILED" in run.stdout, run.stdout[-2000:]
    refused = cli("promote", "2", "--approved-by", "bob", ok=False)
    assert refused.returncode == 1 and "failed validation" in refused.stderr
    cli("validate", "2", "--force", "--approved-by", "carol", "--reason", "stores 02 and 04 follow")
    cli("promote", "2", "--approved-by", "bob")
    after_one = cli.prod()
    same(in_period(after_one, {"store_01", "store_03"}), in_period(v2, {"store_01", "store_03"}))
    same(in_period(after_one, {"store_02", "store_04"}), in_period(v1, {"store_02", "store_04"}))
    same({k: v for k, v in after_one.items() if not START <= str(k[0]) <= END}, {
        k: v for k, v in v1.items() if not START <= str(k[0]) <= END
    })  # fmt: skip

    # 2. Every store: validation passes, promotion needs no override.
    cli(
        "plan", "--select", "fct_orders_daily+", "--start", START, "--end", END,
        "--reason", "refunds of cancelled orders counted twice", "--requested-by", "ana",
    )  # fmt: skip
    out = cli("run", "3")
    assert "validation passed" in out.stdout, out.stdout[-2000:]
    # A duplicated key in the restated table is refused before promotion, whatever the
    # project's own contracts check (restate's declared-keys check).
    con = duckdb.connect(str(cli.data / "warehouse.duckdb"))
    con.execute("insert into restate_3.fct_orders_daily select * from restate_3.fct_orders_daily limit 1")
    con.close()
    dup = cli("validate", "3", ok=False)
    assert dup.returncode == 1 and "declared keys (order_date, store_id) are unique" in dup.stdout, dup.stdout
    assert "failed validation" in cli("promote", "3", "--approved-by", "bob", ok=False).stderr
    con = duckdb.connect(str(cli.data / "warehouse.duckdb"))
    con.execute(
        "delete from restate_3.fct_orders_daily where rowid in (select max(rowid) from restate_3.fct_orders_daily "
        "group by order_date, store_id having count(*) > 1)"
    )
    con.close()
    cli("validate", "3")
    cli("promote", "3", "--approved-by", "bob")
    same(in_period(cli.prod()), in_period(v2))
    # The weekly view follows the daily partitions in the same instant.
    weekly = cli.scalar("select sum(net_sales) from analytics.fct_orders_weekly")
    assert Decimal(str(weekly)) == sum(Decimal(str(v[4])) for v in cli.prod().values())

    # As reported stays queryable: what restatement 3 replaced is restatement 2's result.
    replaced = cli.scalar(
        "select count(*) from analytics.fct_orders_daily_as_of where replaced_by_restatement = 3"
    )
    assert replaced == sum(1 for v in in_period(after_one).values() if v is not None)

    # 3. Rollback, newest first: each restores exactly what was live before it.
    cli("rollback", "3", "--by", "ana", "--reason", "check")
    same(cli.prod(), after_one)
    cli("rollback", "2", "--by", "ana", "--reason", "check")
    same(cli.prod(), v1)

    # Owners of both dashboards were told once per promotion and rollback.
    outbox = cli.data / "outbox"
    for rid, event in [(2, "promoted"), (3, "promoted"), (3, "rolled_back"), (2, "rolled_back")]:
        notices = sorted(p.name for p in (outbox / f"restatement-{rid}-{event}").iterdir())
        assert any(n.startswith("email_priya.ledger@example.com") for n in notices), notices
        assert any(n.startswith("slack_store-ops") for n in notices), notices
    text = next((outbox / "restatement-3-promoted").glob("email_priya*/message.txt")).read_text()
    assert "Net sales" in text and "Refunds" in text

    # The core's audit log verifies, and status shows what happened.
    cli("audit", "verify")
    status = json.loads(cli("status", "--json").stdout)
    assert {r["restatement_id"]: r["status"] for r in status}[3] == "rolled_back"
    # Every step records who ran it, the machine steps included.
    log = json.loads(cli("log", "--id", "3", "--json").stdout)
    steps = {e["event"]: e["actor"] for e in log if e["event"] in ("recomputed", "validated", "diffed")}
    assert set(steps) == {"recomputed", "validated", "diffed"} and all(steps.values()), steps
