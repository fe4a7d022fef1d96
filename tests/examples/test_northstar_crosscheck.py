"""Northstar's three systems reconciled: shop orders, payment webhooks, partner shipments.

The orders, the payment events and the shipments are generated together with the
disagreements planted in them (examples/northstar/systems.py keeps the truth in Python);
`restate load` lands and builds everything through the real CLI, dbt and DuckDB, and
`restate reconcile` runs the Soda contract. Each kind of finding must name exactly the
planted order ids: no more (a webhook retry, a refund of a cancelled order or a fresh
shipment are not disagreements) and no fewer.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from examples.northstar.generate import GenerateSpec, generate, latest_valid, simulate
from examples.northstar.systems import Disagreements, SystemsSpec, write_systems
from tests.examples.test_northstar_lifecycle import Cli

pytestmark = pytest.mark.slow

SPEC = GenerateSpec(
    end_date=date(2026, 10, 31), months=2, stores=4, orders_per_day=30, seed=11, id_collisions=3
)
SYSTEMS = SystemsSpec(
    orphan_payments=4,
    unreported_shipments=6,
    charged_after_cancel=3,
    orphan_shipments=2,
    wrong_amount_charges=2,
    retry_share=0.05,
)
FULFIL_WITHIN_DAYS = 5


@pytest.fixture(scope="module")
def reconciled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cli, Disagreements, dict[str, object]]:
    cli = Cli(tmp_path_factory.mktemp("crosscheck"))
    generate(SPEC, cli.data / "landing", cli.data / "finance")
    truth = write_systems(SPEC, cli.data / "landing", SYSTEMS)
    cli("load")
    out = cli("reconcile", "--today", "2026-11-20", "--days", "90", "--no-notify", "--json", ok=False)
    assert out.returncode in (0, 1), out.stderr[-3000:]
    return cli, truth, json.loads(out.stdout)


def flagged(cli: Cli, column: str) -> set[str]:
    con = duckdb.connect(str(cli.data / "warehouse.duckdb"), read_only=True)
    try:
        rows = con.execute(f"select order_id from analytics.int_order_crosscheck where {column}").fetchall()
    finally:
        con.close()
    return {r[0] for r in rows}


def test_each_finding_names_exactly_the_planted_orders(
    reconciled: tuple[Cli, Disagreements, dict[str, object]],
) -> None:
    cli, truth, _ = reconciled
    assert truth.payments_without_order and truth.duplicate_order_ids and truth.charged_after_cancel
    assert flagged(cli, "payment_without_order") == truth.payments_without_order
    assert flagged(cli, "duplicate_order_id") == truth.duplicate_order_ids
    assert flagged(cli, "status_disagreement") == truth.charged_after_cancel
    assert truth.shipments_without_order and truth.amount_mismatch
    assert flagged(cli, "shipment_without_order") == truth.shipments_without_order
    # Retried webhooks are counted once: only the planted wrong charges mismatch.
    assert flagged(cli, "amount_mismatch") == truth.amount_mismatch

    latest = latest_valid(simulate(SPEC))
    newest = max(v.order_ts for v in latest.values())
    due = {
        o
        for o in truth.shipped_not_reported
        if latest[o].order_ts < newest - timedelta(days=FULFIL_WITHIN_DAYS)
    }
    assert due, "every planted unreported shipment is too recent to be late: change the seed"
    assert due <= truth.paid_never_fulfilled
    assert flagged(cli, "paid_never_fulfilled") == truth.paid_never_fulfilled


def test_every_order_of_each_system_is_in_the_crosscheck_once(
    reconciled: tuple[Cli, Disagreements, dict[str, object]],
) -> None:
    cli, truth, _ = reconciled
    assert cli.scalar("select count(*) - count(distinct order_id) from analytics.int_order_crosscheck") == 0
    assert cli.scalar("select count(*) from analytics.int_order_crosscheck where in_shop") == truth.orders
    assert cli.scalar("select count(*) from analytics.stg_payments__events") == truth.payment_events
    assert cli.scalar("select count(*) from analytics.stg_fulfilment__shipments") == truth.shipments


def test_the_nightly_reconciliation_reports_each_kind_with_its_count(
    reconciled: tuple[Cli, Disagreements, dict[str, object]],
) -> None:
    _, truth, out = reconciled
    warnings = {w["qualifier"]: w for w in out["warnings"]}  # type: ignore[index]
    assert warnings["payments_without_order"]["measured"] == len(truth.payments_without_order)
    assert warnings["status_disagreement"]["measured"] == len(truth.charged_after_cancel)
    # 3 ids issued twice among ~1,800 orders is 0.17%: over the 0.1% SLA, so it fails.
    dup = warnings["duplicate_order_ids"]
    assert dup["outcome"] == "failed", dup
    assert warnings["amount_mismatch"]["measured"] == len(truth.amount_mismatch)
    assert warnings["shipments_without_order"]["measured"] == len(truth.shipments_without_order)


def test_an_installation_without_payments_or_shipments_builds_empty_relations(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    generate(SPEC, cli.data / "landing", cli.data / "finance")
    cli("load")
    assert cli.scalar("select count(*) from analytics.stg_payments__events") == 0
    assert cli.scalar("select count(*) from analytics.stg_fulfilment__shipments") == 0
    # Every order is then charged by no one: no status or amount finding is invented.
    assert cli.scalar("select count(*) from analytics.int_order_crosscheck where status_disagreement") == 0


def test_explain_splits_the_difference_and_lists_the_findings(tmp_path: Path) -> None:
    """Production built with the historical refund bug, then order versions landed after
    its last load: `restate explain` puts the bug in the logic part, the late versions in
    the late-data part, the rest in the source part (each to the cent of an independent
    computation from the landed files), and lists the cross-system findings."""
    import csv
    from datetime import datetime
    from decimal import Decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    from examples.northstar.expected import expected_daily, rejection_reason

    cli = Cli(tmp_path)
    landing = cli.data / "landing"
    generate(SPEC, landing, cli.data / "finance")
    truth = write_systems(SPEC, landing, SYSTEMS)
    cli("load", RESTATE_PROJECT_VARS='{"refund_logic": "v1"}')
    start, end = "2026-09-01", "2026-10-31"

    def net(refund_logic: str) -> Decimal:
        rows = expected_daily(landing, refund_logic)
        return sum((v.net_sales for (day, _), v in rows.items() if start <= str(day) <= end), Decimal(0))

    loaded_v1, loaded_v2 = net("v1"), net("v2")
    # Late: after the load, new versions of 30 orders of the period land (half cancelled,
    # half with 5.00 more), and 10 orders nobody had seen.
    first = pq.read_table(sorted(landing.glob("orders/*/*.parquet"))[0])
    rows = [r for r in first.to_pylist() if start <= str(r["order_ts"])[:10] <= end][:40]
    arrived = datetime(2026, 12, 1, 9, 0)
    for n, row in enumerate(rows):
        if n < 30:
            row["status"] = "cancelled" if n % 2 else row["status"]
            row["gross_amount"] += 0 if n % 2 else Decimal("5.00")
        else:
            row["order_id"] = f"LATE-{n}"
        row["updated_at"], row["order_ingested_at"] = arrived, arrived
    (landing / "orders" / "late_batch").mkdir()
    pq.write_table(
        pa.Table.from_pylist(rows, schema=first.schema), landing / "orders" / "late_batch" / "part.parquet"
    )
    landed_v2 = net("v2")
    # Orders whose latest version is now a late one (the generator plants bad rows, and
    # one order can have several versions in a file).
    valid_late = len({r["order_id"] for r in rows if rejection_reason(r) is None})
    assert landed_v2 != loaded_v2
    # An ETL fault: the pipeline lost the kept versions of 5 sold orders of the period,
    # versions older than the lookback window (no later load would read them again).
    con = duckdb.connect(str(cli.data / "warehouse.duckdb"))
    lost_rows = con.execute(
        "select order_id, gross_amount, refund_amount from analytics.int_orders_latest "
        "where status <> 'cancelled' and deleted_at is null and order_date between ? and ? "
        "and ingested_at <= (select max(ingested_until) from restate_meta.loads where status = 'success') "
        "- interval 72 hour order by order_id limit 5",
        [start, end],
    ).fetchall()
    con.execute(
        "delete from analytics.int_orders_latest where order_id in (?, ?, ?, ?, ?)", [r[0] for r in lost_rows]
    )
    con.close()
    lost = sum((Decimal(str(g)) - Decimal(str(r)) for _, g, r in lost_rows), Decimal(0))
    out = cli(
        "explain",
        "--start",
        start,
        "--end",
        end,
        "--json",
        RESTATE_EXPLAINER="examples.northstar.explain:explain_period",
    )
    found = json.loads(out.stdout)
    finance = Decimal(0)
    for path in sorted((cli.data / "finance").glob("orders_*.csv")):
        with path.open() as fh:
            finance += sum(
                (Decimal(r["net"]) for r in csv.DictReader(fh) if start <= r["date"] <= end), Decimal(0)
            )
    assert Decimal(found["production"]) == loaded_v1
    assert Decimal(found["recomputed"]) == loaded_v2 - lost
    assert Decimal(found["logic"]) == loaded_v1 - (loaded_v2 - lost)  # the bug took refunds out twice
    assert Decimal(found["logic"]) < 0 and lost > 0
    assert Decimal(found["etl"]) == -lost  # the landing still holds what the pipeline lost
    assert Decimal(found["late"]) == loaded_v2 - landed_v2 and found["late_versions"] == valid_late
    assert Decimal(found["finance"]) == finance
    assert Decimal(found["source"]) == landed_v2 - finance
    parts = sum((Decimal(found[k]) for k in ("logic", "etl", "late", "source")), Decimal(0))
    assert parts == Decimal(found["production"]) - finance
    assert found["verdict"][0].startswith("transformation logic")  # what a drafted restatement names
    assert (
        found["verdict"][-1].startswith("cross-system:")
        and "4 payments without an order" in found["verdict"][-1]
    )
    counts = {f["finding"]: f["orders"] for f in found["findings"]}
    assert counts["payment_without_order"] == len(truth.payments_without_order)
    assert counts["shipment_without_order"] == len(truth.shipments_without_order)
    assert counts["status_disagreement"] == len(truth.charged_after_cancel)
    assert counts["duplicate_order_id"] == len(truth.duplicate_order_ids)
    text = cli(
        "explain",
        "--start",
        start,
        "--end",
        end,
        RESTATE_EXPLAINER="examples.northstar.explain:explain_period",
    ).stdout
    assert "transformation logic" in text and "payments without an order: 4 orders" in text
    assert f"late data (the landing as of the last load - now, {valid_late} orders changed since)" in text
    assert f"ETL (kept versions - the landing as of the last load): {-lost:+,}" in text
