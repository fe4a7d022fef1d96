"""Root-cause evidence for the Northstar example: why production's net sales differ from
finance's export for a period, and what the other systems say about those orders.

This is the Northstar project's explainer (``RESTATE_EXPLAINER`` =
``examples.northstar.explain:explain_period``; restate/validation/explainer.py). The
difference ``production - finance`` in net sales is split into two parts that add up
exactly, each measured from the warehouse:

- **transformation logic** - production against a recomputation of the period with the
  correct rules from the kept order versions (``int_orders_latest``): a cancelled or
  deleted order counts nothing, a refund counts once. A logic bug (the historical
  ``refund_logic: v1``) or an ETL fault shows here;
- **source** - the recomputation against finance: the shop's orders themselves disagree
  with finance (late or missing orders, a different amount).

Beside it, the cross-system findings of the period from ``int_order_crosscheck`` (order
ids issued twice, payments and shipments without an order, paid orders never reported
shipped, status and amount disagreements with the payment provider), each with its
count and amount: evidence for the source part, and for whoever drafts the restatement.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from restate.engines.base import Engine
from restate.settings import Settings
from restate.validation import reference

MART = "fct_orders_daily"
KEPT = "int_orders_latest"
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
    recomputed: Decimal
    logic: Decimal
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


def explain(engine: Engine, settings: Settings, start: date, end: date) -> Explanation:
    prod, meta = settings.prod_schema, settings.meta_schema
    production = _money(
        engine.scalar(
            f"select sum(net_sales) from {prod}.{MART} where order_date between ? and ?", [start, end]
        )
    )
    # The correct rules, written here from the data contract rather than taken from the
    # model, so a fault in the model shows instead of being reproduced.
    recomputed = _money(
        engine.scalar(
            f"""select sum(case when status = 'cancelled' or deleted_at is not null then 0
                    else gross_amount - refund_amount end)
            from {prod}.{KEPT} where order_date between ? and ?""",
            [start, end],
        )
    )
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
        logic=production - recomputed,
        source=None if finance is None else recomputed - finance,
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
        )
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
    if found.source is not None:
        lines.append(f"  source (recomputation - finance): {found.source:+,}")
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
