"""Root-cause evidence for the billing example: why production differs from finance for a period.

This is the billing project's explainer (``RESTATE_EXPLAINER`` =
``examples.billing.explain:explain_period``; restate/validation/explainer.py): the core only calls
:func:`explain_period` and shows what it returns.

The difference ``prod - finance`` in net revenue (per currency) is split into parts
that add up exactly, each measured from data rather than guessed:

- **late arrivals** - rows ingested after production last computed the period
  (its load watermark): ``ref(watermark) - ref(now)``;
- **transformation logic** - production against a recomputation with the
  *current* logic on the same data (``prod - ref(watermark)``), labelled "model
  code changed" when the logic version that built production differs from the
  current one, and "unexplained production divergence" (an ETL bug, a manual
  edit) when it does not;
- **source residual** - what is left between a full recomputation and finance
  (``ref(now) - finance``): the two systems disagree on the source data itself.

``ref(t)`` is a reference recomputation from the raw landing files, written from
the data contract (docs/contracts.md) rather than from the dbt models, so a bug in
the models shows up instead of being reproduced. The pipeline's removals in the
period are reported beside it, with their own identity ``raw rows = kept +
superseded duplicates + quarantined``: duplicates removed and quarantined rows by
reason (rows and amounts), and schema drift in the landing files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import yaml

from restate.contract.project import project_contract
from restate.contract.spec import ContractError, LandingContract, read_contract
from restate.dbt.runner import DbtProject
from restate.engines.base import Engine
from restate.ingest import landing
from restate.ingest.loads import EPOCH, last_watermark
from restate.plan.code_version import ProdBuild, current_versions, last_prod_build
from restate.settings import Settings
from restate.validation import reference

MODEL = "fct_revenue_daily"
# The declared reference export (examples/billing/reference_exports.yml) this explains.
FINANCE_EXPORT = "finance_revenue"
DEFAULT_REVENUE_LOGIC = "v2"
FAR_FUTURE = datetime(9999, 12, 31)
ACCEPTED_EVENT_TYPES = (
    "subscription_created",
    "plan_changed",
    "invoice_paid",
    "refund_issued",
    "subscription_cancelled",
)
# The raw contract, as column -> type family (docs/contracts.md).
EXPECTED_COLUMNS = {
    "event_id": "string",
    "account_id": "string",
    "event_type": "string",
    "amount": "numeric",
    "currency": "string",
    "event_ts": "timestamp",
    "updated_at": "timestamp",
    "event_ingested_at": "timestamp",
    "customer_email": "string",
}
ZERO = Decimal("0.00")
# Amounts are money only on these; other events may carry 0 or no amount (docs/contracts.md).
MONETARY_EVENT_TYPES = ("invoice_paid", "refund_issued")
# Raw values that quarantine their row when present but not of their type, in this order.
CAST_CHECKED = ("event_ts", "amount", "updated_at", "event_ingested_at")


def project_vars(settings: Settings) -> dict[str, Any]:
    """The vars the dbt project declares (dbt_project.yml), before RESTATE_PROJECT_VARS."""
    path = settings.dbt_project_dir / "dbt_project.yml"
    data = yaml.safe_load(path.read_text()) if path.is_file() else None
    found = data.get("vars") if isinstance(data, dict) else None
    return dict(found) if isinstance(found, dict) else {}


def accepted_currencies(settings: Settings) -> list[str]:
    """The dbt var the staging model validates currencies against (one source of truth)."""
    return [str(c) for c in project_vars(settings).get("accepted_currencies") or []]


def revenue_logic(settings: Settings) -> str:
    """The revenue logic the current code computes: the run's var, else the project's default."""
    default = project_vars(settings).get("revenue_logic", DEFAULT_REVENUE_LOGIC)
    return str(settings.dbt_vars().get("revenue_logic", default))


def finance_export(settings: Settings) -> reference.ReferenceExport:
    """The declared finance export the explanation compares production with."""
    for export in reference.declared(settings):
        if export.name == FINANCE_EXPORT:
            return export
    raise ContractError(
        f"no reference export named {FINANCE_EXPORT} is declared (RESTATE_REFERENCE_EXPORTS): "
        "the billing explainer compares production with it"
    )


@dataclass
class CurrencyAttribution:
    """prod - finance = late_arrivals + transformation_logic + source_residual."""

    currency: str
    prod_net: Decimal
    finance_net: Decimal | None
    difference: Decimal
    late_arrivals: Decimal
    transformation_logic: Decimal
    source_residual: Decimal

    @property
    def adds_up(self) -> bool:
        return self.late_arrivals + self.transformation_logic + self.source_residual == self.difference


@dataclass
class Explanation:
    period_start: date
    period_end: date
    prod_watermark: datetime | None
    currencies: list[CurrencyAttribution]
    rows: dict[str, int]
    duplicates: dict[str, Any]
    quarantine: list[dict[str, Any]]
    schema_drift: list[dict[str, str]]
    code: dict[str, Any]
    verdict: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for row, cur in zip(data["currencies"], self.currencies, strict=True):
            row["adds_up"] = cur.adds_up
        return data


def _rejection_case(accepted_currencies: list[str]) -> str:
    types = ", ".join(f"'{t}'" for t in ACCEPTED_EVENT_TYPES)
    money = ", ".join(f"'{t}'" for t in MONETARY_EVENT_TYPES)
    currencies = ", ".join(f"'{c}'" for c in accepted_currencies)
    unparsed = " ".join(
        f"when raw_{col} is not null and {col} is null then 'bad_{col}'" for col in CAST_CHECKED
    )
    return f"""case
        when event_id is null then 'missing_event_id'
        when account_id is null then 'missing_account_id'
        {unparsed}
        when event_ts is null then 'missing_event_ts'
        when event_type is null or event_type not in ({types}) then 'unknown_event_type'
        when event_type in ({money}) and amount is null then 'missing_amount'
        when event_type in ({money}) and amount <= 0 then 'non_positive_amount'
        when currency is null or currency not in ({currencies}) then 'unsupported_currency'
    end"""


def _ts(value: datetime) -> str:
    return f"cast('{value.isoformat(sep=' ')}' as timestamp)"


def _classified_sql(
    engine: Engine, lc: LandingContract, raw: str, accepted_currencies: list[str], watermark: datetime
) -> str:
    """Typed raw rows with their rejection reason and dedupe ranks (now and at the watermark)."""
    # DuckDB reads files whose column may be a string: a value that does not parse is null.
    cast = "try_cast" if engine.name == "duckdb" else "cast"
    return f"""
    with typed as (
        select
            cast(event_id as varchar) as event_id,
            cast(account_id as varchar) as account_id,
            cast(event_type as varchar) as event_type,
            {cast}(amount as decimal(18, 2)) as amount,
            upper(cast(currency as varchar)) as currency,
            {cast}(event_ts as timestamp) as event_ts,
            {cast}(updated_at as timestamp) as updated_at,
            {cast}(event_ingested_at as timestamp) as event_ingested_at,
            cast({landing.processed_at(engine, lc)} as timestamp) as ingested_at,
            {", ".join(f"landing_rows.{c} as raw_{c}" for c in CAST_CHECKED)}
        from (select * from {raw}) as landing_rows
    ),
    classified as (
        select *, cast(event_ts as date) as event_date,
            {_rejection_case(accepted_currencies)} as rejection_reason
        from typed
    ),
    valid as (
        select *,
            row_number() over (
                partition by event_id
                order by updated_at desc nulls last, ingested_at desc nulls last) as rank_now,
            row_number() over (
                partition by event_id, ingested_at <= {_ts(watermark)}
                order by updated_at desc nulls last, ingested_at desc nulls last) as rank_split
        from classified where rejection_reason is null
    )
    """


def _net(gross: str, refunds: str, logic: str) -> str:
    return gross if logic == "v1" else f"{gross} - {refunds}"


def _reference(
    engine: Engine,
    settings: Settings,
    lc: LandingContract,
    raw: str,
    start: date,
    end: date,
    watermark: datetime,
) -> dict[str, tuple[Decimal, Decimal]]:
    """(net now, net at watermark) per currency, with the current revenue logic."""
    logic = revenue_logic(settings)
    gross_now = "sum(case when rank_now = 1 and event_type = 'invoice_paid' then amount else 0 end)"
    ref_now = "sum(case when rank_now = 1 and event_type = 'refund_issued' then amount else 0 end)"
    at_w = f"ingested_at <= {_ts(watermark)} and rank_split = 1"
    gross_w = f"sum(case when {at_w} and event_type = 'invoice_paid' then amount else 0 end)"
    ref_w = f"sum(case when {at_w} and event_type = 'refund_issued' then amount else 0 end)"
    rows = engine.query(
        _classified_sql(engine, lc, raw, accepted_currencies(settings), watermark)
        + f"""
        select currency, {_net(gross_now, ref_now, logic)}, {_net(gross_w, ref_w, logic)}
        from valid where event_date between ? and ?
        group by currency
        """,
        [start, end],
    )
    return {r[0]: (Decimal(r[1] or 0), Decimal(r[2] or 0)) for r in rows}


def _removals(
    engine: Engine,
    settings: Settings,
    lc: LandingContract,
    raw: str,
    start: date,
    end: date,
    watermark: datetime,
) -> tuple[dict[str, int], dict[str, Any], list[dict[str, Any]]]:
    """Row accounting of the period: raw = kept + superseded + quarantined; late rows."""
    base = _classified_sql(engine, lc, raw, accepted_currencies(settings), watermark)
    counts = engine.query(
        base
        + f"""
        , in_period as (select * from classified where event_date between ? and ?)
        select
            (select count(*) from in_period),
            (select count(*) from valid where rank_now = 1 and event_date between ? and ?),
            (select count(*) from valid where rank_now > 1 and event_date between ? and ?),
            (select coalesce(sum(amount), 0) from valid
                where rank_now > 1 and event_date between ? and ?),
            (select count(*) from in_period where rejection_reason is not null),
            (select count(*) from in_period where ingested_at > {_ts(watermark)}),
            (select count(*) from classified where event_date is null)
        """,
        [start, end, start, end, start, end, start, end],
    )[0]
    quarantine = engine.query_dicts(
        base
        + """
        select rejection_reason as reason, count(*) as rows,
            coalesce(sum(case when amount > 0 then amount end), 0) as amount
        from classified
        where rejection_reason is not null and event_date between ? and ?
        group by rejection_reason order by rejection_reason
        """,
        [start, end],
    )
    rows = {
        "raw": int(counts[0]),
        "kept": int(counts[1]),
        "superseded_duplicates": int(counts[2]),
        "quarantined": int(counts[4]),
        "late": int(counts[5]),
        "undated_quarantined_anywhere": int(counts[6]),
    }
    duplicates = {"rows": int(counts[2]), "amount": Decimal(counts[3] or 0)}
    return rows, duplicates, quarantine


def _family(type_: str | None, converted: str | None, logical: str | None) -> str:
    text = f"{type_} {converted} {logical}".upper()
    if "TIMESTAMP" in text or "DATE" in text:
        return "timestamp"
    if "UTF8" in text or "STRING" in text:
        return "string"
    if any(t in text for t in ("DECIMAL", "INT", "DOUBLE", "FLOAT")):
        return "numeric"
    return text.strip().lower()


def schema_drift(
    engine: Engine, settings: Settings, start: date, end: date, lc: LandingContract | None = None
) -> list[dict[str, str]]:
    """Columns missing, added or of another type in the period's landing files."""
    if engine.name != "duckdb":
        return [{"file": "*", "column": "*", "problem": f"not checked on {engine.name}"}]
    root = settings.landing.rstrip("/")
    lc = lc or landing.landing_of(project_contract(settings))
    landing.refresh(engine, settings, lc)

    def in_period(file_name: str) -> bool:
        part = next((p for p in file_name.split("/") if p.startswith("event_date=")), None)
        return part is None or start <= date.fromisoformat(part.removeprefix("event_date=")) <= end

    # Only the files that passed the landing check can be read; the others are named.
    checked = (
        engine.query(f"select path, status, reason from {settings.meta_schema}.landing_files order by path")
        if engine.relation_exists(settings.meta_schema, "landing_files")
        else []
    )
    accepted = [str(p) for p, status, _ in checked if status == "accepted" and in_period(str(p))]
    drift = [
        {"file": str(p).removeprefix(root + "/"), "column": "*", "problem": f"quarantined: {reason}"}
        for p, status, reason in checked
        if status == "quarantined" and in_period(str(p))
    ]
    if not accepted:
        return drift
    rows = engine.query(
        "select file_name, name, type, converted_type, logical_type "
        "from parquet_schema(?) where name <> 'duckdb_schema'",
        [accepted],
    )
    files: dict[str, dict[str, str]] = {}
    for file_name, name, type_, converted, logical in rows:
        files.setdefault(str(file_name), {})[name] = _family(type_, converted, logical)
    for file_name, columns in sorted(files.items()):
        short = file_name.removeprefix(root + "/")
        for col, family in EXPECTED_COLUMNS.items():
            if col not in columns:
                drift.append({"file": short, "column": col, "problem": "missing"})
            elif columns[col] != family:
                drift.append(
                    {"file": short, "column": col, "problem": f"type {columns[col]}, expected {family}"}
                )
        for col in sorted(set(columns) - set(EXPECTED_COLUMNS) - {"event_date"}):
            drift.append({"file": short, "column": col, "problem": "unexpected column"})
    return drift


