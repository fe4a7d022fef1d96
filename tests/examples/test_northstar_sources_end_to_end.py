"""Northstar's three systems from their real sources to the marts, through the CLI as a
user (or the deployments) runs it: orders from a real PostgreSQL (inserted, updated,
cancelled, soft-deleted), Stripe-signed payment webhooks over real HTTP (`restate
webhooks serve`; retried, out of order, one forged), partner files over a real SFTP
server (a drifted file, a half-written one finished later, a resend).

The orders mart must equal the mart computed from the PostgreSQL table itself, and the
cross-system check (int_order_crosscheck) must flag exactly what a plain-Python
comparison of what the three systems sent finds, order by order, to the cent.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import httpx
import psycopg
import pytest

from tests.orders_source import COLUMNS, expected_daily, mart_rows, orders_database
from tests.sources.test_payment_webhooks import _event, _post
from tests.sources.test_sftp_drops import COLUMNS as SHIPMENT_COLUMNS
from tests.sources.test_sftp_drops import PASSWORD, USER, sftp_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_test_restate"
FLAGS = ("payment_without_order", "shipment_without_order", "paid_never_fulfilled", "status_disagreement",
         "amount_mismatch")  # fmt: skip
INSERT = "insert into public.orders values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Northstar:
    """The installation: its environment, the CLI, and what each system was sent."""

    def __init__(self, tmp: Path, dsn: str, sftp_port: int, host_key: str) -> None:
        self.tmp, self.dsn, self.data = tmp, dsn, tmp / "data"
        self.data.mkdir()
        sources = tmp / "sources.yml"
        sources.write_text(
            "postgres:\n"
            "  - {name: shop.orders, dsn: '${ORDERS_DSN}', table: public.orders, folder: orders,\n"
            "     cursor_column: updated_at, key_column: order_id, landed_at_column: order_ingested_at,\n"
            f"     page_size: 7, settle_s: 1, columns: {json.dumps(COLUMNS)}}}\n"
            "webhooks: {folder: payments}\n"
            "sftp:\n"
            f"  - {{name: 3pl-east, host: 127.0.0.1, port: {sftp_port}, username: {USER},\n"
            f"     password: '${{SFTP_PASSWORD}}', host_key: '{host_key}', remote_dir: /drop,\n"
            f"     folder: fulfilment, settle_s: 0.3, columns: {json.dumps(SHIPMENT_COLUMNS)}}}\n"
        )
        self.env = {
            **os.environ,
            "ORDERS_DSN": dsn,
            "SFTP_PASSWORD": PASSWORD,
            "RESTATE_DATA_DIR": str(self.data),
            "RESTATE_DBT_PROJECT_DIR": str(ROOT / "dbt" / "northstar"),
            "RESTATE_SODA_CONTRACTS_DIR": str(ROOT / "soda_checks" / "northstar"),
            "RESTATE_REFERENCE_EXPORTS": "",
            "RESTATE_EXPLAINER": "",
            "RESTATE_DEMO": "",
            "RESTATE_LOOKBACK_HOURS": "72",
            "RESTATE_SOURCES_FILE": str(sources),
            "RESTATE_STRIPE_WEBHOOK_SECRET": SECRET,
        }
        for key in ("RESTATE_DUCKDB_PATH", "RESTATE_PROJECT_VARS", "PREFECT_HOME", "PREFECT_API_URL"):
            self.env.pop(key, None)
        self.events: dict[str, dict[str, Any]] = {}  # accepted, by event id
        self.shipments: list[tuple[str, datetime]] = []  # from files that passed

    def __call__(self, *args: str) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-m", "interfaces.cli", *args, "--json"],
            env=self.env, capture_output=True, text=True, timeout=600, cwd=self.tmp,
        )  # fmt: skip
        assert out.returncode == 0, (args, out.stdout[-3000:], out.stderr[-3000:])
        return dict(json.loads(out.stdout))

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        con = duckdb.connect(str(self.data / "warehouse.duckdb"), read_only=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()


def _serve(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [sys.executable, "-m", "interfaces.cli", "webhooks", "serve", "--port", str(port)],
        env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            assert server.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)
    raise AssertionError(f"webhook receiver did not start: {log.read_text()[-2000:]}")


def _expected_crosscheck(ns: Northstar, within_days: int = 5) -> dict[str, dict[str, bool]]:
    """Each order id's flags from what the three systems sent, computed here."""
    with psycopg.connect(ns.dsn) as con:
        orders = {
            r[0]: {"status": "deleted" if r[4] else r[1], "total": r[2] + r[3], "ts": r[5], "refund": r[6]}
            for r in con.execute(
                "select order_id, status, gross_amount, tax_amount, deleted_at, order_ts, refund_amount "
                "from public.orders"
            )
        }
    charged: dict[str, Decimal] = defaultdict(Decimal)
    refunded: dict[str, Decimal] = defaultdict(Decimal)
    for e in ns.events.values():
        book = charged if e["type"] == "charge.succeeded" else refunded
        book[e["order_id"]] += e["amount"]
    paid = set(charged) | set(refunded)
    shipped = {order_id for order_id, _ in ns.shipments}
    latest = max(o["ts"] for o in orders.values())
    out = {}
    for order_id in set(orders) | paid | shipped:
        o = orders.get(order_id)
        c, r = charged.get(order_id, Decimal(0)), refunded.get(order_id, Decimal(0))
        both = o is not None and order_id in paid
        out[order_id] = {
            "payment_without_order": o is None and order_id in paid,
            "shipment_without_order": o is None and order_id in shipped,
            "paid_never_fulfilled": o is not None and c > 0 and o["status"] in ("paid", "shipped", "refunded")
            and order_id not in shipped and o["ts"] < latest - timedelta(days=within_days),
            "status_disagreement": both and (
                (o["status"] in ("cancelled", "deleted") and c > r)
                or (o["status"] == "placed" and c > 0)
                or (o["status"] == "refunded" and r != o["refund"])
            ),
            "amount_mismatch": both and o["status"] not in ("cancelled", "deleted") and c != o["total"],
        }  # fmt: skip
    return out


