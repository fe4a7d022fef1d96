"""Atomic promotion and rollback of restated partitions, with a versioned archive."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from restate.contract.spec import ModelContract
from restate.dbt.runner import DbtProject
from restate.engines.base import Engine
from restate.ingest.loads import EPOCH
from restate.partitions.recompute import chunk_cache_key, recompute_chunk, scope_predicate, set_status
from restate.plan.plans import Plan, load_plan
from restate.settings import Settings
from restate.state import changelog, locks
from restate.state.clock import utc_now as _now
from restate.state.faults import crash_point

ARCHIVE_COLUMNS = "archive_version bigint, restatement_id bigint, replaced_at timestamp, is_tombstone boolean"


class GateError(RuntimeError):
    """Promotion refused: validation or approval is missing; the message says which."""


class TransitionError(GateError):
    """The restatement is not in a state that allows this step (e.g. rollback of a
    restatement that is not promoted)."""


@dataclass(frozen=True)
class SwapResult:
    model: str
    archive_version: int
    rows_archived: int
    rows_inserted: int


def archive_table(settings: Settings, model: str) -> str:
    return f"{settings.meta_schema}.archive_{model}"


def grain_keys(contract: ModelContract) -> list[str]:
    """The model's declared grain (meta.restate.keys): one row per key in production."""
    return list(contract.keys)


def ensure_archive(engine: Engine, settings: Settings, contract: ModelContract) -> list[str]:
    """Create the archive table and the as-of view (DDL, outside any transaction)."""
    model = contract.model
    cols = engine.columns(settings.prod_schema, model)
    col_list = ", ".join(cols)
    engine.execute(
        f"create table if not exists {archive_table(settings, model)} as "
        f"select {col_list}, 0::bigint as archive_version, 0::bigint as restatement_id, "
        f"null::timestamp as replaced_at, false as is_tombstone "
        f"from {settings.prod_schema}.{model} where false"
    )
    keys = ", ".join(grain_keys(contract))
    # The version current at time X for a key is the one replaced first after X;
    # tombstones mark keys that did not exist before a swap.
    engine.execute(
        f"""
        create or replace view {settings.prod_schema}.{model}_as_of as
        with versions as (
            select {col_list}, replaced_at as valid_to, is_tombstone, restatement_id
            from {archive_table(settings, model)}
            union all
            select {col_list}, null::timestamp as valid_to, false as is_tombstone,
                null::bigint as restatement_id
            from {settings.prod_schema}.{model}
        ),
        intervals as (
            select *, lag(valid_to) over (partition by {keys} order by valid_to nulls last)
                as valid_from
            from versions
        )
        select {col_list}, valid_from, valid_to, restatement_id as replaced_by_restatement
        from intervals where not is_tombstone
        """
    )
    return cols


def _next_version(engine: Engine, settings: Settings) -> int:
    return int(
        engine.scalar(
            f"select coalesce(max(archive_version), 0) + 1 from {settings.meta_schema}.archive_versions"
        )
    )


def swap_partitions(
    engine: Engine,
    settings: Settings,
    plan: Plan,
    model: str,
    cols: list[str],
    new_rows_sql: str,
    new_rows_params: list[Any],
    action: str,
    exclude_dates: list[date] | None = None,
) -> SwapResult:
    """Archive prod's rows in the plan scope, delete them, insert the new rows.

    Partitions on exclude_dates are left as they are (rollback keeping later loads).
    Must run inside the caller's transaction: readers see all-old or all-new.
    """
    prod = f"{settings.prod_schema}.{model}"
    archive = archive_table(settings, model)
    contract = plan.contract(model)
    where, params = scope_predicate(plan, contract)
    if exclude_dates:
        where += f" and {contract.date_column} not in ({', '.join('?' for _ in exclude_dates)})"
        params = [*params, *exclude_dates]
        new_rows_sql = f"select * from ({new_rows_sql}) n where {where}"
        new_rows_params = [*new_rows_params, *params]
    version = _next_version(engine, settings)
    now = _now()
    col_list = ", ".join(cols)
    keys = grain_keys(contract)
    key_match = " and ".join(f"p.{k} is not distinct from n.{k}" for k in keys)
    engine.execute(
        f"insert into {archive} select {col_list}, ?, ?, ?, false from {prod} where {where}",
        [version, plan.restatement_id, now, *params],
    )
    archived = int(
        engine.scalar(
            f"select count(*) from {archive} where archive_version = ? and not is_tombstone",
            [version],
        )
    )
    null_metrics = ", ".join(f"n.{c}" if c in keys else f"null as {c}" for c in cols)
    engine.execute(
        f"""insert into {archive}
        select {null_metrics}, ?, ?, ?, true
        from ({new_rows_sql}) n
        where not exists (select 1 from {prod} p where {key_match})""",
        [version, plan.restatement_id, now, *new_rows_params],
    )
    engine.execute(f"delete from {prod} where {where}", params)
    engine.execute(
        f"insert into {prod} ({col_list}) select {col_list} from ({new_rows_sql}) n",
        new_rows_params,
    )
    inserted = int(engine.scalar(f"select count(*) from {prod} where {where}", params) or 0)
    engine.execute(
        f"insert into {settings.meta_schema}.archive_versions values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            version,
            plan.restatement_id,
            model,
            action,
            plan.period_start,
            plan.period_end,
            ",".join(plan.accounts) if plan.accounts else None,
            archived,
            inserted,
            now,
        ],
    )
    return SwapResult(model, version, archived, inserted)


