"""The model contract: what restate knows about a user's model, read from the dbt manifest only.

A model is restatable when it declares ``meta.restate`` (model config or yml ``config: meta:``):
its partition date column, an optional entity column, its grain keys, the metrics to diff,
optional diff dimensions, the upstream model (and its processing-time column) it is computed
from, the model listing the partitions a load recomputed, and an optional quarantine model.
Missing or contradictory declarations raise :class:`ContractError`, naming the model and the key.

A dbt source table may declare a landing (``meta.restate.landing``): the folder its files land
in, its typed columns and which of them give a row's processing time.

The manifest is the only input: nothing here names a model or a column of any project.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# A column type in a landing declaration: a plain SQL type name, optional (precision, scale).
COLUMN_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_ ]{0,40}(\(\s*\d{1,3}\s*(,\s*\d{1,3}\s*)?\))?$")
KNOWN_KEYS = frozenset(
    {
        "partitioned",
        "date_column",
        "entity_column",
        "keys",
        "metrics",
        "dimensions",
        "upstream",
        "touched_dates",
        "quarantine",
    }
)


class ContractError(ValueError):
    """A model's or source's restate declaration is missing or contradictory; names model and key."""


@dataclass(frozen=True)
class Upstream:
    """The model a restatable mart is computed from, with its processing-time column."""

    model: str
    processed_at: str


@dataclass(frozen=True)
class Quarantine(Upstream):
    """The model holding the rows a load rejected, with the column that says why."""

    reason: str | None = None


@dataclass(frozen=True)
class ModelContract:
    """One restatable model's declaration (``meta.restate``)."""

    model: str
    unique_id: str
    date_column: str
    keys: tuple[str, ...]
    metrics: tuple[str, ...]
    upstream: Upstream
    entity_column: str | None = None
    dimensions: tuple[str, ...] = ()
    touched_dates: str | None = None
    quarantine: Quarantine | None = None

    @property
    def other_keys(self) -> tuple[str, ...]:
        """Grain keys beyond the date and entity columns (e.g. a unit or a channel)."""
        return tuple(k for k in self.keys if k not in (self.date_column, self.entity_column))


@dataclass(frozen=True)
class LandingContract:
    """A dbt source whose rows arrive as files in the landing (DuckDB engine)."""

    source: str
    schema: str
    identifier: str
    folder: str
    columns: dict[str, str] = field(default_factory=dict)
    processed_at: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProjectContract:
    """Every declaration of one dbt project, and why other models are not restatable."""

    models: dict[str, ModelContract]
    not_restatable: dict[str, str]
    landing: LandingContract | None = None

    def model(self, name: str) -> ModelContract:
        if name in self.models:
            return self.models[name]
        why = self.not_restatable.get(name, "it is not a model of this dbt project")
        raise ContractError(f"{name}: not restatable: {why}")


