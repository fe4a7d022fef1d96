"""Restatement plans: model closure, partition chunks, affected exposures, estimates."""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from restate.contract.entities import EntityIdError, check_entity_ids
from restate.contract.exposures import Exposure, downstream_exposures
from restate.contract.project import check_target
from restate.contract.spec import (
    ContractError,
    ModelContract,
    contract_from_json,
    contract_to_json,
    missing_shims,
    read_contract,
)
from restate.engines.base import Engine
from restate.plan.cost import estimate_cost
from restate.settings import PROJECT_ROOT, Settings
from restate.state import changelog


class PlanError(ValueError):
    """The request cannot be planned as given; the message says why and what to do."""


@dataclass(frozen=True)
class Chunk:
    """One unit of recompute: a partition date range x one entity bucket."""

    chunk_id: str
    start: date
    end: date
    bucket: int
    buckets: int

    def dbt_var(self, entities: list[str] | None, entity_pattern: str) -> dict[str, Any]:
        # The dbt macro checks every entity against entity_pattern again before quoting it.
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "bucket": self.bucket,
            "buckets": self.buckets,
            "entities": entities or [],
            "entity_pattern": entity_pattern,
        }


@dataclass
class Plan:
    restatement_id: int
    selector: str
    models: list[str]
    follow_views: list[str]
    period_start: date
    period_end: date
    accounts: list[str] | None
    reason: str
    ticket: str | None
    requested_by: str
    requires_approval: bool
    chunks: list[Chunk]
    exposures: list[Exposure]
    source_watermark: datetime | None
    code_version: dict[str, Any]
    estimate: dict[str, Any] = field(default_factory=dict)
    # Each restated table's contract as declared when it was planned (restate/contract/spec.py).
    contracts: dict[str, ModelContract] = field(default_factory=dict)

    @property
    def restate_schema(self) -> str:
        return f"restate_{self.restatement_id}"

    def contract(self, model: str) -> ModelContract:
        if model not in self.contracts:
            raise PlanError(
                f"restatement {self.restatement_id}: no contract stored for {model}; plan it again"
            )
        return self.contracts[model]

    def to_json(self) -> dict[str, Any]:
        body = {k: v for k, v in asdict(self).items() if k != "contracts"}
        body["contracts"] = {m: contract_to_json(c) for m, c in self.contracts.items()}
        return json.loads(json.dumps(body, default=str))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        wm = data.get("source_watermark")
        return cls(
            restatement_id=int(data["restatement_id"]),
            selector=data["selector"],
            models=list(data["models"]),
            follow_views=list(data["follow_views"]),
            period_start=date.fromisoformat(data["period_start"]),
            period_end=date.fromisoformat(data["period_end"]),
            accounts=data.get("accounts"),
            reason=data["reason"],
            ticket=data.get("ticket"),
            requested_by=data["requested_by"],
            requires_approval=bool(data["requires_approval"]),
            chunks=[
                Chunk(
                    c["chunk_id"],
                    date.fromisoformat(c["start"]),
                    date.fromisoformat(c["end"]),
                    int(c["bucket"]),
                    int(c["buckets"]),
                )
                for c in data["chunks"]
            ],
            exposures=[Exposure(**e) for e in data["exposures"]],
            source_watermark=datetime.fromisoformat(wm) if wm and wm != "None" else None,
            code_version=data["code_version"],
            estimate=data.get("estimate", {}),
            contracts={m: contract_from_json(c) for m, c in (data.get("contracts") or {}).items()},
        )


@dataclass(frozen=True)
class PlanRequest:
    selector: str
    start: date
    end: date
    reason: str
    requested_by: str
    ticket: str | None = None
    accounts: list[str] | None = None
    allow_closed_period: bool = False
    allow_over_budget: bool = False
    require_approval: bool | None = None


