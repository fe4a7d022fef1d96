"""Checks a restatement's re-validation keeps for the partitions that did not change.

A check is *partition-local* when its verdict over a period is the conjunction of its
verdicts over the period's dates: it fails on a date only because of that date's rows.
Such a check that passed in the restatement's previous validation is run again only on
the dates that changed since (the span from the first to the last of them); on every
other date its earlier pass stands. Every other check (a row count, a schema, a
percentage threshold, a monthly total, a query nobody declared local) runs on the whole
period, always.

Partition-local, read off the contract:
- ``missing`` and ``invalid`` checks, and ``failed_rows`` checks with an ``expression``,
  whose threshold is "no failing row" (no threshold, or ``must_be: 0`` on the count);
- a ``duplicate`` check whose columns include the dataset's date column, same threshold;
- restate's own declared-keys check (the keys always include the date column);
- a ``failed_rows`` check with a ``query`` only when the contract declares it so with
  ``attributes: {restate_partition_local: true}`` - its rows for a date depend only on
  that date's rows, and ``${var.period_start}`` / ``${var.period_end}`` in it only bound
  which dates it reads and reports - and when every relation it reads is one whose
  changes are tracked here (the checked relation, a restated model, a reference export).
None of them when it reads (its variables resolved) what can change with no row
changing: ``${env.*}`` or ``${soda.*}`` values, the load watermark variables, the clock,
random values or sequences, another dataset (``valid_reference_data``), a subquery, or a
``column_expression``; nor any check of a contract whose filter does, or where two
checks of any contracts share one identity.

The built-in checks are narrowed by a predicate added to the contract's filter that
leaves out only the period's dates outside the span (the period variables keep their
whole-period values); a declared query by setting the period variables in its own text.

Which dates changed: those of chunks whose state (status, attempts, finish time) differs
from the one the previous validation recorded, and every date whose rows differ from what
it saw (a per-date count and sum of row hashes of each restated relation, stored with the
validation): a chunk rewritten by a resumed run, a refresh for late loads, or a hand edit
of a restated model all count. Nothing is kept when the inputs of the checks differ from
the previous validation's (contract files and the environment values they name, reference
exports as loaded, the contracts' variables, the project's declarations), or when a
promotion or rollback was recorded since.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from restate.engines.base import Engine
from restate.settings import Settings

LOCAL_ATTRIBUTE = "restate_partition_local"
# Variables that move with every load: left out of the inputs' fingerprint, so a check
# reading them is never partition-local.
_MOVING_VARIABLES = frozenset({"loaded_until", "source_loaded_until"})
_ENV = re.compile(r"\$\{ *env\.([A-Za-z_][A-Za-z_0-9]*) *\}")
# What a query may not read to be kept: values that change with no restated row changing
# (environment, clock, randomness, session variables, the load watermark).
_MOVING = (
    r"\$\{ *(env|soda)\.|\b(source_)?loaded_until\b|\bcurrent_(timestamp|date|time)\b|\blocaltime(stamp)?\b"
    r"|\b(now|today|random|rand|uuid|gen_random_uuid|getvariable|sysdate|getdate|systimestamp|nextval|seq4|seq8)\s*\("
)
_ENV_OR_SODA = re.compile(_MOVING, re.IGNORECASE)
# What any other check may not read besides: other datasets and subqueries (DuckDB's
# FROM-first ones too).
_HAZARDS = re.compile(_MOVING + r"|valid_reference_data|column_expression|\bselect\b|\bfrom\b", re.IGNORECASE)
# Keys of a check that hold no SQL: their words are never hazards.
_PROSE = frozenset({"name", "qualifier", "attributes", "description"})


def check_key(dataset: str, check_type: str, column: str | None, qualifier: str | None) -> str:
    """A check's identity across validations: dataset, column, type and qualifier (a
    contract where two checks share one is never narrowed)."""
    return f"{dataset}|{(column or '').lower()}|{check_type}|{qualifier or ''}"


def hazardous(text: str) -> bool:
    """Whether contract text reads something that can change with no restated row changing."""
    return bool(_HAZARDS.search(text))


def reads_only(sql: str, allowed: set[str], dialect: str) -> bool:
    """Whether every table the query reads is in ``allowed`` (schema.table, lower case).
    False for SQL that does not parse; a table without its schema that is not a CTE in
    scope, in another database, or quoted on Snowflake (another object than the unquoted
    name); a table function, a lateral join, time travel (an older version of a table) or
    a schema-qualified function (a macro or UDF may read anything)."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.optimizer.scope import traverse_scope

    try:
        tree = sqlglot.parse_one(sql, read=dialect)
        scopes = traverse_scope(tree)
    except (sqlglot.errors.SqlglotError, RecursionError):
        return False
    for node in tree.walk():
        if isinstance(node, exp.TableFromRows | exp.Lateral | exp.HistoricalData):
            return False
        if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Func):
            return False
        if isinstance(node, exp.Table) and not isinstance(node.this, exp.Identifier):
            return False  # a function in FROM (read_parquet(...), generate_series, ...)
        if isinstance(node, exp.Table) and node.db and f"{node.db}.{node.name}".lower() not in allowed:
            return False  # wherever it stands, scoped or not
    for scope in scopes:
        for source in scope.sources.values():
            if not isinstance(source, exp.Table):
                continue  # a CTE or a subquery of this query
            if source.catalog or not source.db:
                return False
            parts = [p for p in source.parts if isinstance(p, exp.Identifier)]
            if dialect == "snowflake" and any(p.quoted for p in parts):
                return False
            if f"{source.db}.{source.name}".lower() not in allowed:
                return False
    return True