def _sums(engine: Engine, sql: str, params: list[Any]) -> dict[str, Decimal]:
    return {r[0]: Decimal(r[1] or 0) for r in engine.query(sql, params)}


def _code(settings: Settings, build: ProdBuild | None, manifest: dict[str, Any] | None) -> dict[str, Any]:
    current = current_versions(settings, manifest).get(MODEL) if manifest else None
    return {
        "model": MODEL,
        "prod_logic_version": build.logic_version if build else None,
        "prod_built_by": build.source if build else None,
        "prod_built_at": build.built_at if build else None,
        "prod_dbt_vars": build.dbt_vars if build else None,
        "current_logic_version": current,
        "current_dbt_vars": settings.dbt_vars(),
        "changed": bool(build and current and build.logic_version != current),
    }


def explain(
    engine: Engine,
    settings: Settings,
    start: date,
    end: date,
    manifest: dict[str, Any] | None = None,
) -> Explanation:
    """Attribute ``prod - finance`` for [start, end] to measurable causes."""
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    prod = settings.prod_schema
    if not engine.relation_exists(prod, MODEL):
        raise ValueError(f"{prod}.{MODEL} does not exist: run `restate load` first")
    if manifest is None:
        manifest = DbtProject(settings).manifest()
    lc = landing.landing_of(read_contract(manifest))
    # Rows landed since the last load are the late arrivals: check their files first.
    landing.refresh(engine, settings, lc)
    raw = landing.relation(engine, lc)
    if raw is None:
        raise ValueError(f"no raw events under {settings.landing}")
    export = finance_export(settings)
    reference.load_reference_exports(engine, settings)
    watermark = last_watermark(engine, settings.meta_schema) or EPOCH

    prod_net = _sums(
        engine,
        f"select currency, sum(net_revenue) from {prod}.{MODEL} "
        "where event_date between ? and ? group by currency",
        [start, end],
    )
    finance = _sums(
        engine,
        f"select currency, sum(net_revenue) from {reference.reference_table(settings, export)} "
        "where date between ? and ? group by currency",
        [start, end],
    )
    recomputed = _reference(engine, settings, lc, raw, start, end, watermark)
    currencies = []
    for cur in sorted(set(prod_net) | set(finance) | set(recomputed)):
        p = prod_net.get(cur, ZERO)
        ref_now, ref_w = recomputed.get(cur, (ZERO, ZERO))
        f = finance.get(cur)
        currencies.append(
            CurrencyAttribution(
                currency=cur,
                prod_net=p,
                finance_net=f,
                difference=p - (f if f is not None else ref_now),
                late_arrivals=ref_w - ref_now,
                transformation_logic=p - ref_w,
                source_residual=(ref_now - f) if f is not None else ZERO,
            )
        )
    rows, duplicates, quarantine = _removals(engine, settings, lc, raw, start, end, watermark)
    if engine.relation_exists(settings.meta_schema, "model_builds"):
        build = last_prod_build(engine, settings, MODEL, start, end)
    else:
        build = None
    result = Explanation(
        period_start=start,
        period_end=end,
        prod_watermark=None if watermark == EPOCH else watermark,
        currencies=currencies,
        rows=rows,
        duplicates=duplicates,
        quarantine=quarantine,
        schema_drift=schema_drift(engine, settings, start, end, lc),
        code=_code(settings, build, manifest),
    )
    result.verdict = verdict(result)
    return result


