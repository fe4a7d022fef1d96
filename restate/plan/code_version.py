"""Which code built production: one logic version per model, recorded with every load.

A model's *logic version* is the sha256 of its SQL together with the dbt vars that
change what it computes (e.g. a logic-version var): the old and the fixed refund logic are
the same file run with a different var, and must count as different code.
Restatement plans record the same inputs (``code_version`` in the plan), so a
promotion's logic version is derived from the plan.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from restate.dbt.runner import DbtProject
from restate.engines.base import Engine
from restate.settings import Settings
from restate.state.clock import utc_now


def logic_version(model_sha256: str, dbt_vars: dict[str, Any]) -> str:
    payload = json.dumps({"sql": model_sha256, "vars": dbt_vars}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def current_versions(settings: Settings, manifest: dict[str, Any]) -> dict[str, str]:
    """The logic version each model would be built with now."""
    dbt_vars = settings.dbt_vars()
    hashes = DbtProject.model_code_hashes(manifest)
    return {name: logic_version(sha, dbt_vars) for name, sha in hashes.items()}


def record_load_build(engine: Engine, settings: Settings, load_id: str, manifest: dict[str, Any]) -> None:
    """Remember the code a production load ran with (one row per model)."""
    dbt_vars = settings.dbt_vars()
    now = utc_now()
    for name, sha in sorted(DbtProject.model_code_hashes(manifest).items()):
        engine.execute(
            f"insert into {settings.meta_schema}.model_builds values (?, ?, 'load', ?, ?, ?, ?)",
            [load_id, now, name, logic_version(sha, dbt_vars), sha, json.dumps(dbt_vars, sort_keys=True)],
        )


@dataclass(frozen=True)
class ProdBuild:
    """The last computation of a model's production rows for a period."""

    model: str
    logic_version: str
    source: str  # "load:<id>" or "restatement:<id>"
    built_at: datetime
    dbt_vars: dict[str, Any]


def last_prod_build(
    engine: Engine, settings: Settings, model: str, start: date, end: date
) -> ProdBuild | None:
    """The newest of: the last load's build, and a promotion covering part of [start, end]."""
    meta = settings.meta_schema
    candidates: list[ProdBuild] = []
    for row in engine.query_dicts(
        f"select build_id, built_at, logic_version, dbt_vars_json from {meta}.model_builds "
        "where model = ? order by built_at desc limit 1",
        [model],
    ):
        candidates.append(
            ProdBuild(
                model,
                row["logic_version"],
                f"load:{row['build_id']}",
                row["built_at"],
                json.loads(row["dbt_vars_json"]),
            )
        )
    for row in engine.query_dicts(
        f"select restatement_id, updated_at, code_version from {meta}.restatements "
        "where status = 'promoted' and period_start <= ? and period_end >= ? "
        "order by updated_at desc limit 1",
        [end, start],
    ):
        code = json.loads(row["code_version"] or "{}")
        sha = (code.get("model_sha256") or {}).get(model)
        if sha:
            dbt_vars = code.get("dbt_vars") or {}
            candidates.append(
                ProdBuild(
                    model,
                    logic_version(sha, dbt_vars),
                    f"restatement:{row['restatement_id']}",
                    row["updated_at"],
                    dbt_vars,
                )
            )
    return max(candidates, key=lambda b: b.built_at, default=None)


def _said(value: Any) -> str:
    """A setting's value as a reader reads it: plain for scalars, JSON otherwise."""
    if value is None:
        return "the project default"
    if isinstance(value, str | int | float | bool):
        return str(value)
    return json.dumps(value, sort_keys=True, default=str)


def commit_summary(folder: Any, commit: str | None) -> str | None:
    """A commit as people name it: “subject” by author on date (None outside git)."""
    import re
    import subprocess

    if not commit or not re.fullmatch(r"[0-9a-f]{7,64}", commit):
        return None  # only a commit id reaches git's command line
    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%s%x1f%an%x1f%cs", commit, "--"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    subject, _, rest = out.partition("\x1f")
    author, _, day = rest.partition("\x1f")
    if not subject:
        return None
    subject = subject if len(subject) <= 100 else subject[:97] + "..."
    return f"“{subject}” by {author} on {day}"


def change_summary(engine: Engine, settings: Settings, restatement_id: int) -> str | None:
    """In words, no hashes: per restated model, what differs between the code that built
    its as-reported numbers (the last load before the restatement was planned) and the code
    the restatement ran (its SQL, its dbt settings), and the dbt project's commit it ran."""
    meta = settings.meta_schema
    rows = engine.query_dicts(
        f"select created_at, plan_json from {meta}.restatements where restatement_id = ?", [restatement_id]
    )
    if not rows:
        return None
    plan = json.loads(rows[0]["plan_json"])
    code = plan.get("code_version") or {}
    new_vars = code.get("dbt_vars") or {}
    shas = code.get("model_sha256") or {}
    parts = []
    for model in plan.get("models") or []:
        before = engine.query_dicts(
            f"select built_at, model_sha256, dbt_vars_json from {meta}.model_builds "
            "where model = ? and built_at <= ? order by built_at desc limit 1",
            [model, rows[0]["created_at"]],
        )
        if not before:
            continue
        old_vars = json.loads(before[0]["dbt_vars_json"] or "{}")
        changes = []
        if shas.get(model) and shas[model] != before[0]["model_sha256"]:
            changes.append("its SQL was changed")
        changes += [
            f"the setting {k} was {_said(old_vars.get(k))}, is now {_said(new_vars.get(k))}"
            for k in sorted(set(old_vars) | set(new_vars))
            if old_vars.get(k) != new_vars.get(k)
        ]
        built = f"{before[0]['built_at']:%Y-%m-%d %H:%M} UTC"
        if changes:
            parts.append(f"{model}: {' and '.join(changes)} since production was last built ({built})")
        else:
            parts.append(f"{model}: the same code as production (built {built}); recomputed for its data")
    commit = commit_summary(settings.dbt_project_dir, code.get("git_commit"))
    if commit:
        parts.append(f"restated with the dbt project as of the commit {commit}")
    return "; ".join(parts) or None