def check_gate(engine: Engine, settings: Settings, plan: Plan, approved_by: str | None) -> dict[str, Any]:
    """Validation passed (or was forced) and, when required, a permitted approver is named.

    The approval rules are restate.state.duties' (approver listed, not the requester, not
    whoever forced the validation); a refusal raises duties.DutyError (a GateError).
    """
    from dataclasses import replace

    from restate.state import duties

    meta = settings.meta_schema
    if _status(engine, settings, plan.restatement_id) == "cancelled":
        raise GateError(f"restatement {plan.restatement_id} is cancelled; plan a new one")
    rows = engine.query_dicts(
        f"select passed, forced_by, force_reason, validation_id from {meta}.validations "
        "where restatement_id = ? order by checked_at desc limit 1",
        [plan.restatement_id],
    )
    if not rows:
        raise GateError(
            f"restatement {plan.restatement_id} has no validation result: "
            f"run `restate validate {plan.restatement_id}` first"
        )
    latest = rows[0]
    if not latest["passed"] and not latest["forced_by"]:
        raise GateError(
            f"restatement {plan.restatement_id} failed validation ({latest['validation_id']}); "
            "see `restate validate` for the report, or override with --force --approved-by --reason"
        )
    who = duties.load(engine, settings, plan.restatement_id)
    who = replace(who, requires_approval=who.requires_approval or plan.requires_approval)
    approver = duties.check_promotion(settings, who, approved_by)
    return {
        "validation": latest,
        "approved_by": approver,
        "approved_by_before": who.approved_by,  # the approval that still counts, if any
        "run_by": duties.run_by(settings),
    }


def record_approval(
    engine: Engine,
    settings: Settings,
    restatement_id: int,
    approver: str,
    comment: str | None,
    run_by: str | None = None,
) -> None:
    """Record a permitted approver (restate.state.duties rules) with who ran the command.

    Raises duties.DutyError (a GateError and a ValueError) when the approver may not approve.
    """
    from restate.state import duties

    with engine.transaction():
        name = duties.check_approver(settings, duties.load(engine, settings, restatement_id), approver)
        engine.execute(
            f"update {settings.meta_schema}.restatements set approved_by = ?, "
            "approval_comment = ?, updated_at = ? where restatement_id = ?",
            [name, comment, _now(), restatement_id],
        )
        changelog.append(
            engine,
            settings.meta_schema,
            "approved",
            {"comment": comment, "run_by": run_by or duties.run_by(settings)},
            restatement_id=restatement_id,
            actor=name,
        )


