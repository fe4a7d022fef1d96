"""Root-cause evidence for the Northstar example: why production's net sales differ from
finance's export for a period, and what the other systems say about those orders.

This is the Northstar project's explainer (``RESTATE_EXPLAINER`` =
``examples.northstar.explain:explain_period``; restate/validation/explainer.py). The
difference ``production - finance`` in net sales is split into three parts that add up
exactly, each measured from the warehouse:

- **transformation logic** - production against a recomputation of the period with the
  correct rules from the kept order versions (``int_orders_latest``, as of the last
  load): a cancelled or deleted order counts nothing, a refund counts once. A logic bug
  (the historical ``refund_logic: v1``) or an ETL fault shows here;
- **late data** - that recomputation against the same rules over the kept versions and
  every valid version the next load would read (``stg_shop__orders``), the latest per
  order: versions that landed after production's last load;
- **source** - the recomputation over everything landed against finance: the shop's
  orders themselves disagree with finance (missing orders, a different amount).

Beside it, the cross-system findings of the period from ``int_order_crosscheck`` (order
ids issued twice, payments and shipments without an order, paid orders never reported
shipped, status and amount disagreements with the payment provider), each with its
count and amount: evidence for the source part, and for whoever drafts the restatement.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from restate.contract.spec import read_contract
from restate.dbt.runner import DbtProject
from restate.engines.base import Engine
from restate.ingest import landing
from restate.ingest.loads import EPOCH, last_watermark
from restate.settings import Settings
from restate.validation import reference

MART = "fct_orders_daily"
KEPT = "int_orders_latest"
STAGED = "stg_shop__orders"
CROSSCHECK = "int_order_crosscheck"
REFERENCE = "reference_finance_orders"
# Finding -> (label, the amount it puts at stake).
FINDINGS = {
    "duplicate_order_id": ("order ids issued twice", "order_total"),
    "payment_without_order": ("payments without an order", "charged"),
    "shipment_without_order": ("shipments without an order", "0"),
    "paid_never_fulfilled": ("paid orders never reported shipped", "order_total"),
    "status_disagreement": ("status disagrees with the payment provider", "charged - coalesce(refunded, 0)"),
    "amount_mismatch": ("charge differs from the order total", "charged - order_total"),
}


@dataclass
class Explanation:
    start: date
    end: date
    production: Decimal
    finance: Decimal | None
    recomputed: Decimal  # the correct rules over the kept versions (as of the last load)
    recomputed_now: Decimal  # the correct rules over every version landed so far
    logic: Decimal
    late: Decimal
    late_versions: int
    source: Decimal | None
    findings: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Causes, the largest first: the nightly run's drafted restatement names the first.
    verdict: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        body = asdict(self)
        return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in body.items()}


def _money(value: Any) -> Decimal:
    return Decimal(str(value or 0)).quantize(Decimal("0.01"))


# The correct rules on one version per order, written here from the data contract rather
# than taken from the model, so a fault in the model shows instead of being reproduced.
NET = "case when status = 'cancelled' or deleted_at is not null then 0 else gross_amount - refund_amount end"


def explain(
    engine: Engine, settings: Settings, start: date, end: date, manifest: dict[str, Any] | None = None
) -> Explanation:
    prod, meta = settings.prod_schema, settings.meta_schema
    production = _money(
        engine.scalar(
            f"select sum(net_sales) from {prod}.{MART} where order_date between ? and ?", [start, end]
        )
    )
    recomputed = _money(
        engine.scalar(f"select sum({NET}) from {prod}.{KEPT} where order_date between ? and ?", [start, end])
    )
    # The kept versions and every valid version the next load would read (files landed
    # since the last load included: check them first), the latest per order, ranked as
    # int_orders_latest ranks them. History whose files the landing no longer holds stays
    # in the kept versions, so it is never mistaken for late data.
    lc = landing.landing_of(
        read_contract(manifest if manifest is not None else DbtProject(settings).manifest())
    )
    landing.refresh(engine, settings, lc)
    watermark = last_watermark(engine, meta) or EPOCH
    next_window = watermark - timedelta(hours=settings.lookback_hours) if watermark > EPOCH else EPOCH
    columns = (
        "order_id, order_date, status, deleted_at, gross_amount, refund_amount, updated_at, ingested_at, "
        "source_file, source_row_number"
    )
    now_row = engine.query(
        f"""
        with candidates as (
            select {columns} from {prod}.{KEPT}
            union all
            select {columns} from {prod}.{STAGED} where rejection_reason is null and ingested_at > ?
        ),
        ranked as (
            select *, row_number() over (
                partition by order_id
                order by updated_at desc nulls last, ingested_at desc nulls last,
                    source_file desc nulls last, source_row_number desc nulls last
            ) as version_rank
            from candidates
        )
        select
            (select sum({NET}) from ranked where version_rank = 1 and order_date between ? and ?),
            (select count(*) from {prod}.{STAGED}
             where rejection_reason is null and ingested_at > ? and order_date between ? and ?)
        """,
        [next_window, start, end, watermark, start, end],
    )[0]
    recomputed_now, late_versions = _money(now_row[0]), int(now_row[1] or 0)
    finance: Decimal | None = None
    notes: list[str] = []
    reference.load_reference_exports(engine, settings)  # finance's files as they are now
    if engine.relation_exists(meta, REFERENCE):
        finance = _money(
            engine.scalar(f"select sum(net) from {meta}.{REFERENCE} where date between ? and ?", [start, end])
        )
    else:
        notes.append("no finance export loaded: the source part is unknown")
    findings: list[dict[str, Any]] = []
    if engine.relation_exists(prod, CROSSCHECK):
        for flag, (label, amount) in FINDINGS.items():
            row = engine.query(
                f"select count(*), sum({amount}) from {prod}.{CROSSCHECK} "
                f"where {flag} and check_date between ? and ?",
                [start, end],
            )[0]
            if row[0]:
                findings.append(
                    {"finding": flag, "label": label, "orders": int(row[0]), "amount": str(_money(row[1]))}
                )
    else:
        notes.append(f"{CROSSCHECK} is not built: no cross-system findings")
    found = Explanation(
        start=start,
        end=end,
        production=production,
        finance=finance,
        recomputed=recomputed,
        recomputed_now=recomputed_now,
        logic=production - recomputed,
        late=recomputed - recomputed_now,
        late_versions=late_versions,
        source=None if finance is None else recomputed_now - finance,
        findings=findings,
        notes=notes,
    )
    found.verdict = _verdict(found)
    return found


def _verdict(found: Explanation) -> list[str]:
    parts = [
        (
            abs(found.logic),
            f"transformation logic: production differs from the correct rules by {found.logic:+,}",
        ),
        (
            abs(found.late),
            f"late data: {found.late_versions:,} order versions landed after production's last load "
            f"move net sales by {-found.late:+,}",
        ),
    ]
    if found.source is not None:
        parts.append(
            (abs(found.source), f"source data: the shop's orders differ from finance by {found.source:+,}")
        )
    verdict = [text for size, text in sorted(parts, key=lambda p: p[0], reverse=True) if size]
    if found.findings:
        verdict.append("cross-system: " + ", ".join(f"{f['orders']} {f['label']}" for f in found.findings))
    return verdict or ["no difference"]


def format_explanation(found: Explanation) -> str:
    lines = [f"Net sales {found.start} .. {found.end}: production {found.production:,}"]
    if found.finance is not None:
        lines.append(f"  finance {found.finance:,}; difference {found.production - found.finance:+,}")
    lines.append(
        f"  transformation logic (production - recomputation with the correct rules): {found.logic:+,}"
    )
    lines.append(
        f"  late data (kept versions - every landed version, {found.late_versions:,} landed since "
        f"the last load): {found.late:+,}"
    )
    if found.source is not None:
        lines.append(f"  source (every landed version - finance): {found.source:+,}")
    if found.findings:
        lines.append("  cross-system findings:")
        for f in found.findings:
            lines.append(f"    {f['label']}: {f['orders']} orders, {Decimal(f['amount']):,}")
    else:
        lines.append("  cross-system findings: none")
    lines += [f"  note: {n}" for n in found.notes]
    return "\n".join(lines)


def explain_period(engine: Engine, settings: Settings, start: date, end: date) -> tuple[dict[str, Any], str]:
    """The project's explainer hook (restate/validation/explainer.py): the evidence and its text."""
    found = explain(engine, settings, start, end)
    return found.as_dict(), format_explanation(found)