def _identifier(model: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not IDENTIFIER.match(value):
        raise ContractError(f"{model}: meta.restate.{key} must be a column or model name, got {value!r}")
    return value


def _names(model: str, key: str, value: Any, *, required: bool) -> tuple[str, ...]:
    if value is None or value == []:
        if required:
            raise ContractError(f"{model}: meta.restate.{key} is missing (a list of column names)")
        return ()
    if isinstance(value, str) or not isinstance(value, list):
        raise ContractError(f"{model}: meta.restate.{key} must be a list of column names, got {value!r}")
    names = tuple(_identifier(model, key, v) for v in value)
    if len(set(names)) != len(names):
        raise ContractError(f"{model}: meta.restate.{key} names a column twice: {list(names)}")
    return names


def _upstream(model: str, key: str, value: Any, *, required: bool) -> Upstream | None:
    if value is None:
        if required:
            raise ContractError(
                f"{model}: meta.restate.{key} is missing ({{model: <upstream model>, "
                "processed_at: <its processing-time column>}})"
            )
        return None
    if not isinstance(value, dict) or "model" not in value or "processed_at" not in value:
        raise ContractError(
            f"{model}: meta.restate.{key} must be {{model: <name>, processed_at: <column>}}, got {value!r}"
        )
    return Upstream(
        _identifier(model, f"{key}.model", value["model"]),
        _identifier(model, f"{key}.processed_at", value["processed_at"]),
    )


def _quarantine(model: str, value: Any) -> Quarantine | None:
    base = _upstream(model, "quarantine", value, required=False)
    if base is None:
        return None
    reason = value.get("reason")
    return Quarantine(
        base.model,
        base.processed_at,
        _identifier(model, "quarantine.reason", reason) if reason is not None else None,
    )


def _columns(node: dict[str, Any]) -> set[str]:
    return {str(c).lower() for c in (node.get("columns") or {})}


def parse_model(node: dict[str, Any], model_names: set[str]) -> ModelContract:
    """One model's contract from its manifest node; ContractError names what is wrong."""
    name = str(node["name"])
    decl = (node.get("config") or {}).get("meta", {}).get("restate")
    if decl is None:
        decl = (node.get("meta") or {}).get("restate")
    if not isinstance(decl, dict):
        raise ContractError(f"{name}: meta.restate is missing (see docs/your-project.md)")
    unknown = sorted(set(decl) - KNOWN_KEYS)
    if unknown:
        raise ContractError(f"{name}: meta.restate has unknown keys {unknown} (known: {sorted(KNOWN_KEYS)})")
    if "date_column" not in decl:
        raise ContractError(f"{name}: meta.restate.date_column is missing (the partition date column)")
    date_column = _identifier(name, "date_column", decl["date_column"])
    entity = decl.get("entity_column", decl.get("account_column"))
    entity_column = _identifier(name, "entity_column", entity) if entity is not None else None
    keys = _names(name, "keys", decl.get("keys"), required=True)
    metrics = _names(name, "metrics", decl.get("metrics"), required=True)
    dimensions = _names(name, "dimensions", decl.get("dimensions"), required=False)
    if date_column not in keys:
        raise ContractError(f"{name}: meta.restate.keys must contain date_column {date_column!r}")
    if entity_column is not None and entity_column not in keys:
        raise ContractError(f"{name}: meta.restate.keys must contain entity_column {entity_column!r}")
    if entity_column == date_column:
        raise ContractError(f"{name}: meta.restate.entity_column cannot be the date_column")
    overlap = sorted(set(metrics) & set(keys))
    if overlap:
        raise ContractError(f"{name}: meta.restate.metrics {overlap} are also keys")
    stray = sorted(set(dimensions) - set(keys) | set(dimensions) & {date_column, entity_column})
    if stray:
        raise ContractError(
            f"{name}: meta.restate.dimensions {stray} must be keys other than the date and entity columns"
        )
    declared = _columns(node)
    if declared:  # columns documented in yml: the declaration must name them
        missing = [c for c in (*keys, *metrics) if c.lower() not in declared]
        if missing:
            raise ContractError(f"{name}: meta.restate names columns the model does not document: {missing}")
    upstream = _upstream(name, "upstream", decl.get("upstream"), required=True)
    assert upstream is not None
    touched = decl.get("touched_dates")
    touched_dates = _identifier(name, "touched_dates", touched) if touched is not None else None
    quarantine = _quarantine(name, decl.get("quarantine"))
    for key, ref in (
        ("upstream.model", upstream.model),
        ("touched_dates", touched_dates),
        ("quarantine.model", quarantine.model if quarantine else None),
    ):
        if ref is not None and ref not in model_names:
            raise ContractError(
                f"{name}: meta.restate.{key} names {ref!r}, which is not a model of the project"
            )
    materialized = (node.get("config") or {}).get("materialized")
    if materialized not in ("incremental", "table"):
        raise ContractError(
            f"{name}: declares meta.restate but is materialized as {materialized!r}; "
            "a restatable model is an incremental table (incremental_strategy='replace_partitions')"
        )
    return ModelContract(
        model=name,
        unique_id=str(node["unique_id"]),
        date_column=date_column,
        keys=keys,
        metrics=metrics,
        upstream=upstream,
        entity_column=entity_column,
        dimensions=dimensions,
        touched_dates=touched_dates,
        quarantine=quarantine,
    )


def parse_landing(source: dict[str, Any]) -> LandingContract | None:
    """A source table's landing declaration, or None when it declares none."""
    decl = ((source.get("config") or {}).get("meta") or {}).get("restate") or (source.get("meta") or {}).get(
        "restate"
    )
    if not isinstance(decl, dict) or "landing" not in decl:
        return None
    name = f"{source['source_name']}.{source['name']}"
    landing = decl["landing"]
    if not isinstance(landing, dict):
        raise ContractError(f"source {name}: meta.restate.landing must be a mapping (folder, processed_at)")
    folder = landing.get("folder")
    if not isinstance(folder, str) or not IDENTIFIER.match(folder):
        raise ContractError(f"source {name}: meta.restate.landing.folder must be a plain folder name")
    columns: dict[str, str] = {}
    for col in (source.get("columns") or {}).values():
        col_name, col_type = str(col.get("name")), col.get("data_type")
        if not IDENTIFIER.match(col_name):
            raise ContractError(f"source {name}: column {col_name!r} is not a plain column name")
        if not isinstance(col_type, str) or not COLUMN_TYPE.match(col_type):
            raise ContractError(f"source {name}: column {col_name} needs a data_type (e.g. varchar)")
        columns[col_name] = col_type
    if not columns:
        raise ContractError(f"source {name}: a landing needs its columns with their data_type")
    processed = landing.get("processed_at")
    processed_at = _names(f"source {name}", "landing.processed_at", processed, required=True)
    missing = [c for c in processed_at if c not in columns]
    if missing:
        raise ContractError(
            f"source {name}: meta.restate.landing.processed_at names undeclared columns {missing}"
        )
    return LandingContract(
        source=name,
        schema=_identifier(name, "schema", source.get("schema")),
        identifier=_identifier(name, "identifier", source.get("identifier") or source["name"]),
        folder=folder,
        columns=columns,
        processed_at=processed_at,
    )


def read_contract(manifest: dict[str, Any], *, strict: bool = False) -> ProjectContract:
    """Every restatable model of the project (and why the others are not).

    A model that declares ``meta.restate`` wrongly is listed with the error as its reason;
    ``strict`` raises instead (planning a restatement of it)."""
    nodes = [n for n in manifest["nodes"].values() if n.get("resource_type") == "model"]
    names = {str(n["name"]) for n in nodes}
    models: dict[str, ModelContract] = {}
    not_restatable: dict[str, str] = {}
    for node in sorted(nodes, key=lambda n: str(n["name"])):
        name = str(node["name"])
        declared = ((node.get("config") or {}).get("meta") or {}).get("restate") or (
            node.get("meta") or {}
        ).get("restate")
        if declared is None:
            materialized = (node.get("config") or {}).get("materialized")
            not_restatable[name] = (
                f"materialized as a {materialized}: recomputed whole from its parents"
                if materialized in ("view", "ephemeral")
                else "declares no meta.restate (date_column, keys, metrics, upstream)"
            )
            continue
        try:
            models[name] = parse_model(node, names)
        except ContractError as exc:
            if strict:
                raise
            not_restatable[name] = str(exc).removeprefix(f"{name}: ")
    landings = [c for s in (manifest.get("sources") or {}).values() if (c := parse_landing(s)) is not None]
    if len(landings) > 1:
        raise ContractError(
            f"more than one source declares meta.restate.landing: {[x.source for x in landings]}"
        )
    return ProjectContract(models, not_restatable, landings[0] if landings else None)


def contract_to_json(c: ModelContract) -> dict[str, Any]:
    """The contract as stored with a plan (what was declared when it was planned)."""
    return {
        "model": c.model,
        "unique_id": c.unique_id,
        "date_column": c.date_column,
        "entity_column": c.entity_column,
        "keys": list(c.keys),
        "metrics": list(c.metrics),
        "dimensions": list(c.dimensions),
        "upstream": {"model": c.upstream.model, "processed_at": c.upstream.processed_at},
        "touched_dates": c.touched_dates,
        "quarantine": (
            {
                "model": c.quarantine.model,
                "processed_at": c.quarantine.processed_at,
                "reason": c.quarantine.reason,
            }
            if c.quarantine
            else None
        ),
    }


def contract_from_json(data: dict[str, Any]) -> ModelContract:
    """A stored contract, its names checked again (a stored plan is warehouse data too)."""
    name = str(data["model"])
    q = data.get("quarantine")
    return ModelContract(
        model=_identifier(name, "model", name),
        unique_id=str(data["unique_id"]),
        date_column=_identifier(name, "date_column", data["date_column"]),
        keys=_names(name, "keys", data["keys"], required=True),
        metrics=_names(name, "metrics", data["metrics"], required=True),
        upstream=Upstream(
            _identifier(name, "upstream.model", data["upstream"]["model"]),
            _identifier(name, "upstream.processed_at", data["upstream"]["processed_at"]),
        ),
        entity_column=(
            _identifier(name, "entity_column", data["entity_column"]) if data.get("entity_column") else None
        ),
        dimensions=_names(name, "dimensions", data.get("dimensions") or [], required=False),
        touched_dates=(
            _identifier(name, "touched_dates", data["touched_dates"]) if data.get("touched_dates") else None
        ),
        quarantine=_quarantine(name, q) if q else None,
    )


# Macros dbt resolves from the root project only, that a restatable project must route to
# the restate package (dbt/restate/README.md): without the first, a restatement run would
# build into the production schema.
REQUIRED_SHIMS = {
    "generate_schema_name": "restate.generate_schema_name",
    "get_incremental_replace_partitions_sql": "restate.get_incremental_replace_partitions_sql",
}


def missing_shims(manifest: dict[str, Any]) -> list[str]:
    """The root-project shims that are missing or do not call the restate package."""
    root = manifest.get("metadata", {}).get("project_name")
    macros = manifest.get("macros") or {}
    missing = []
    for name, target in REQUIRED_SHIMS.items():
        macro = macros.get(f"macro.{root}.{name}") if root else None
        if macro is None or target not in str(macro.get("macro_sql") or ""):
            missing.append(name)
    return missing