def logic_change(code: dict[str, Any]) -> str:
    """What changed in the logic that built production, in words (no hash, no repr)."""
    source = str(code.get("prod_built_by") or "")
    kind, _, ident = source.partition(":")
    by = f"restatement #{ident}" if kind == "restatement" else "an incremental load"
    built_at = code.get("prod_built_at")
    when = f" on {built_at:%Y-%m-%d %H:%M} UTC" if isinstance(built_at, datetime) else ""
    old, new = code.get("prod_dbt_vars") or {}, code.get("current_dbt_vars") or {}
    settings = [
        f"{key} was {old.get(key, 'the project default')}, is now {new.get(key, 'the project default')}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]
    what = "; ".join(settings) if settings else f"the SQL of {MODEL} has changed since"
    return f"production's {MODEL} was built{when} by {by} with other logic than today's ({what})"


def verdict(e: Explanation) -> list[str]:
    """One line per cause that moved the numbers, largest first, for the on-call engineer."""
    causes: dict[str, Decimal] = {"late": ZERO, "logic": ZERO, "source": ZERO}
    for c in e.currencies:
        causes["late"] += abs(c.late_arrivals)
        causes["logic"] += abs(c.transformation_logic)
        causes["source"] += abs(c.source_residual)
    lines = []
    for cause, amount in sorted(causes.items(), key=lambda kv: kv[1], reverse=True):
        if amount == 0:
            continue
        if cause == "late":
            lines.append(
                f"late data: {e.rows['late']:,} rows arrived after production last computed "
                f"the period (watermark {e.prod_watermark}); a load or a restatement picks them up"
            )
        elif cause == "logic" and e.code["changed"]:
            lines.append(f"transformation logic: {logic_change(e.code)}: restate the period")
        elif cause == "logic":
            lines.append(
                "ETL bug or manual edit: production differs from a recomputation with the same "
                "logic on the same data"
            )
        else:
            lines.append("source change: the raw data and the finance exports disagree")
    if e.schema_drift:
        lines.append(f"schema drift: {len(e.schema_drift)} column problems in the landing files")
    return lines or ["no difference: production agrees with the finance exports"]


def format_explanation(e: Explanation) -> str:
    """Plain-text report (the CLI prints tables; alerts embed this)."""
    out = [f"Root cause for {e.period_start}..{e.period_end} (prod - finance, net revenue):"]
    for c in e.currencies:
        out.append(
            f"  {c.currency}: difference {c.difference:+,.2f} = late arrivals {c.late_arrivals:+,.2f}"
            f" + transformation logic {c.transformation_logic:+,.2f}"
            f" + source residual {c.source_residual:+,.2f}"
        )
    r = e.rows
    out.append(
        f"  rows: raw {r['raw']:,} = kept {r['kept']:,} + duplicates {r['superseded_duplicates']:,}"
        f" + quarantined {r['quarantined']:,}; late {r['late']:,}"
    )
    for q in e.quarantine:
        out.append(f"  quarantined {q['reason']}: {q['rows']:,} rows, {Decimal(q['amount']):,.2f}")
    out += [f"  -> {line}" for line in e.verdict]
    return "\n".join(out)


def explain_period(engine: Engine, settings: Settings, start: date, end: date) -> tuple[dict[str, Any], str]:
    """The project's explainer hook (restate/validation/explainer.py): the evidence and its text."""
    found = explain(engine, settings, start, end)
    return found.as_dict(), format_explanation(found)