def touched_dates(
    engine: Engine,
    settings: Settings,
    after: datetime | None,
    start: date,
    end: date,
    models: list[str] | None = None,
) -> list[date] | None:
    """Partition dates in [start, end] that loads recomputed after the watermark `after`
    (in any of `models`; rows carried over from the earlier layout, model '*', count for all).

    A load records every date on which any version of an event it saw falls, so a
    correction that moved an event counts on both sides of the move. None means
    unknown (a load after `after` left no record): the caller must assume every date.
    """
    meta = settings.meta_schema
    params: list[Any] = [after or EPOCH]
    later = f"select load_id from {meta}.loads where status = 'success' and ingested_until > ?"
    unrecorded = engine.scalar(
        f"select count(*) from ({later}) l where not exists "
        f"(select 1 from {meta}.load_partitions p where p.load_id = l.load_id)",
        params,
    )
    if unrecorded:
        return None
    in_models = ""
    if models:
        in_models = f" and model in ('*', {', '.join('?' for _ in models)})"
    rows = engine.query(
        f"select distinct partition_date from {meta}.load_partitions "
        f"where load_id in ({later}) and partition_date between ? and ?{in_models} order by 1",
        [*params, start, end, *(models or [])],
    )
    return [r[0] for r in rows]


def late_chunks(engine: Engine, settings: Settings, plan: Plan) -> list[str]:
    """Chunks with a partition that a load recomputed after the plan's watermark."""
    if plan.source_watermark is None:
        return [c.chunk_id for c in plan.chunks]
    dates = touched_dates(
        engine, settings, plan.source_watermark, plan.period_start, plan.period_end, plan.models
    )
    if dates is None:
        return [c.chunk_id for c in plan.chunks]
    return [c.chunk_id for c in plan.chunks if any(c.start <= d <= c.end for d in dates)]


def refresh_late_chunks(engine: Engine, settings: Settings, plan: Plan, dbt: DbtProject) -> list[str]:
    """Recompute the chunks loads changed since the plan's watermark, advance it, and diff
    again; their ids. Callers hold the production write lock, so what they check next
    (validation, promotion) sees the restated schema and production's upstream as of the
    same load."""
    from restate.ingest.loads import last_watermark
    from restate.validation.diff import compute_diff

    refreshed = late_chunks(engine, settings, plan)
    watermark = last_watermark(engine, settings.meta_schema)
    if refreshed:
        _refuse_changed_code(settings, dbt, plan, refreshed)
        by_id = {c.chunk_id: c for c in plan.chunks}
        for chunk_id in refreshed:
            recompute_chunk(settings, engine, dbt, plan, by_id[chunk_id])
        _advance_watermark(engine, settings, plan, watermark)
        compute_diff(engine, settings, plan)
    elif watermark != plan.source_watermark:
        # Loads since the plan touched none of its partitions: the restated schema is
        # current as of them, and nothing needs checking again.
        _advance_watermark(engine, settings, plan, watermark, pending=False)
    return refreshed


def _status(engine: Engine, settings: Settings, restatement_id: int) -> str | None:
    value = engine.scalar(
        f"select status from {settings.meta_schema}.restatements where restatement_id = ?",
        [restatement_id],
    )
    return None if value is None else str(value)


def _advance_watermark(
    engine: Engine, settings: Settings, plan: Plan, watermark: datetime | None, pending: bool = True
) -> None:
    """After refreshing the chunks loads touched, the restated schema reflects the source
    up to `watermark`: record it, and re-key every done chunk (the untouched ones were
    already current), so checks and a resumed run use the new watermark. `pending`: chunks
    were recomputed, so the latest validation becomes a failed placeholder until checked."""
    plan.source_watermark = watermark
    meta = settings.meta_schema
    with engine.transaction():
        engine.execute(
            f"update {meta}.restatements set source_watermark = ?, plan_json = ?, updated_at = ? "
            "where restatement_id = ?",
            [watermark, json.dumps(plan.to_json(), sort_keys=True), _now(), plan.restatement_id],
        )
        for chunk in plan.chunks:
            engine.execute(
                f"update {meta}.restatement_partitions set cache_key = ? "
                "where restatement_id = ? and chunk_id = ? and status = 'done'",
                [chunk_cache_key(plan, chunk.chunk_id), plan.restatement_id, chunk.chunk_id],
            )
        # Until the refreshed result is validated, the latest validation is a failed one:
        # if re-validation errors out or the process dies, no later promotion can reuse
        # the older pass for numbers it never checked.
        if not pending:
            return
        engine.execute(
            f"insert into {meta}.validations (validation_id, restatement_id, scope, checked_at, "
            "passed, result_json) values (?, ?, 'restatement', ?, false, ?)",
            [
                f"refreshed-{uuid.uuid4().hex[:8]}",
                plan.restatement_id,
                _now(),
                json.dumps(
                    {
                        "pending": "chunks were recomputed for loads since the plan and are not validated "
                        f"yet: run `restate validate {plan.restatement_id}`"
                    }
                ),
            ],
        )


