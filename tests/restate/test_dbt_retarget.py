"""A restatement's dbt parse without parsing the project again.

The restatement's schema reaches dbt as a parse-time var, so each restatement used to
parse the whole project (seconds, every macro). The runner now parses once with a probe
schema and points the parsed nodes at the restatement's schema. These tests hold that
shortcut to what dbt itself produces: for both example projects the retargeted manifest
equals a real parse with the restatement's schema, field for field; a project that
carries the schema's name anywhere else (here an alias), or whose schema macro does
something else than route the name, is parsed for real instead; and no restatement's dbt
call builds a selected model outside the restatement's schema, however it was parsed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from restate.dbt import runner
from restate.dbt.runner import DbtProject, ProductionGuardError
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


def _fresh(settings: Settings) -> DbtProject:
    """The project's runner with its packages installed (what every dbt call does first)
    and no parse kept in this process from an earlier test."""
    dbt = DbtProject(settings)
    dbt._install_packages()
    runner._PARSED.clear()
    runner._PROBE_TEMPLATES.clear()
    return dbt


def _verdicts(settings: Settings) -> list[bool]:
    return [
        json.loads(p.read_text())["retargetable"]
        for p in (settings.state_dir / "dbt_parse").glob("retarget-*.json")
    ]


@pytest.mark.parametrize("name", sorted(PROJECTS))
def test_retargeted_parse_equals_dbt_parsing_with_the_restatement_schema(tmp_path: Path, name: str) -> None:
    settings = Settings(data_dir=tmp_path / "wh", dbt_project_dir=PROJECTS[name])  # type: ignore[call-arg]
    dbt = _fresh(settings)
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


def _billing_copy(tmp_path: Path) -> Path:
    """The billing project copied, its restate package named by absolute path."""
    project = tmp_path / "project"
    shutil.copytree(
        PROJECTS["billing"], project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages")
    )
    restate_package = (PROJECT_ROOT / "dbt" / "restate").resolve()
    (project / "packages.yml").write_text(f"packages:\n  - local: {restate_package}\n")
    (project / "package-lock.yml").unlink(missing_ok=True)
    return project


def _project_naming_its_schema(tmp_path: Path) -> Path:
    """The billing project plus one model whose alias is built from the schema var."""
    project = _billing_copy(tmp_path)
    (project / "models" / "schema_echo.sql").write_text(
        "{{ config(materialized='view', alias='echo_' ~ (var('restate_schema', none) or 'prod')) }}\n"
        "select 1 as one\n"
    )
    return project


def test_a_project_carrying_the_schema_name_elsewhere_is_parsed_for_real(tmp_path: Path) -> None:
    project = _project_naming_its_schema(tmp_path)
    settings = Settings(data_dir=tmp_path / "wh", dbt_project_dir=project)  # type: ignore[call-arg]
    dbt = _fresh(settings)
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


def _project_with_schema_macro(tmp_path: Path, macro: str) -> Path:
    """The billing project with its root generate_schema_name replaced by `macro`."""
    project = _billing_copy(tmp_path)
    shims = project / "macros" / "restate_shims.sql"
    text = shims.read_text()
    start = text.index("{% macro generate_schema_name")
    end = text.index("{%- endmacro %}", start) + len("{%- endmacro %}")
    shims.write_text(text[:start] + macro + text[end:])
    return project


def test_a_schema_macro_that_routes_only_some_names_is_parsed_for_real(tmp_path: Path) -> None:
    # Routes restate_<n> only: the probe's name lands in production's schema, where a real
    # parse with restate_5 would route. Retargeting would leave the models in production.
    project = _project_with_schema_macro(
        tmp_path,
        "{% macro generate_schema_name(custom_schema_name, node) -%}\n"
        "    {%- set rs = var('restate_schema', none) -%}\n"
        "    {%- if rs and modules.re.match('^restate_[0-9]+$', rs) -%}{{ rs }}"
        "{%- else -%}{{ target.schema }}{%- endif -%}\n"
        "{%- endmacro %}",
    )
    settings = Settings(data_dir=tmp_path / "wh", dbt_project_dir=project)  # type: ignore[call-arg]
    dbt = _fresh(settings)
    manifest = dbt._parsed_manifest({**settings.dbt_vars(), "restate_schema": "restate_5"})
    assert _verdicts(settings) == [False]
    models = [n for n in manifest.nodes.values() if n.resource_type == "model"]
    assert models and all(n.schema == "restate_5" for n in models)


def test_no_restatement_builds_a_model_outside_its_schema(tmp_path: Path) -> None:
    # A schema macro that ignores the restatement's schema: dbt would build in production.
    project = _project_with_schema_macro(
        tmp_path,
        "{% macro generate_schema_name(custom_schema_name, node) -%}{{ target.schema }}{%- endmacro %}",
    )
    settings = Settings(data_dir=tmp_path / "wh", dbt_project_dir=project)  # type: ignore[call-arg]
    dbt = _fresh(settings)
    vars = {**settings.dbt_vars(), "restate_schema": "restate_6"}
    with pytest.raises(ProductionGuardError, match="refusing to build fct_revenue_daily into schema"):
        dbt.run_deferred(["fct_revenue_daily"], vars=vars)


def test_a_loads_kept_parse_is_redone_when_an_env_value_or_a_seed_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long-lived process (the load loop, a worker) keeps the parse of production's vars
    # from one load window to the next; what dbt's own partial parse would notice (an
    # env_var() value a model reads, a seed's file) makes it parse again.
    project = _billing_copy(tmp_path)
    (project / "models" / "env_echo.sql").write_text(
        'select \'{{ env_var("RESTATE_TEST_ECHO", "a") }}\' as echo\n'
    )
    monkeypatch.setenv("RESTATE_TEST_ECHO", "a")
    settings = Settings(data_dir=tmp_path / "wh", dbt_project_dir=project)  # type: ignore[call-arg]
    dbt = _fresh(settings)
    load = {
        **settings.dbt_vars(),
        "ingested_since": "2026-10-01 00:00:00",
        "ingested_until": "2026-10-01 00:15:00",
    }
    first = dbt._parsed_manifest(load)
    later = {**load, "ingested_since": "2026-10-01 00:15:00", "ingested_until": "2026-10-01 00:30:00"}
    assert dbt._parsed_manifest(later) is first  # a new window alone: no parse
    monkeypatch.setenv("RESTATE_TEST_ECHO", "b")
    second = dbt._parsed_manifest(later)
    assert second is not first
    (project / "seeds").mkdir(exist_ok=True)
    (project / "seeds" / "echo_seed.csv").write_text("id\n1\n")
    third = dbt._parsed_manifest(later)
    assert third is not second
    assert any(n.name == "echo_seed" for n in third.nodes.values())
    assert dbt._parsed_manifest(later) is third