def _count_must_be_zero(body: dict[str, Any]) -> bool:
    threshold = body.get("threshold")
    if threshold is None:
        return True
    if not isinstance(threshold, dict) or threshold.get("metric", "count") != "count":
        return False
    bounds = {k for k in threshold if k.startswith("must")}
    zero = threshold.get("must_be")
    exact_zero = isinstance(zero, int | float) and not isinstance(zero, bool) and zero == 0
    return bounds == {"must_be"} and exact_zero and not threshold.get("additional")


def is_partition_local(
    check_type: str,
    body: dict[str, Any] | None,
    column: str | None,
    date_column: str | None,
    column_spec: dict[str, Any] | None = None,
) -> bool:
    """Whether a contract check's verdict over a period is the conjunction of its verdicts
    per date, from its definition (a declared query's relations are checked by the caller)."""
    body = body or {}
    if not isinstance(body, dict) or not _count_must_be_zero(body):
        return False
    query = body.get("query") if check_type == "failed_rows" else None
    rest = {k: v for k, v in body.items() if k != "query" and k not in _PROSE}
    if hazardous(json.dumps(rest, default=str)) or (query and _ENV_OR_SODA.search(str(query))):
        return False
    if column_spec and hazardous(
        json.dumps({k: v for k, v in column_spec.items() if k not in ("checks", *_PROSE)}, default=str)
    ):
        return False
    if check_type in ("missing", "invalid"):
        return column is not None
    if check_type == "duplicate":
        columns = body.get("columns")
        if column is not None or date_column is None or not isinstance(columns, list):
            return False
        return date_column.lower() in [str(c).lower() for c in columns]
    if check_type == "failed_rows":
        if body.get("expression"):
            return not query
        attributes = body.get("attributes")
        declared = isinstance(attributes, dict) and attributes.get(LOCAL_ATTRIBUTE) is True
        return bool(body.get("query")) and declared
    return False


@dataclass(frozen=True)
class Previous:
    """The restatement's previous validation: what it checked, and what it saw."""

    validation_id: str
    inputs: str  # its inputs' fingerprint
    checks: dict[str, dict[str, Any]]  # its checks that passed (not warned), by key
    digests: dict[str, dict[str, str]]  # dataset -> date -> rows and sum of row hashes
    chunks: dict[str, str]  # chunk id -> its state then (status, attempts, finish time)

    def keeps(self, key: str) -> bool:
        return key in self.checks


def chunk_states(
    engine: Engine, settings: Settings, restatement_id: int
) -> dict[str, tuple[str, date, date]]:
    """Each chunk's state (compared for equality, never by clock) and its dates."""
    rows = engine.query(
        f"select chunk_id, status, attempts, finished_at, period_start, period_end "
        f"from {settings.meta_schema}.restatement_partitions where restatement_id = ?",
        [restatement_id],
    )
    return {str(c): (f"{st}|{a}|{f}", s, e) for c, st, a, f, s, e in rows}