def _refuse_changed_code(settings: Settings, dbt: DbtProject, plan: Plan, refreshed: list[str]) -> None:
    """Refreshing chunks with other model code or logic vars than the plan's would publish
    a mix of two versions: refuse, and say what changed."""
    recorded = plan.code_version or {}
    current = DbtProject.model_code_hashes(dbt.manifest())
    changed = [
        name for name, digest in (recorded.get("model_sha256") or {}).items() if current.get(name) != digest
    ]
    if recorded.get("dbt_vars") is not None and recorded["dbt_vars"] != settings.dbt_vars():
        changed.append(f"vars {recorded['dbt_vars']} -> {settings.dbt_vars()}")
    if changed:
        raise GateError(
            f"restatement {plan.restatement_id}: loads since the plan changed chunks "
            f"{', '.join(refreshed)}, but the code differs from the plan's ({', '.join(changed)}); "
            "refreshing them would mix two versions. Plan a new restatement"
        )


def _revalidate(engine: Engine, settings: Settings, plan: Plan, refreshed: list[str]) -> str:
    """Validate the restated schema again after refreshing chunks; the promotion's evidence."""
    from restate.validation.contracts import format_report, run_validation, store_validation
    from restate.validation.kept_checks import previous_validation

    result = run_validation(
        settings,
        engine,
        plan.restate_schema,
        plan.period_start,
        plan.period_end,
        plan.restatement_id,
        # Partition-local checks that passed last time run on the refreshed chunks' dates only.
        previous=previous_validation(engine, settings, plan.restatement_id),
    )
    validation_id = store_validation(engine, settings, result)
    changelog.append(
        engine,
        settings.meta_schema,
        "revalidated" if result.passed else "revalidation_failed",
        {
            "validation_id": validation_id,
            "refreshed_chunks": refreshed,
            "source_watermark": plan.source_watermark,
            "passed": result.passed,
        },
        restatement_id=plan.restatement_id,
    )
    if not result.passed:
        raise GateError(
            f"restatement {plan.restatement_id}: chunks {', '.join(refreshed)} were recomputed for "
            f"loads since the plan and then failed validation ({validation_id}); production is "
            f"unchanged. Report:\n{format_report(result)}"
        )
    return validation_id


def promote(
    engine: Engine,
    settings: Settings,
    plan: Plan,
    approved_by: str | None = None,
    holder: str | None = None,
) -> dict[str, Any]:
    """Under the production write lock: refresh and re-validate every chunk whose inputs
    changed since the plan, then swap every model's partitions in one transaction."""
    from restate.ingest.loads import last_watermark

    if _status(engine, settings, plan.restatement_id) == "promoted":
        return {"status": "already_promoted", "restatement_id": plan.restatement_id}
    engine.set_query_tag(restatement_id=plan.restatement_id, chunk=None, step="promote")
    gate = check_gate(engine, settings, plan, approved_by)
    if approved_by and approved_by != gate["approved_by_before"]:
        record_approval(engine, settings, plan.restatement_id, approved_by, None)
    dbt = DbtProject(settings)
    holder = holder or locks.new_holder(f"promote:{plan.restatement_id}")
    with locks.held(engine, settings.meta_schema, holder):
        # Checked again under the lock: a second promotion that waited for it stops here.
        if _status(engine, settings, plan.restatement_id) == "promoted":
            return {"status": "already_promoted", "restatement_id": plan.restatement_id}
        # So is the gate, on the plan as it is now: a validation or a cancellation that
        # held the lock first may have replaced what was checked above.
        plan = load_plan(engine, settings, plan.restatement_id)
        gate = check_gate(engine, settings, plan, approved_by)
        cols = {m: ensure_archive(engine, settings, plan.contract(m)) for m in plan.models}
        validation_id = gate["validation"]["validation_id"]
        refreshed = refresh_late_chunks(engine, settings, plan, dbt)
        if refreshed:
            validation_id = _revalidate(engine, settings, plan, refreshed)
            engine.set_query_tag(restatement_id=plan.restatement_id, chunk=None, step="promote")
        watermark = last_watermark(engine, settings.meta_schema)
        totals_before = _totals(engine, settings.prod_schema, plan)
        with engine.transaction():
            locks.assert_held(engine, settings.meta_schema, holder)
            swaps = [
                swap_partitions(
                    engine,
                    settings,
                    plan,
                    model,
                    cols[model],
                    *_restated_rows(plan, model),
                    "promote",
                )
                for model in plan.models
            ]
            totals_after = _totals(engine, settings.prod_schema, plan)
            set_status(engine, settings, plan.restatement_id, "promoted")
            version = changelog.append(
                engine,
                settings.meta_schema,
                "promoted",
                {
                    "models": plan.models,
                    "period": [plan.period_start, plan.period_end],
                    "accounts": plan.accounts,
                    "reason": plan.reason,
                    "ticket": plan.ticket,
                    "approved_by": gate["approved_by"],
                    "run_by": gate.get("run_by"),
                    "validation_id": validation_id,
                    "refreshed_chunks": refreshed,
                    "source_watermark": watermark,
                    "archive_versions": {s.model: s.archive_version for s in swaps},
                    "totals_before": totals_before,
                    "totals_after": totals_after,
                },
                restatement_id=plan.restatement_id,
                actor=gate["approved_by"] or plan.requested_by,
            )
            crash_point(settings, "promote_in_transaction")
    crash_point(settings, "promoted")
    return {
        "status": "promoted",
        "restatement_id": plan.restatement_id,
        "changelog_version": version,
        "refreshed_chunks": refreshed,
        "swaps": [s.__dict__ for s in swaps],
        "totals_before": totals_before,
        "totals_after": totals_after,
    }


