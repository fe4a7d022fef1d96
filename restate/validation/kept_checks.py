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
- a ``failed_rows`` check with a ``query`` only when the contract declares it so with
  ``attributes: {restate_partition_local: true}`` (its rows then depend only on the rows
  of the dates they report, and it reads the period through ``${var.period_start}`` and
  ``${var.period_end}``);
- restate's own declared-keys check when the keys include the model's date column.

Which dates changed: those of chunks finished after the previous validation started,
and every date whose rows differ from what the previous validation saw (a per-date sum
of row hashes of each checked relation, stored with the validation): a chunk rewritten
by a resumed run, a refresh for late loads, or a hand edit in the restatement schema
all count. Nothing is kept when the inputs of the checks differ from the previous
validation's (contract files, reference exports as loaded, the contracts' variables),
or when a promotion or rollback has changed production since.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from restate.engines.base import Engine
from restate.settings import Settings

LOCAL_ATTRIBUTE = "restate_partition_local"
# Variables that move with every load without changing what a date's rows are checked against.
_MOVING_VARIABLES = frozenset({"loaded_until", "source_loaded_until"})


def check_key(dataset: str, check_type: str, column: str | None, qualifier: str | None) -> str:
    """A check's identity across validations (Soda's own: dataset, column, type, qualifier)."""
    return f"{dataset}|{(column or '').lower()}|{check_type}|{qualifier or ''}"


def _count_must_be_zero(body: dict[str, Any]) -> bool:
    threshold = body.get("threshold")
    if threshold is None:
        return True
    if not isinstance(threshold, dict) or threshold.get("metric", "count") != "count":
        return False
    bounds = {k for k in threshold if k.startswith("must")}
    return bounds == {"must_be"} and threshold["must_be"] == 0 and not threshold.get("additional")


def is_partition_local(
    check_type: str, body: dict[str, Any] | None, column: str | None, date_column: str | None
) -> bool:
    """Whether a contract check's verdict over a period is the conjunction of its verdicts per date."""
    body = body or {}
    if not isinstance(body, dict) or not _count_must_be_zero(body):
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
            return True
        attributes = body.get("attributes")
        declared = isinstance(attributes, dict) and attributes.get(LOCAL_ATTRIBUTE) is True
        return bool(body.get("query")) and declared
    return False


@dataclass(frozen=True)
class Previous:
    """The restatement's previous validation and what changed since it."""

    validation_id: str
    checked_at: datetime
    inputs: str  # its inputs' fingerprint
    checks: dict[str, dict[str, Any]]  # its checks that passed (not warned), by key
    digests: dict[str, dict[str, str]]  # dataset -> date -> sum of row hashes
    chunk_dates: tuple[date, date] | None  # span of chunks finished since it started

    @property
    def passed(self) -> frozenset[str]:
        return frozenset(self.checks)


def previous_validation(engine: Engine, settings: Settings, restatement_id: int) -> Previous | None:
    """The last finished validation of the restatement, when nothing since rules out
    keeping its passed checks (a promotion or rollback); None: check everything."""
    meta = settings.meta_schema
    rows = engine.query_dicts(
        f"select validation_id, checked_at, result_json from {meta}.validations "
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
        if not kept.get("inputs") or not isinstance(result.get("checks"), list):
            return None  # stored before kept checks existed
        checked_at = row["checked_at"]
        since = engine.scalar(
            f"select count(*) from {meta}.changelog where recorded_at >= ? "
            "and event in ('promoted', 'rolled_back')",
            [checked_at],
        )
        if since:
            return None  # production changed under every restatement's checked relation
        span = engine.query(
            f"select min(period_start), max(period_end) from {meta}.restatement_partitions "
            "where restatement_id = ? and (finished_at is null or finished_at >= ?)",
            [restatement_id, checked_at],
        )[0]
        return Previous(
            validation_id=str(row["validation_id"]),
            checked_at=checked_at,
            inputs=str(kept["inputs"]),
            checks={
                check_key(c["dataset"], c["check_type"], c.get("column"), c.get("qualifier")): c
                for c in result["checks"]
                if c.get("outcome") == "passed"
            },
            digests={k: dict(v) for k, v in (kept.get("digests") or {}).items()},
            chunk_dates=(span[0], span[1]) if span[0] is not None else None,
        )
    return None


def inputs_fingerprint(
    engine: Engine, settings: Settings, contract_texts: list[tuple[str, str]], variables: dict[str, Any]
) -> str:
    """What every check read besides the restated rows: contract files, the reference
    exports as loaded (their fingerprints and table summaries), the variables."""
    digest = hashlib.sha256()
    for name, text in sorted(contract_texts):
        digest.update(f"{name}\0{text}\0".encode())
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
    """Per date of [start, end], the sum of the checked relation's row hashes (and rows)."""
    hashed = ", ".join(columns)
    rows = engine.query(
        f"select {date_column}, count(*), sum(hash({hashed})) from {relation} "
        f"where {date_column} between ? and ? group by 1",
        [start, end],
    )
    return {str(d): f"{n}:{h}" for d, n, h in rows}


def changed_span(previous: Previous, digests: dict[str, dict[str, str]]) -> tuple[date, date] | None:
    """The span from the first to the last date that changed since ``previous``: a chunk
    finished since, or rows that differ from what it saw. None: nothing changed."""
    dates: set[date] = set()
    if previous.chunk_dates is not None:
        dates.update(previous.chunk_dates)
    for dataset, now in digests.items():
        then = previous.digests.get(dataset)
        if then is None:
            raise LookupError(dataset)  # not checked then: nothing of it can be kept
        for day in now.keys() | then.keys():
            if now.get(day) != then.get(day):
                dates.add(date.fromisoformat(day))
    return (min(dates), max(dates)) if dates else None