def _model_nodes(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["unique_id"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}


def select_models(manifest: dict[str, Any], selector: str) -> list[str]:
    """Model unique ids named by a selector: `name`, `name+` (with descendants), `+name`."""
    models = _model_nodes(manifest)
    by_name = {n["name"]: uid for uid, n in models.items()}
    selected: set[str] = set()
    for part in selector.replace(",", " ").split():
        name = part.strip("+")
        if name not in by_name:
            known = ", ".join(sorted(by_name))
            raise PlanError(f"unknown model {name!r} in selector; known models: {known}")
        selected.add(by_name[name])
    return sorted(selected)


def downstream_closure(manifest: dict[str, Any], roots: list[str]) -> list[str]:
    """Roots plus every model downstream of them, in dependency order."""
    models = _model_nodes(manifest)
    child_map: dict[str, list[str]] = manifest["child_map"]
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        uid = stack.pop()
        if uid in seen or uid not in models:
            continue
        seen.add(uid)
        stack.extend(child_map.get(uid, []))
    order: list[str] = []

    def visit(uid: str) -> None:
        if uid in order:
            return
        for parent in models[uid]["depends_on"]["nodes"]:
            if parent in seen:
                visit(parent)
        order.append(uid)

    for uid in sorted(seen):
        visit(uid)
    return order


def make_chunks(start: date, end: date, chunk_days: int, buckets: int) -> list[Chunk]:
    """Month-aligned date ranges of at most chunk_days, times account buckets.

    Month alignment keeps a monthly figure inside one date range, so a month's
    numbers are never half old, half new within a chunk boundary.
    """
    if end < start:
        raise PlanError(f"--end {end} is before --start {start}")
    chunks = []
    cursor = start
    while cursor <= end:
        next_month = (cursor.replace(day=1) + timedelta(days=32)).replace(day=1)
        stop = min(end, next_month - timedelta(days=1), cursor + timedelta(days=chunk_days - 1))
        for b in range(buckets):
            cid = f"{cursor:%Y%m%d}-{stop:%Y%m%d}-b{b}of{buckets}"
            chunks.append(Chunk(cid, cursor, stop, b, buckets))
        cursor = stop + timedelta(days=1)
    return chunks


def git_commit(folder: Path = PROJECT_ROOT) -> str | None:
    """The commit checked out where `folder` lies, or None outside a git repository."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _rows_in_scope(engine: Engine, settings: Settings, c: ModelContract, table: str, req: PlanRequest) -> int:
    """Rows of production's `table` in the requested period (and entities), by c's columns."""
    where = f"{c.date_column} between ? and ?"
    params: list[Any] = [req.start, req.end]
    if req.accounts and c.entity_column:
        where += f" and {c.entity_column} in ({', '.join('?' for _ in req.accounts)})"
        params += list(req.accounts)
    sql = f"select count(*) from {settings.prod_schema}.{table} where {where}"
    return int(engine.scalar(sql, params) or 0)


def _upstream_rows(engine: Engine, settings: Settings, c: ModelContract, req: PlanRequest) -> int | None:
    """Rows of the model's upstream in the requested scope (None before the first load)."""
    if not engine.relation_exists(settings.prod_schema, c.upstream.model):
        return None
    return _rows_in_scope(engine, settings, c, c.upstream.model, req)


def _rows_in_production(engine: Engine, settings: Settings, c: ModelContract, req: PlanRequest) -> int:
    """Rows production holds in the period (and entities): what a restatement would replace."""
    if not engine.relation_exists(settings.prod_schema, c.model):
        return 0
    return _rows_in_scope(engine, settings, c, c.model, req)


def estimate(
    engine: Engine,
    settings: Settings,
    contracts: list[ModelContract],
    req: PlanRequest,
    chunks: list[Chunk],
) -> dict[str, Any]:
    """Rows and runtime from the upstream rows in the period; credits and dollars on Snowflake."""
    rows = 0
    upstream_relation: str | None = None
    for c in contracts:
        counted = _upstream_rows(engine, settings, c, req)
        if counted is not None:
            rows += counted
            upstream_relation = upstream_relation or f"{settings.prod_schema}.{c.upstream.model}"
    seconds = rows / settings.rows_per_second + len(chunks) * settings.chunk_overhead_s
    out: dict[str, Any] = {
        "source_rows": rows,
        "chunks": len(chunks),
        "estimated_seconds": round(seconds, 1),
    }
    if settings.engine == "snowflake":
        bytes_per_row = settings.snowflake_bytes_per_row
        if bytes_per_row is None and upstream_relation:
            schema, _, table = upstream_relation.rpartition(".")
            bytes_per_row = engine.bytes_per_row(schema, table)
        cost = estimate_cost(
            source_rows=rows,
            bytes_per_row=bytes_per_row or DEFAULT_BYTES_PER_ROW,
            chunks=len(chunks),
            warehouse_size=settings.warehouse_size,
            mb_per_s_xsmall=settings.snowflake_mb_per_s_xsmall,
            chunk_overhead_s=settings.chunk_overhead_s,
            concurrency=settings.chunk_concurrency,
            credit_price_usd=settings.credit_price_usd,
            budget_usd=settings.budget_usd,
        )
        out.update(cost.as_dict())
        out["estimated_seconds"] = round(cost.wall_clock_hours * 3600, 1)
    return out


# Bytes per row when the warehouse reports no table size (an empty or emulated table).
DEFAULT_BYTES_PER_ROW = 200.0


def check_accounts(
    engine: Engine, settings: Settings, accounts: list[str], contracts: list[ModelContract]
) -> None:
    """Every entity id matches the declared pattern and exists in each restated model's upstream."""
    if not any(accounts):  # `--entities ""` (an empty shell variable) must not mean all
        raise PlanError("--entities names no entity; leave it out to restate every entity")
    try:
        check_entity_ids(accounts, settings.entity_id_pattern)
    except EntityIdError as exc:
        raise PlanError(str(exc)) from exc
    for c in contracts:
        if c.entity_column is None:
            raise PlanError(
                f"{c.model} declares no meta.restate.entity_column, so it cannot be restated by entity; "
                "leave out --entities or narrow the selector"
            )
        upstream = f"{settings.prod_schema}.{c.upstream.model}"
        if not engine.relation_exists(settings.prod_schema, c.upstream.model):
            raise PlanError(f"{upstream} does not exist yet: run `restate load` first")
        found = {
            row[0]
            for row in engine.query(
                f"select distinct {c.entity_column} from {upstream} "
                f"where {c.entity_column} in ({', '.join('?' for _ in accounts)})",
                list(accounts),
            )
        }
        missing = sorted(set(accounts) - found)
        if missing:
            raise PlanError(
                f"{c.entity_column} values not in {upstream}: {', '.join(missing)} "
                "(list them with `restate entities`)"
            )


def build_plan(engine: Engine, settings: Settings, manifest: dict[str, Any], req: PlanRequest) -> Plan:
    """Resolve the request into a stored plan (not yet written)."""
    from restate.dbt.runner import DbtProject
    from restate.ingest.loads import last_watermark

    if settings.close_date and req.start < settings.close_date and not req.allow_closed_period:
        raise PlanError(
            f"period starts {req.start}, before the close date {settings.close_date}: "
            "restating a closed period needs --allow-closed-period"
        )
    from restate.state.duties import DutyError, plan_requires_approval

    try:  # closed periods and the production engine need an approver (restate.state.duties)
        requires_approval = plan_requires_approval(settings, req.require_approval, req.start)
    except DutyError as exc:
        raise PlanError(str(exc)) from exc
    nodes = _model_nodes(manifest)
    selected = select_models(manifest, req.selector)
    closure = downstream_closure(manifest, selected)
    try:
        project = read_contract(manifest)
    except ContractError as exc:
        raise PlanError(str(exc)) from exc
    shims = missing_shims(manifest)
    if shims:
        raise PlanError(
            f"the dbt project does not route {', '.join(shims)} to the restate package, so a "
            "restatement could not build into its own schema; add macros/restate_shims.sql "
            "(docs/your-project.md, step 1)"
        )
    try:
        check_target(settings, manifest)
    except ContractError as exc:
        raise PlanError(str(exc)) from exc
    tables, views = [], []
    for uid in closure:
        node = nodes[uid]
        materialized = node["config"]["materialized"]
        if materialized == "view":
            views.append(node["name"])
        elif node["name"] in project.models:
            tables.append(node["name"])
        else:
            why = project.not_restatable.get(node["name"], "it declares no meta.restate")
            where = "is selected" if uid in selected else f"is downstream of {req.selector}"
            raise PlanError(
                f"{node['name']} ({materialized}) {where} but cannot be "
                f"restated by partition: {why}; narrow the selector or declare its contract"
            )
    if not tables:
        raise PlanError(f"selector {req.selector!r} names no restatable model (see `restate models`)")
    contracts = {t: project.models[t] for t in tables}
    if req.accounts is not None:
        check_accounts(engine, settings, req.accounts, list(contracts.values()))

    buckets = settings.account_buckets if all(c.entity_column for c in contracts.values()) else 1
    chunks = make_chunks(req.start, req.end, settings.chunk_days, buckets)
    est = estimate(engine, settings, list(contracts.values()), req, chunks)
    if est["source_rows"] == 0 and not any(
        _rows_in_production(engine, settings, c, req) for c in contracts.values()
    ):
        scope = f" for {', '.join(req.accounts)}" if req.accounts else ""
        raise PlanError(
            f"nothing to restate: no row of {', '.join(contracts)} or its upstream falls in "
            f"{req.start}..{req.end}{scope}; check the dates (and --entities)"
        )
    if settings.engine == "snowflake" and est["usd"] > settings.budget_usd and not (req.allow_over_budget):
        raise PlanError(
            f"estimated ${est['usd']:,.0f} exceeds the budget of ${settings.budget_usd:,.0f}: "
            "narrow the period/accounts or pass --allow-over-budget"
        )
    rid = int(
        engine.scalar(f"select coalesce(max(restatement_id), 0) + 1 from {settings.meta_schema}.restatements")
    )
    hashes = DbtProject(settings).model_code_hashes(manifest)
    return Plan(
        restatement_id=rid,
        selector=req.selector,
        models=tables,
        follow_views=views,
        period_start=req.start,
        period_end=req.end,
        accounts=req.accounts,
        reason=req.reason,
        ticket=req.ticket,
        requested_by=req.requested_by,
        requires_approval=requires_approval,
        chunks=chunks,
        exposures=downstream_exposures(manifest, closure),
        source_watermark=last_watermark(engine, settings.meta_schema),
        code_version={
            # The user's dbt project's commit (the code restated), and restate's own.
            "git_commit": git_commit(settings.dbt_project_dir),
            "restate_commit": git_commit(PROJECT_ROOT),
            "dbt_vars": settings.dbt_vars(),
            "model_sha256": {name: hashes[name] for name in tables + views if name in hashes},
        },
        estimate=est,
        contracts=contracts,
    )


def store_plan(engine: Engine, settings: Settings, plan: Plan) -> int:
    """Persist the plan, its pending chunks and the 'planned' changelog entry atomically."""
    meta = settings.meta_schema
    now = datetime.now(UTC).replace(tzinfo=None)
    body = plan.to_json()
    with engine.transaction():
        engine.execute(
            f"""insert into {meta}.restatements values
            (?, ?, 'planned', ?, ?, ?, ?, ?, ?, ?, ?, null, null, ?, ?, ?, ?, ?, ?)""",
            [
                plan.restatement_id,
                now,
                plan.selector,
                ",".join(plan.models),
                plan.period_start,
                plan.period_end,
                ",".join(plan.accounts) if plan.accounts else None,
                plan.reason,
                plan.ticket,
                plan.requested_by,
                plan.requires_approval,
                plan.source_watermark,
                json.dumps(plan.code_version, sort_keys=True),
                json.dumps(body, sort_keys=True),
                plan.restate_schema,
                now,
            ],
        )
        for c in plan.chunks:
            engine.execute(
                f"insert into {meta}.restatement_partitions (restatement_id, chunk_id, "
                "period_start, period_end, bucket, buckets, status) "
                "values (?, ?, ?, ?, ?, ?, 'pending')",
                [plan.restatement_id, c.chunk_id, c.start, c.end, c.bucket, c.buckets],
            )
        changelog.append(
            engine,
            meta,
            "planned",
            {
                "models": plan.models,
                "follow_views": plan.follow_views,
                "period": [plan.period_start, plan.period_end],
                "accounts": plan.accounts,
                "reason": plan.reason,
                "ticket": plan.ticket,
                "chunks": len(plan.chunks),
                "exposures": [e.name for e in plan.exposures],
                "source_watermark": plan.source_watermark,
                "code_version": plan.code_version,
                "estimate": plan.estimate,
            },
            restatement_id=plan.restatement_id,
            actor=plan.requested_by,
        )
    return plan.restatement_id


def load_plan(engine: Engine, settings: Settings, restatement_id: int) -> Plan:
    rows = engine.query(
        f"select plan_json from {settings.meta_schema}.restatements where restatement_id = ?",
        [restatement_id],
    )
    if not rows:
        raise PlanError(f"no restatement with id {restatement_id} (see `restate status`)")
    plan = Plan.from_json(json.loads(rows[0][0]))
    if not plan.contracts:
        # Planned before plans stored their contracts: today's declarations of its models.
        from restate.dbt.runner import DbtProject

        try:
            project = read_contract(DbtProject(settings).manifest())
            plan.contracts = {m: project.model(m) for m in plan.models}
        except ContractError as exc:
            raise PlanError(f"restatement {restatement_id}: {exc}") from exc
    if plan.accounts is not None:
        # The stored plan is warehouse data too: check its ids again before any SQL sees them.
        try:
            check_entity_ids(plan.accounts, settings.entity_id_pattern)
        except EntityIdError as exc:
            raise PlanError(f"restatement {restatement_id}: {exc}") from exc
    return plan
