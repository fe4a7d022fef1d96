"""A restatement of the Northstar orders mart after a logic fix, through the whole
lifecycle, while the orders source keeps loading from a real PostgreSQL.

Production was built with the refund bug (refund_logic v1). The fix is deployed (the
project's default, v2), and from then on the orders deployment's work (`restate sources
orders`: keyset extract, then the incremental load) runs again and again in its own
processes while orders keep changing at the source: new orders today, cancellations
with refunds and amount corrections inside the restated period, soft deletes. Meanwhile
an analyst plans, runs and a second person promotes the restatement of that period. No
source change is lost on the way: afterwards production equals the mart computed from
the source table itself with the fixed logic, to the cent, every day and store.

This installation has no finance export: a day changed at the source after finance
exported it would disagree with the export by design, so its contracts are the bundled
ones without the finance comparison (the lifecycle against finance's export is
test_northstar_lifecycle.py).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
import yaml

from tests.orders_source import expected_daily, mart_rows, orders_database, sources_file

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
STORES = [f"store_{i:02d}" for i in range(1, 5)]


def _cli(env: dict[str, str], cwd: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "interfaces.cli", *args],
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=900,
        cwd=cwd,
    )


def _order(rng: random.Random, order_id: str, day: datetime, now: datetime) -> tuple[Any, ...]:
    gross = Decimal(rng.randint(1000, 90000)) / 100
    status = rng.choice(("placed", "paid", "shipped", "shipped", "cancelled"))
    refund = (gross * Decimal(rng.choice((0, 0, 25, 100))) / 100).quantize(Decimal("0.01"))
    return (
        order_id,
        rng.choice(STORES),
        rng.choice(("web", "app", "marketplace")),
        status,
        day + timedelta(minutes=rng.randint(0, 24 * 60 - 1)),
        now,
        gross,
        (gross * Decimal("0.08")).quantize(Decimal("0.01")),
        refund,
    )


INSERT = "insert into public.orders values (%s, %s, %s, %s, %s, %s, %s, %s, %s, null)"


def _change_the_source(
    dsn: str, rng: random.Random, round_no: int, first_day: datetime, period: bool
) -> None:
    """What the shop does between two loads: new orders today; with `period`, also new
    orders in the restated period, refunded cancellations and amount corrections of older
    orders, and a soft delete."""
    now = datetime.now().replace(microsecond=0)
    today = now.replace(hour=0, minute=0, second=0)
    with psycopg.connect(dsn, autocommit=True) as con, con.cursor() as cur:
        fresh = [_order(rng, f"NS-L{round_no:03d}-{i:03d}", today, now) for i in range(6)]
        if not period:
            cur.executemany(INSERT, fresh)
            return
        fresh += [
            _order(rng, f"NS-P{round_no:03d}-{i:03d}", first_day + timedelta(days=rng.randint(0, 29)), now)
            for i in range(4)
        ]
        cur.executemany(INSERT, fresh)
        old = [r[0] for r in cur.execute("select order_id from public.orders where order_id like 'NS-0%%'")]
        picked = rng.sample(old, 6)
        cur.execute(
            "update public.orders set status = 'cancelled', refund_amount = gross_amount, updated_at = %s "
            "where order_id = any(%s)",
            [now, picked[:3]],
        )
        cur.execute(
            "update public.orders set gross_amount = gross_amount + 1.11, updated_at = %s where order_id = any(%s)",
            [now, picked[3:5]],
        )
        cur.execute(
            "update public.orders set deleted_at = %s, updated_at = %s where order_id = %s",
            [now, now, picked[5]],
        )


def _contracts_without_finance(folder: Path) -> Path:
    """The bundled Northstar contracts minus the comparison with finance's export."""
    folder.mkdir()
    for path in (ROOT / "soda_checks" / "northstar").glob("*.yml"):
        if path.name.startswith("reference_"):
            continue
        contract = yaml.safe_load(path.read_text())
        contract["checks"] = [c for c in contract.get("checks", []) if "finance" not in json.dumps(c)]
        (folder / path.name).write_text(yaml.safe_dump(contract, sort_keys=False))
    return folder