def _totals(engine: Engine, schema: str, plan: Plan) -> dict[str, str]:
    """Rows and every declared metric's sum per model in the plan's scope (the changelog's
    before/after figures of a promotion)."""
    out: dict[str, str] = {}
    for model in plan.models:
        contract = plan.contract(model)
        where, params = scope_predicate(plan, contract)
        sums = ", ".join(f"sum({m}) as {m}" for m in contract.metrics)
        row = engine.query_dicts(
            f"select count(*) as rows, {sums} from {schema}.{model} where {where}", params
        )[0]
        out.update({f"{model}.{k}": str(v) for k, v in row.items()})
    return out


def _restated_rows(plan: Plan, model: str) -> tuple[str, list[Any]]:
    """The restated schema's rows of the model in the plan's scope, and their params."""
    where, params = scope_predicate(plan, plan.contract(model))
    return f"select * from {plan.restate_schema}.{model} where {where}", params


def later_promotions(engine: Engine, settings: Settings, plan: Plan) -> list[int]:
    """Other restatements promoted after this one over overlapping partitions, still live."""
    rows = engine.query(
        f"""
        select distinct v.restatement_id
        from {settings.meta_schema}.archive_versions v
        join {settings.meta_schema}.restatements r using (restatement_id)
        where v.action = 'promote' and v.restatement_id <> ? and r.status = 'promoted'
          and v.archive_version > (
              select max(archive_version) from {settings.meta_schema}.archive_versions
              where restatement_id = ? and action = 'promote')
          and v.period_start <= ? and v.period_end >= ?
        order by 1 desc
        """,
        [plan.restatement_id, plan.restatement_id, plan.period_end, plan.period_start],
    )
    return [int(r[0]) for r in rows]


def promoted_watermark(engine: Engine, settings: Settings, restatement_id: int) -> datetime | None:
    """The load watermark production had when this restatement was last promoted."""
    rows = engine.query(
        f"select payload_json from {settings.meta_schema}.changelog "
        "where restatement_id = ? and event = 'promoted' order by version desc limit 1",
        [restatement_id],
    )
    if not rows:
        return None
    value = json.loads(rows[0][0]).get("source_watermark")
    return datetime.fromisoformat(value) if value and value != "None" else None


