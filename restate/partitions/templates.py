"""Chunk SQL compiled once per restatement, run by the engine for every further chunk.

A chunk through dbt pays dbt's fixed cost per invocation (~0.3 s warm) for a statement
that may take milliseconds. Once the first chunk has built the isolated tables, dbt
compiles the plan's models once with a template chunk (restate.partition_scope renders
its bounds as tokens) and each further chunk runs that SQL with the tokens replaced:
the same delete-then-insert the replace_partitions strategy does, in one transaction.

A model runs this way only when dbt would do exactly that for it: an incremental model
with the replace_partitions strategy, no hooks, whose compiled SQL carries the tokens.
Anything else keeps one dbt invocation per chunk.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from restate.dbt.runner import DbtError, DbtProject, DbtResult
from restate.engines.base import Engine
from restate.plan.plans import Chunk, Plan
from restate.settings import Settings
from restate.sql import Native

START, END, BUCKET = "__restate_chunk_start__", "__restate_chunk_end__", "__restate_chunk_bucket__"
TOKEN_PREFIX = "__restate_chunk_"
HOOKS = ("pre-hook", "post-hook", "pre_hook", "post_hook")

log = logging.getLogger(__name__)


class TemplateError(RuntimeError):
    """A compiled chunk template cannot be used as it is."""


@dataclass(frozen=True)
class ChunkTemplate:
    model: str
    sql: str

    def render(self, chunk: Chunk) -> str:
        """The model's SQL for one chunk: dates and bucket from the plan, never from text."""
        sql = (
            self.sql.replace(START, chunk.start.isoformat())
            .replace(END, chunk.end.isoformat())
            .replace(BUCKET, str(int(chunk.bucket)))
        )
        if TOKEN_PREFIX in sql:
            raise TemplateError(f"{self.model}: a chunk token is left in the compiled SQL")
        return sql.strip().rstrip(";").rstrip()


# Per process: (project, restatement, buckets, code version) -> templates in run order,
# or None when some model must keep going through dbt.
_CACHE: dict[str, list[ChunkTemplate] | None] = {}
_LOCK = threading.Lock()


def template_var(settings: Settings, plan: Plan, chunk: Chunk) -> dict[str, Any]:
    return {
        **chunk.dbt_var(plan.accounts, settings.entity_id_pattern),
        "start": START,
        "end": END,
        "bucket": 0,
        "template": True,
    }


def usable_templates(result: DbtResult, models: list[str], buckets: int) -> list[ChunkTemplate] | None:
    """The compiled models in dependency order, or None if one of them cannot run from
    its compiled SQL alone (not replace_partitions, hooks, or no chunk tokens)."""
    nodes = {n.unique_id.rsplit(".", 1)[-1]: n for n in result.nodes if n.unique_id.startswith("model.")}
    if set(models) - set(nodes):
        return None
    for model in models:
        node = nodes[model]
        config = node.config
        if config.get("materialized") != "incremental" or config.get("incremental_strategy") != (
            "replace_partitions"
        ):
            return None
        if any(config.get(hook) for hook in HOOKS):
            return None
        sql = node.compiled_code or ""
        if START not in sql or END not in sql or (buckets > 1 and BUCKET not in sql):
            return None
    ordered: list[str] = []
    by_id = {nodes[m].unique_id: m for m in models}

    def visit(model: str, seen: frozenset[str]) -> None:
        if model in ordered:
            return
        if model in seen:
            raise TemplateError(f"{model}: dependency cycle among the restated models")
        for parent in nodes[model].depends_on:
            if parent in by_id:
                visit(by_id[parent], seen | {model})
        ordered.append(model)

    for model in models:
        visit(model, frozenset())
    return [ChunkTemplate(model, nodes[model].compiled_code or "") for model in ordered]


def templates_for(
    settings: Settings, engine: Engine, dbt: DbtProject, plan: Plan, chunk: Chunk, vars: dict[str, Any]
) -> list[ChunkTemplate] | None:
    """The plan's chunk templates once every restated table exists in the isolated schema
    (an earlier chunk built it through dbt); None means: run this chunk through dbt."""
    if not all(engine.relation_exists(plan.restate_schema, model) for model in plan.models):
        return None
    if any(TOKEN_PREFIX in str(entity) for entity in plan.accounts or []):
        return None  # a token inside an entity id would be replaced too: dbt per chunk
    # Everything the compiled SQL depends on, installation included (its target folder):
    # two warehouses with the same project and restatement id share nothing.
    key = json.dumps(
        [
            str(dbt.project_dir),
            str(dbt.target_path),
            settings.engine,
            settings.dbt_target,
            plan.restate_schema,
            plan.source_watermark,
            chunk.buckets,
            plan.code_version,
            plan.accounts,
            # The project as it is now (a resumed run after an edit compiles again).
            dbt._project_fingerprint(),
            settings.dbt_vars(),
        ],
        sort_keys=True,
        default=str,
    )
    with _LOCK:
        if key not in _CACHE:
            try:
                compiled = dbt.compile_deferred(
                    plan.models,
                    vars={**vars, "restate_chunk": template_var(settings, plan, chunk)},
                    query_tag=engine.query_tag_for(restatement_id=plan.restatement_id, step="compile"),
                )
                usable = usable_templates(compiled, plan.models, chunk.buckets)
                if usable is not None and not same_columns(engine, plan.restate_schema, chunk, usable):
                    usable = None  # dbt decides, as the model's on_schema_change says
            except (DbtError, TemplateError) as exc:
                # A model that cannot compile with tokens for bounds (it computes with the
                # chunk's dates itself): every chunk keeps going through dbt.
                log.info("restatement %s: chunks run through dbt (%s)", plan.restatement_id, exc)
                usable = None
            _CACHE.clear()  # one restatement at a time per process keeps memory flat
            _CACHE[key] = usable
        return _CACHE[key]


def same_columns(engine: Engine, schema: str, chunk: Chunk, templates: list[ChunkTemplate]) -> bool:
    """Each compiled query returns exactly the columns its isolated table has: the insert
    names the table's columns, so a column added or dropped by the SQL would otherwise
    go unnoticed, where dbt would apply the model's on_schema_change."""
    for template in templates:
        table = {c.lower() for c in engine.columns(schema, template.model)}
        if set(engine.result_columns(template.render(chunk))) != table:
            log.info("%s.%s: the compiled SQL returns other columns than the table", schema, template.model)
            return False
    return True


def run_templates(
    engine: Engine,
    plan: Plan,
    chunk: Chunk,
    templates: list[ChunkTemplate],
    predicate: Any,
) -> None:
    """Replace the chunk's partitions of every restated table in one transaction:
    delete what the chunk covers, insert what the model computes for it.
    `predicate(model)` gives the (sql, params) selecting the chunk's rows of a table."""
    with engine.transaction():
        for template in templates:
            table = f"{plan.restate_schema}.{template.model}"
            columns = ", ".join(
                quote(engine.fold_identifier(c)) for c in engine.columns(plan.restate_schema, template.model)
            )
            where, params = predicate(template.model)
            engine.execute(f"delete from {table} where {where}", params)
            # dbt compiled the model in the warehouse's own dialect: sent as it is.
            engine.execute(
                Native(
                    f"insert into {table} ({columns})\nselect {columns} from (\n{template.render(chunk)}\n) "
                    "as restate_chunk_rows"
                )
            )


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
