"""Root-cause evidence for the Northstar example: why production's net sales differ from
finance's export for a period, and what the other systems say about those orders.

This is the Northstar project's explainer (``RESTATE_EXPLAINER`` =
``examples.northstar.explain:explain_period``; restate/validation/explainer.py). The
difference ``production - finance`` in net sales is split into four parts that add up
exactly, each measured from the warehouse:

- **transformation logic** - production against a recomputation of the period with the
  correct rules from the kept order versions (``int_orders_latest``, as of the last
  load): a cancelled or deleted order counts nothing, a refund counts once. A logic bug
  (the historical ``refund_logic: v1``) shows here;
- **ETL** - the kept versions against the latest valid version of each order the landing
  held at the last load (``stg_shop__orders``; see below): versions the pipeline lost,
  duplicated or left stale. Orders whose files the landing no longer holds count their kept version on
  both sides;
- **late data** - the landing as of the last load against the landing now: versions
  that landed after production's last load;
- **source** - the landing now against finance: the shop's orders themselves disagree
  with finance (missing orders, a different amount).

"Held by the last load" is what no later load reads again: versions older than the
lookback window, and the versions in it the load kept. A version in the window it did not
keep counts as late (the next load's lookback picks it up); an ETL fault inside the window
shows once the window has passed.

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
    recomputed_landed: Decimal  # ... over the landing's latest versions as of the last load
    recomputed_now: Decimal  # ... over the landing's latest versions now
    logic: Decimal
    etl: Decimal
    late: Decimal
    late_versions: int  # orders whose latest version the last load did not hold
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
    # The same rules over the landing itself, the latest valid version per order ranked as
    # int_orders_latest ranks them: as of the last load (what the pipeline should have
    # kept) and now (files landed since included: check them first). An order the landing
    # held nothing of by the last load (its files pruned) counts its kept version in both,
    # so pruned history is never mistaken for an ETL fault or for late data.
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
    rank = (
        "row_number() over (partition by order_id order by updated_at desc nulls last, "
        "ingested_at desc nulls last, source_file desc nulls last, source_row_number desc nulls last)"
    )
    now_row = engine.query(
        f"""
        with staged as (
            select {columns} from {prod}.{STAGED} where rejection_reason is null
        ),
        -- What the last load held: versions older than its lookback window (no load
        -- reads them again), and those in the window it kept. A version in the window it
        -- did not keep is late: the next load's lookback still picks it up.
        landed_by_load as (
            select * from staged where ingested_at <= ?
            union all
            select s.* from staged as s
            join {prod}.{KEPT} as k
                on k.order_id = s.order_id and k.source_file = s.source_file
                and k.source_row_number = s.source_row_number
            where s.ingested_at > ? and s.ingested_at <= ?
        ),
        only_kept as (
            select {columns} from {prod}.{KEPT}
            where order_id not in (select order_id from landed_by_load)
        ),
        as_of_load as (
            select * from (select *, {rank} as version_rank from (
                select * from landed_by_load union all select * from only_kept))
            where version_rank = 1
        ),
        as_of_now as (
            select * from (select *, {rank} as version_rank from (
                select * from staged union all select * from only_kept))
            where version_rank = 1
        )
        select
            (select sum({NET}) from as_of_load where order_date between ? and ?),
            (select sum({NET}) from as_of_now where order_date between ? and ?),
            -- orders whose latest version now is one the last load did not hold
            (select count(*) from as_of_now as v where v.order_date between ? and ? and not exists (
                select 1 from (
                    select order_id, source_file, source_row_number from landed_by_load
                    union all
                    select order_id, source_file, source_row_number from only_kept
                ) as h
                where h.order_id = v.order_id and h.source_file = v.source_file
                    and h.source_row_number = v.source_row_number))
        """,
        [next_window, next_window, watermark, start, end, start, end, start, end],
    )[0]
    recomputed_landed, recomputed_now = _money(now_row[0]), _money(now_row[1])
    late_versions = int(now_row[2] or 0)
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
    if settings.engine != "duckdb":
        # dbt/northstar/macros/landed_parquet.sql stages the payment and partner files on
        # DuckDB only: elsewhere those relations are empty, and no finding is not "all clear".
        notes.append(
            f"payments and shipments are not staged on {settings.engine}: the cross-system findings "
            "see the shop's orders only"
        )
    found = Explanation(
        start=start,
        end=end,
        production=production,
        finance=finance,
        recomputed=recomputed,
        recomputed_now=recomputed_now,
        recomputed_landed=recomputed_landed,
        logic=production - recomputed,
        etl=recomputed - recomputed_landed,
        late=recomputed_landed - recomputed_now,
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
            abs(found.etl),
            f"ETL: the pipeline kept other order versions than the landing held at its last load "
            f"(lost, duplicated or stale orders), {found.etl:+,}",
        ),
        (
            abs(found.late),
            f"late data: {found.late_versions:,} orders changed by versions landed after production's "
            "last load "
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
    lines.append(f"  ETL (kept versions - the landing as of the last load): {found.etl:+,}")
    lines.append(
        f"  late data (the landing as of the last load - now, {found.late_versions:,} orders changed "
        f"since): {found.late:+,}"
    )
    if found.source is not None:
        lines.append(f"  source (the landing now - finance): {found.source:+,}")
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