def kept_or_refused(engine: Engine, settings: Settings, plan: Plan, keep_later_loads: bool) -> list[date]:
    """The partitions loads changed since the plan's promotion (kept as loaded by a
    rollback with keep_later_loads); GateError naming them otherwise."""
    since = promoted_watermark(engine, settings, plan.restatement_id)
    touched = touched_dates(engine, settings, since, plan.period_start, plan.period_end, plan.models)
    if touched is None:
        raise GateError(
            f"restatement {plan.restatement_id}: a load since the promotion left no record of "
            "the partitions it changed, so a rollback could drop its events; plan a new "
            "restatement instead"
        )
    if touched and not keep_later_loads:
        shown = ", ".join(str(d) for d in touched[:20]) + (" ..." if len(touched) > 20 else "")
        raise GateError(
            f"loads since restatement {plan.restatement_id} was promoted changed {len(touched)} "
            f"of its partitions ({shown}); restoring the archive would drop their events. "
            f"`restate rollback {plan.restatement_id} --by NAME --keep-later-loads` restores "
            "every other partition and keeps these as loaded"
        )
    return touched


def rollback(
    engine: Engine,
    settings: Settings,
    plan: Plan,
    actor: str,
    reason: str | None = None,
    cascade: bool = False,
    keep_later_loads: bool = False,
    holder: str | None = None,
) -> dict[str, Any]:
    """Restore the partitions archived by this restatement's last promotion, atomically.

    Partitions that loads recomputed after the promotion hold events the archive does
    not have: rollback refuses and names them, or with keep_later_loads restores every
    other partition and leaves those as loaded (recorded in the changelog).
    """
    from restate.plan.plans import load_plan

    status = _status(engine, settings, plan.restatement_id)
    if status != "promoted":
        raise TransitionError(
            f"restatement {plan.restatement_id} is {status or 'unknown'}, not promoted: "
            "there is nothing to roll back"
        )
    engine.set_query_tag(restatement_id=plan.restatement_id, chunk=None, step="rollback")
    later = later_promotions(engine, settings, plan)
    if later and not cascade:
        raise GateError(
            f"restatements {later} were promoted later over the same partitions; roll them "
            "back first or pass --cascade"
        )
    later_plans = [load_plan(engine, settings, rid) for rid in later]
    # Every refusal is found before anything is rolled back: a cascade never stops half way.
    for p in [plan, *later_plans]:
        kept_or_refused(engine, settings, p, keep_later_loads)
    cascaded = [
        rollback(engine, settings, p, actor, reason, True, keep_later_loads, holder) for p in later_plans
    ]
    holder = holder or locks.new_holder(f"rollback:{plan.restatement_id}")
    with locks.held(engine, settings.meta_schema, holder):
        if _status(engine, settings, plan.restatement_id) != "promoted":
            raise TransitionError(f"restatement {plan.restatement_id} was rolled back meanwhile")
        cols = {m: ensure_archive(engine, settings, plan.contract(m)) for m in plan.models}
        touched = kept_or_refused(engine, settings, plan, keep_later_loads)
        with engine.transaction():
            locks.assert_held(engine, settings.meta_schema, holder)
            swaps = []
            for model in plan.models:
                version = engine.scalar(
                    f"select max(archive_version) from {settings.meta_schema}.archive_versions "
                    "where restatement_id = ? and model = ? and action = 'promote'",
                    [plan.restatement_id, model],
                )
                col_list = ", ".join(cols[model])
                swaps.append(
                    swap_partitions(
                        engine,
                        settings,
                        plan,
                        model,
                        cols[model],
                        f"select {col_list} from {archive_table(settings, model)} "
                        "where archive_version = ? and not is_tombstone",
                        [version],
                        "rollback",
                        exclude_dates=touched,
                    )
                )
            set_status(engine, settings, plan.restatement_id, "rolled_back")
            version_no = changelog.append(
                engine,
                settings.meta_schema,
                "rolled_back",
                {
                    "reason": reason,
                    "cascaded": [c["restatement_id"] for c in cascaded],
                    "archive_versions": {s.model: s.archive_version for s in swaps},
                    "kept_as_loaded": [str(d) for d in touched],
                },
                restatement_id=plan.restatement_id,
                actor=actor,
            )
            crash_point(settings, "rollback_in_transaction")
    crash_point(settings, "rolled_back")
    return {
        "status": "rolled_back",
        "restatement_id": plan.restatement_id,
        "changelog_version": version_no,
        "cascaded": cascaded,
        "kept_as_loaded": [str(d) for d in touched],
        "swaps": [s.__dict__ for s in swaps],
    }
