"""The user's dbt project as restate sees it: its manifest's contract (restate/contract/spec.py)."""

from __future__ import annotations

from typing import Any

from restate.contract.spec import ContractError, ProjectContract, read_contract
from restate.dbt.runner import DbtProject
from restate.settings import Settings


def project_contract(settings: Settings, dbt: DbtProject | None = None) -> ProjectContract:
    """Every restatable model and the landing the project declares (parses the project)."""
    manifest = (dbt or DbtProject(settings)).manifest()
    check_target(settings, manifest)
    return read_contract(manifest)


def check_target(settings: Settings, manifest: dict[str, Any]) -> None:
    """Refuse a dbt target that builds the restatable models somewhere other than where
    restate reads production: loads would build one place and be checked in another."""
    for node in manifest.get("nodes", {}).values():
        config = node.get("config") or {}
        if node.get("resource_type") != "model" or not (config.get("meta") or {}).get("restate"):
            continue
        name, schema = node["name"], str(node.get("schema") or "")
        if schema.lower() != settings.prod_schema.lower():
            raise ContractError(
                f"the dbt target builds {name} into schema {schema!r} but restate reads "
                f"production from {settings.prod_schema!r}: set RESTATE_PROD_SCHEMA={schema} "
                "(or make the profile's schema RESTATE_PROD_SCHEMA)"
            )
        database = str(node.get("database") or "")
        if settings.engine == "duckdb" and database and database != settings.warehouse_path.stem:
            raise ContractError(
                f"the dbt target builds {name} into the DuckDB database {database!r} but "
                f"restate reads {settings.warehouse_path}: set RESTATE_DUCKDB_PATH to the "
                "profile's path (or point the profile's path at RESTATE_DUCKDB_PATH)"
            )


def default_selector(settings: Settings) -> str | None:
    """RESTATE_DEFAULT_SELECTOR, else every restatable model with its descendants."""
    if settings.default_selector:
        return settings.default_selector
    models = sorted(project_contract(settings).models)
    return " ".join(f"{m}+" for m in models) or None