def _crosscheck(ns: Northstar) -> dict[str, dict[str, bool]]:
    rows = ns.query(f"select order_id, {', '.join(FLAGS)} from analytics.int_order_crosscheck")
    return {r[0]: dict(zip(FLAGS, (bool(v) for v in r[1:]), strict=True)) for r in rows}


def _same(actual: dict[Any, Any], expected: dict[Any, Any]) -> None:
    assert actual.keys() == expected.keys(), sorted(set(actual) ^ set(expected))[:10]
    wrong = {k: (actual[k], expected[k]) for k in actual if actual[k] != expected[k]}
    assert not wrong, list(wrong.items())[:5]


def test_three_systems_from_their_real_sources_reach_the_marts(
    sftp_server: tuple[int, Path, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    rng = random.Random(3)
    sftp_port, drop, host_key = sftp_server
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    now = datetime.now().replace(microsecond=0)
    with orders_database() as dsn:
        ns = Northstar(tmp_path, dsn, sftp_port, host_key)
        server = _serve(ns.env, port, tmp_path / "webhooks.log")
        try:
            _three_systems(ns, rng, url, drop, now)
        finally:
            server.terminate()
            server.wait(timeout=20)


def _three_systems(ns: Northstar, rng: random.Random, url: str, drop: Path, now: datetime) -> None:
    """The story, with the webhook receiver running at `url` and the partners' drop folder."""
    dsn = ns.dsn

    # The shop: 40 orders over ten days, some cancelled, refunded or deleted.
    statuses = ["paid"] * 5 + ["shipped"] * 3 + ["placed", "cancelled", "refunded"]
    rows = []
    for i in range(40):
        gross = Decimal(rng.randint(1000, 50000)) / 100
        status = rng.choice(statuses)
        refund = gross if status == "refunded" else Decimal(0)
        rows.append((
            f"NS-{i:07d}", f"store_0{i % 3 + 1}", "web", status, now - timedelta(days=10) + timedelta(hours=6 * i),
            now - timedelta(minutes=5), gross, (gross * Decimal("0.08")).quantize(Decimal("0.01")), refund,
            now - timedelta(minutes=5) if i in (7, 8) else None,
        ))  # fmt: skip
    with psycopg.connect(dsn, autocommit=True) as con, con.cursor() as cur:
        cur.executemany(INSERT, rows)

    # The payment provider: a charge per order that is not merely placed (a few for
    # another amount), refunds for refunded and for some cancelled orders, a charge
    # for an order the shop never had. Every third delivery is retried, the whole
    # stream arrives out of order, and one forged delivery is refused.
    events = []
    for order_id, _, _, status, *_, gross, tax, refund, _deleted in rows:
        if status == "placed":
            continue
        total = gross + tax + (Decimal("1.00") if order_id.endswith("3") else 0)
        events.append((f"evt_c_{order_id}", "charge.succeeded", order_id, total))
        if status == "refunded" or (status == "cancelled" and order_id < "NS-0000020"):
            events.append((f"evt_r_{order_id}", "charge.refunded", order_id, refund or total))
    events.append(("evt_c_NS-9999999", "charge.succeeded", "NS-9999999", Decimal("12.34")))
    rng.shuffle(events)
    created = int(time.time()) - 600
    with httpx.Client(timeout=10) as client:
        for n, (event_id, kind, order_id, amount) in enumerate(events):
            body = _event(event_id, kind, order_id, int(amount * 100), "succeeded", created + n)
            for attempt in range(2 if n % 3 == 0 else 1):  # a retry is signed anew
                assert _post(client, url, body, at=int(time.time()) - 60 + attempt).status_code == 200
            ns.events[event_id] = {"type": kind, "order_id": order_id, "amount": amount}
        forged = _event("evt_forged", "charge.succeeded", "NS-0000001", 999_999, "succeeded", created)
        assert _post(client, url, forged, secret="whsec_someone_else").status_code == 400

    # The partners: shipments for most paid or shipped orders; a file with another
    # layout (quarantined); a file still being uploaded; one order nobody placed.
    def csv(lines: list[tuple[str, datetime]]) -> bytes:
        body = "".join(f"{o},{t:%Y-%m-%dT%H:%M:%S},UPS,1\n" for o, t in lines)
        return f"order_id,shipped_at,carrier,units\n{body}".encode()

    shippable = [r for r in rows if r[3] in ("paid", "shipped")]
    first = [(r[0], r[4] + timedelta(days=1)) for r in shippable[: len(shippable) // 2]]
    first.append(("NS-8888888", now - timedelta(days=3)))
    later = [(r[0], r[4] + timedelta(days=2)) for r in shippable[len(shippable) // 2 : -3]]
    (drop / "east_1.csv").write_bytes(csv(first))
    (drop / "east_1-resent.csv").write_bytes(csv(first))
    (drop / "east_2.csv.part").write_bytes(csv(later))
    drifted = [(r[0], r[4]) for r in shippable[-3:]]
    (drop / "east_3.csv").write_bytes(
        csv(drifted)
        .replace(b"order_id,shipped_at", b"order_id,ship_ts")
        .replace(b"units\n", b"units,wh\n", 1)
    )
    ns.shipments += first
    time.sleep(1.2)  # past the source's settle window

    orders = ns("sources", "orders")
    assert (
        orders["tables"][0]["rows"] == 40 and orders["tables"][0]["statements"] == 6
    )  # 5 pages of 7 and a short one
    drops = ns("sources", "fulfilment")["drops"][0]
    assert (drops["files_accepted"], drops["files_quarantined"], drops["files_waiting"]) == (1, 1, 1)
    assert drops["duplicates"] == 1 and "schema_drift" in drops["quarantined"]["east_3.csv"]
    payments = ns("sources", "payments")
    assert payments["webhooks"]["rows"] == len(events) and payments["load"]["rebuilt"] > 0

    _same(mart_rows(ns.query(
        "select order_date, store_id, orders, gross_sales, refunds, tax, net_sales from analytics.fct_orders_daily"
    )), expected_daily(dsn))  # fmt: skip
    first_check = _crosscheck(ns)
    _same(first_check, _expected_crosscheck(ns))
    for flag in FLAGS:  # each flag is planted at least once, and clear somewhere
        assert any(f[flag] for f in first_check.values()), flag
        assert not all(f[flag] for f in first_check.values()), flag
    assert ns.query("select count(*) from analytics.int_order_crosscheck where order_id = 'NS-0000001' "
                    "and charged = 999999")[0][0] == 0  # fmt: skip

    # Later: the upload finishes, a charged order is cancelled at the shop and its
    # refund arrives (delivered twice), a shipped order's amount is corrected.
    (drop / "east_2.csv.part").rename(drop / "east_2.csv")
    ns.shipments += later
    charged_paid = next(r for r in rows if r[3] == "paid" and not r[9])
    fixed = next(r for r in rows if r[3] == "shipped" and not r[9] and r[0] != charged_paid[0])
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(
            "update public.orders set status = 'cancelled', updated_at = now()::timestamp where order_id = %s",
            [charged_paid[0]],
        )
        con.execute(
            "update public.orders set gross_amount = gross_amount + 2.50, updated_at = now()::timestamp "
            "where order_id = %s",
            [fixed[0]],
        )
    refund = ns.events[f"evt_c_{charged_paid[0]}"]["amount"]
    body = _event(f"evt_r2_{charged_paid[0]}", "charge.refunded", charged_paid[0], int(refund * 100),
                  "succeeded", int(time.time()))  # fmt: skip
    with httpx.Client(timeout=10) as client:
        assert _post(client, url, body, at=int(time.time()) - 30).status_code == 200
        assert _post(client, url, body).status_code == 200  # the provider's retry
    ns.events[f"evt_r2_{charged_paid[0]}"] = {"type": "charge.refunded", "order_id": charged_paid[0],
                                              "amount": refund}  # fmt: skip
    time.sleep(1.2)
    assert ns("sources", "fulfilment")["drops"][0]["files_accepted"] == 1
    assert ns("sources", "orders")["tables"][0]["rows"] == 2
    assert ns("sources", "payments")["webhooks"]["rows"] == 1

    _same(mart_rows(ns.query(
        "select order_date, store_id, orders, gross_sales, refunds, tax, net_sales from analytics.fct_orders_daily"
    )), expected_daily(dsn))  # fmt: skip
    second_check = _crosscheck(ns)
    _same(second_check, _expected_crosscheck(ns))
    assert second_check != first_check
    assert not second_check[charged_paid[0]]["status_disagreement"]  # cancelled and refunded: agree

    # A payments run that landed its file and died before the rebuild leaves the rebuild
    # owed: the next run rebuilds although nothing new lands, then owes nothing.
    owed = ns.data / "state" / "rebuild-owed" / "payments"
    owed.touch()
    assert ns("sources", "payments")["load"]["rebuilt"] > 0 and not owed.exists()
    assert ns("sources", "payments")["load"] == {"load": None}