def _prod(data: Path) -> dict[tuple[Any, str], tuple[Any, ...]]:
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        rows = con.execute(
            "select order_date, store_id, orders, gross_sales, refunds, tax, net_sales "
            "from analytics.fct_orders_daily"
        ).fetchall()
    finally:
        con.close()
    return mart_rows(rows)


def test_a_restatement_promoted_while_loads_keep_running_loses_no_source_change(tmp_path: Path) -> None:
    rng = random.Random(7)
    data = tmp_path / "data"
    now = datetime.now().replace(microsecond=0)
    first_day = (now - timedelta(days=31)).replace(hour=0, minute=0, second=0)
    last_day = (now - timedelta(days=1)).replace(hour=0, minute=0, second=0)  # through yesterday
    with orders_database() as dsn:
        with psycopg.connect(dsn, autocommit=True) as con, con.cursor() as cur:
            cur.executemany(
                INSERT,
                [
                    _order(
                        rng, f"NS-0{i:06d}", first_day + timedelta(days=i % 32), now - timedelta(minutes=5)
                    )
                    for i in range(1500)
                ],
            )
        env = {
            **os.environ,
            "ORDERS_DSN": dsn,
            "RESTATE_DATA_DIR": str(data),
            "RESTATE_DBT_PROJECT_DIR": str(ROOT / "dbt" / "northstar"),
            "RESTATE_SODA_CONTRACTS_DIR": str(_contracts_without_finance(tmp_path / "contracts")),
            "RESTATE_REFERENCE_EXPORTS": "",
            "RESTATE_EXPLAINER": "",
            "RESTATE_DEMO": "",
            # No lookback: a load recomputes only the days its own versions touch, so a
            # later load never rewrites (and hides) a day the promotion got wrong.
            "RESTATE_LOOKBACK_HOURS": "0",
            "RESTATE_APPROVERS": '["bob"]',
            "RESTATE_SOURCES_FILE": str(sources_file(tmp_path / "sources.yml")),
        }
        for key in ("RESTATE_DUCKDB_PATH", "RESTATE_PROJECT_VARS", "PREFECT_HOME", "PREFECT_API_URL"):
            env.pop(key, None)
        data.mkdir()

        # Production as it was: built with the refund bug.
        time.sleep(1.1)  # past the source's settle window
        first = _cli(
            env, tmp_path, "sources", "orders", "--json", RESTATE_PROJECT_VARS='{"refund_logic": "v1"}'
        )
        assert first.returncode == 0, first.stderr[-3000:]
        assert json.loads(first.stdout)["tables"][0]["rows"] == 1500
        buggy = expected_daily(dsn, "v1")
        assert _prod(data) == buggy and buggy != expected_daily(dsn, "v2")

        # The fix is deployed; the orders deployment keeps running from now on, changing
        # the restated period until the promotion is due, then only today.
        loads: list[dict[str, Any]] = []
        errors: list[BaseException] = []
        stop, period = threading.Event(), threading.Event()
        period.set()

        def keep_loading() -> None:
            round_no = 0
            try:
                while not stop.is_set():
                    round_no += 1
                    in_period = period.is_set()
                    _change_the_source(dsn, rng, round_no, first_day, in_period)
                    time.sleep(1.1)
                    started = time.monotonic()
                    out = _cli(env, tmp_path, "sources", "orders", "--json")
                    report = json.loads(out.stdout) if out.returncode == 0 else {}
                    loads.append(
                        {
                            "start": started,
                            "end": time.monotonic(),
                            "rc": out.returncode,
                            "err": out.stderr[-2000:],
                            "period": in_period,
                            "load": (report.get("load") or {}).get("load"),
                        }
                    )
            except BaseException as exc:  # the test fails on it instead of waiting forever
                errors.append(exc)

        def wait_for(what: str, ready: Any) -> None:
            deadline = time.monotonic() + 300
            while not ready():
                assert not errors and loader.is_alive(), (what, errors)
                assert time.monotonic() < deadline, f"timed out waiting for {what}"
                time.sleep(0.2)

        loader = threading.Thread(target=keep_loading, daemon=True)
        loader.start()
        try:
            steps: dict[str, tuple[float, float]] = {}

            def step(name: str, *args: str) -> subprocess.CompletedProcess[str]:
                started = time.monotonic()
                out = _cli(env, tmp_path, *args)
                steps[name] = (started, time.monotonic())
                if out.returncode:
                    print(out.stdout, out.stderr)  # the whole report when a step fails
                assert out.returncode == 0, (args, out.stdout[-6000:], out.stderr[-3000:])
                return out

            step(
                "plan", "plan", "--select", "fct_orders_daily+", "--start", f"{first_day:%Y-%m-%d}",
                "--end", f"{last_day:%Y-%m-%d}", "--reason", "refunds of cancelled orders counted twice",
                "--requested-by", "ana",
            )  # fmt: skip
            # A load of period changes lands after the plan: the chunks must catch up with it.
            wait_for("a load after the plan", lambda: any(ld["start"] > steps["plan"][1] for ld in loads))
            run = step("run", "run", "1")
            assert "validation passed" in run.stdout, run.stdout[-3000:]
            assert "before checking, recomputed chunks loads changed since the plan" in run.stdout, run.stdout
            # The period stops changing; once its last changes are loaded, promote while
            # today's orders keep loading.
            period.clear()
            wait_for("the period's last load", lambda: any(not ld["period"] for ld in loads))
            step("promote", "promote", "1", "--approved-by", "bob")
            wait_for(
                "a load after the promotion", lambda: any(ld["start"] > steps["promote"][1] for ld in loads)
            )
        finally:
            stop.set()
            loader.join(timeout=600)
        assert not errors, errors
        assert all(ld["rc"] == 0 for ld in loads), [ld["err"] for ld in loads if ld["rc"]]

        def overlapped(name: str) -> int:
            a, b = steps[name]
            return sum(1 for ld in loads if ld["start"] < b and ld["end"] > a)

        assert overlapped("run") >= 1 and overlapped("promote") + overlapped("run") >= 2, (steps, loads)
        # After the period stopped changing, loads touched no day of it: every restated
        # day in production is the promotion's work alone.
        today_only = [ld["load"] for ld in loads if not ld["period"] and ld["load"]]
        assert today_only
        con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
        try:
            touched = con.execute(
                "select count(*) from restate_meta.load_partitions where partition_date between ? and ? "
                f"and load_id in ({', '.join('?' for _ in today_only)})",
                [first_day.date(), last_day.date(), *today_only],
            ).fetchone()[0]
        finally:
            con.close()
        assert touched == 0

        # Catch up with the source's last changes (past its settle window), then compare.
        time.sleep(1.1)
        last = _cli(env, tmp_path, "sources", "orders")
        assert last.returncode == 0, last.stderr[-2000:]
        fixed = expected_daily(dsn, "v2")
        prod = _prod(data)
        assert prod.keys() == fixed.keys(), sorted(set(prod) ^ set(fixed))[:10]
        wrong = {k: (prod[k], fixed[k]) for k in prod if prod[k] != fixed[k]}
        if wrong:  # what the source holds for the first wrong partition, to see why
            day, store = next(iter(wrong))
            print("production", prod[(day, store)], "source", fixed[(day, store)])
            with psycopg.connect(dsn) as con:
                print(con.execute(
                    "select order_id, status, updated_at, deleted_at from public.orders "
                    "where order_ts::date = %s and store_id = %s order by order_id", [day, store],
                ).fetchall())  # fmt: skip
        assert not wrong, list(wrong.items())[:5]
        status = json.loads(_cli(env, tmp_path, "status", "--json").stdout)
        assert {r["restatement_id"]: r["status"] for r in status} == {1: "promoted"}
        assert _cli(env, tmp_path, "audit", "verify").returncode == 0
