"""A restatement's dbt parse without parsing the project again.

The restatement's schema reaches dbt as a parse-time var, so each restatement used to
parse the whole project (seconds, every macro). The runner now parses once with a probe
schema and points the parsed nodes at the restatement's schema. These tests hold that
shortcut to what dbt itself produces: for both example projects the retargeted manifest
equals a real parse with the restatement's schema, field for field; a project that
carries the schema's name anywhere else (here an alias) is parsed for real instead.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from restate.dbt import runner
from restate.dbt.runner import DbtProject
from restate.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.slow

PROJECTS = {"billing": PROJECT_ROOT / "dbt" / "billing", "northstar": PROJECT_ROOT / "dbt" / "northstar"}


def _as_data(manifest: Any) -> dict[str, Any]:
    """The manifest as dbt writes it, without what differs between any two parses."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "created_at"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    data = manifest.writable_manifest().to_dict(omit_none=False)
    data.pop("metadata")
    return strip(json.loads(json.dumps(data, default=str)))


def _verdicts(settings: Settings) -> list[bool]:
    return [
        json.loads(p.read_text())["retargetable"]
        for p in (settings.state_dir / "dbt_parse").glob("retarget-*.json")
    ]


@pytest.mark.parametrize("name", sorted(PROJECTS))
def test_retargeted_parse_equals_dbt_parsing_with_the_restatement_schema(tmp_path: Path, name: str) -> None:
    settings = Settings(data_dir=tmp_path / "wh", dbt_project_dir=PROJECTS[name])  # type: ignore[call-arg]
    dbt = DbtProject(settings)
    dbt._install_packages()  # what every dbt call does first
    runner._PARSED.clear()
    runner._PROBE_TEMPLATES.clear()
    # restate_1 then restate_12: the second name starts with the first, so a textual
    # replacement of the previous target (rather than of the probe) would show here.
    for schema in ("restate_1", "restate_12"):
        vars = {**settings.dbt_vars(), "restate_schema": schema}
        shortcut = dbt._parsed_manifest(vars)
        assert id(shortcut) in runner._PROBE_TEMPLATES, "the parse was not retargeted"
        retargeted = _as_data(shortcut)
        parsed = _as_data(dbt._parse(vars).result)  # dbt, from scratch, with this schema
        assert retargeted == parsed
        models = [n for n in retargeted["nodes"].values() if n["resource_type"] == "model"]
        assert models and all(n["schema"] == schema for n in models)
        assert all(f'"{schema}"' in n["relation_name"] for n in models if n["relation_name"])
    assert _verdicts(settings) == [True]


def _project_naming_its_schema(tmp_path: Path) -> Path:
    """The billing project plus one model whose alias is built from the schema var."""
    project = tmp_path / "project"
    shutil.copytree(
        PROJECTS["billing"], project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages")
    )
    restate_package = (PROJECT_ROOT / "dbt" / "restate").resolve()
    (project / "packages.yml").write_text(f"packages:\n  - local: {restate_package}\n")
    (project / "package-lock.yml").unlink(missing_ok=True)
    (project / "models" / "schema_echo.sql").write_text(
        "{{ config(materialized='view', alias='echo_' ~ (var('restate_schema', none) or 'prod')) }}\n"
        "select 1 as one\n"
    )
    return project


def test_a_project_carrying_the_schema_name_elsewhere_is_parsed_for_real(tmp_path: Path) -> None:
    project = _project_naming_its_schema(tmp_path)
    settings = Settings(data_dir=tmp_path / "wh", dbt_project_dir=project)  # type: ignore[call-arg]
    dbt = DbtProject(settings)
    dbt._install_packages()  # what every dbt call does first
    runner._PARSED.clear()
    runner._PROBE_TEMPLATES.clear()
    vars = {**settings.dbt_vars(), "restate_schema": "restate_3"}
    manifest = dbt._parsed_manifest(vars)
    assert _verdicts(settings) == [False]
    assert id(manifest) not in runner._PROBE_TEMPLATES  # a real parse with restate_3
    echo = next(n for n in manifest.nodes.values() if n.name == "schema_echo")
    assert (echo.schema, echo.alias) == ("restate_3", "echo_restate_3")
    # and the next restatement is not retargeted either (the verdict is kept)
    again = dbt._parsed_manifest({**vars, "restate_schema": "restate_4"})
    echo = next(n for n in again.nodes.values() if n.name == "schema_echo")
    assert (echo.schema, echo.alias) == ("restate_4", "echo_restate_4")
    assert _verdicts(settings) == [False]