def log_version(engine: Engine, settings: Settings) -> int:
    """The changelog's last version: promotions and rollbacks after it are seen by version."""
    return int(engine.scalar(f"select coalesce(max(version), 0) from {settings.meta_schema}.changelog") or 0)


def previous_validation(engine: Engine, settings: Settings, restatement_id: int) -> Previous | None:
    """The last finished validation of the restatement, when nothing since rules out
    keeping its passed checks (a promotion or rollback); None: check everything."""
    meta = settings.meta_schema
    rows = engine.query_dicts(
        f"select validation_id, result_json from {meta}.validations "
        "where restatement_id = ? and scope = 'restatement' order by checked_at desc limit 5",
        [restatement_id],
    )
    for row in rows:
        try:
            result = json.loads(row["result_json"] or "{}")
        except ValueError:
            return None
        if "pending" in result:
            continue  # a refresh's placeholder: the one before it is the last that checked
        kept = result.get("kept") or {}
        if not kept.get("inputs") or "log_version" not in kept or not isinstance(result.get("checks"), list):
            return None  # stored before kept checks existed, or by production's validation
        since = engine.scalar(
            f"select count(*) from {meta}.changelog "
            "where version > ? and event in ('promoted', 'rolled_back')",
            [int(kept["log_version"])],
        )
        if since:
            return None  # production changed under the relations the checks read
        return Previous(
            validation_id=str(row["validation_id"]),
            inputs=str(kept["inputs"]),
            checks={
                check_key(c["dataset"], c["check_type"], c.get("column"), c.get("qualifier")): c
                for c in result["checks"]
                if c.get("outcome") == "passed"
            },
            digests={k: dict(v) for k, v in (kept.get("digests") or {}).items()},
            chunks={str(k): str(v) for k, v in (kept.get("chunks") or {}).items()},
        )
    return None


def inputs_fingerprint(
    engine: Engine,
    settings: Settings,
    contract_texts: list[tuple[str, str]],
    variables: dict[str, Any],
    declarations: list[str],
) -> str:
    """What every check read besides the restated rows: contract files and the environment
    values they name, the reference exports as loaded (their fingerprints and table
    summaries), the variables, the project's declarations (keys, date and entity columns)."""
    digest = hashlib.sha256()
    for name, text in sorted(contract_texts):
        digest.update(f"{name}\0{text}\0".encode())
        for env in sorted(set(_ENV.findall(text))):
            digest.update(f"{env}={os.environ.get(env)}\0".encode())
    for declaration in sorted(declarations):
        digest.update(f"{declaration}\0".encode())
    if engine.relation_exists(settings.meta_schema, "reference_loads"):
        for export, fingerprint, summary in sorted(
            engine.query(f"select export, fingerprint, summary from {settings.meta_schema}.reference_loads")
        ):
            digest.update(f"{export}\0{fingerprint}\0{summary}\0".encode())
    steady = {k: str(v) for k, v in variables.items() if k not in _MOVING_VARIABLES}
    digest.update(json.dumps(steady, sort_keys=True).encode())
    return digest.hexdigest()


def date_digests(
    engine: Engine, relation: str, columns: list[str], date_column: str, start: date, end: date
) -> dict[str, str]:
    """Per date of [start, end], the rows and the sum of their hashes in the relation."""
    hashed = ", ".join(columns)
    day = f"cast({date_column} as date)"
    rows = engine.query(
        f"select {day}, count(*), sum(hash({hashed})) from {relation} where {day} between ? and ? group by 1",
        [start, end],
    )
    return {str(d): f"{n}:{h}" for d, n, h in rows}


def changed_span(
    previous: Previous, digests: dict[str, dict[str, str]], chunks: dict[str, tuple[str, date, date]]
) -> tuple[date, date] | None:
    """The span from the first to the last date that changed since ``previous``: a chunk
    whose state differs, or rows that differ from what it saw. None: nothing changed."""
    dates: set[date] = set()
    for chunk_id, (state, first, last) in chunks.items():
        if previous.chunks.get(chunk_id) != state:
            dates.update((first, last))
    for dataset, now in digests.items():
        then = previous.digests.get(dataset)
        if then is None:
            raise LookupError(dataset)  # not checked then: nothing of it can be kept
        for day in now.keys() | then.keys():
            if now.get(day) != then.get(day):
                dates.add(date.fromisoformat(day))
    return (min(dates), max(dates)) if dates else None
