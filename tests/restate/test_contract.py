"""The model contract (meta.restate) read from manifest nodes: what a user can get wrong
is refused with the model and the key named; what is right in any shape is accepted."""

from __future__ import annotations

from typing import Any

import pytest

from restate.contract.spec import (
    ContractError,
    contract_from_json,
    contract_to_json,
    parse_model,
    read_contract,
)

GOOD: dict[str, Any] = {
    "date_column": "sold_on",
    "entity_column": "shop",
    "keys": ["sold_on", "shop", "sku_family"],
    "metrics": ["units", "takings"],
    "dimensions": ["sku_family"],
    "upstream": {"model": "int_sales", "processed_at": "seen_at"},
    "touched_dates": "int_sales_touched",
}


def node(
    name: str = "fct_sales", decl: Any = GOOD, materialized: str = "incremental", **extra: Any
) -> dict[str, Any]:
    config: dict[str, Any] = {"materialized": materialized}
    if decl is not None:
        config["meta"] = {"restate": decl}
    return {
        "name": name,
        "unique_id": f"model.shop.{name}",
        "resource_type": "model",
        "config": config,
        **extra,
    }


MODELS = {"fct_sales", "int_sales", "int_sales_touched"}


def test_a_complete_declaration_is_read_as_declared() -> None:
    c = parse_model(node(), MODELS)
    assert (c.date_column, c.entity_column, c.keys, c.metrics) == (
        "sold_on",
        "shop",
        ("sold_on", "shop", "sku_family"),
        ("units", "takings"),
    )
    assert c.other_keys == ("sku_family",)
    assert contract_from_json(contract_to_json(c)) == c


def test_entity_and_dimensions_are_optional() -> None:
    decl = {k: v for k, v in GOOD.items() if k not in ("entity_column", "dimensions", "touched_dates")}
    decl["keys"] = ["sold_on", "sku_family"]
    c = parse_model(node(decl=decl), MODELS)
    assert c.entity_column is None and c.dimensions == () and c.touched_dates is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"date_column": None}, "date_column must be a column"),
        ({"keys": None}, "keys is missing"),
        ({"keys": "sold_on"}, "keys must be a list"),
        ({"keys": ["shop", "sku_family"]}, "keys must contain date_column 'sold_on'"),
        ({"keys": ["sold_on", "sku_family"]}, "keys must contain entity_column 'shop'"),
        ({"metrics": []}, "metrics is missing"),
        ({"metrics": ["units", "sold_on"]}, "metrics ['sold_on'] are also keys"),
        ({"dimensions": ["region"]}, "dimensions ['region'] must be keys"),
        ({"dimensions": ["shop"]}, "dimensions ['shop'] must be keys"),
        ({"upstream": None}, "upstream is missing"),
        ({"upstream": "int_sales"}, "upstream must be {model"),
        (
            {"upstream": {"model": "int_nowhere", "processed_at": "seen_at"}},
            "'int_nowhere', which is not a model",
        ),
        ({"touched_dates": "int_gone"}, "touched_dates names 'int_gone'"),
        ({"entity_column": "sold_on"}, "entity_column cannot be the date_column"),
        ({"metrics": ["units); drop table x; --"]}, "must be a column or model name"),
        ({"metric": ["units"]}, "unknown keys ['metric']"),
    ],
)
def test_wrong_declarations_name_the_model_and_the_key(change: dict[str, Any], message: str) -> None:
    decl = {**GOOD, **change}
    decl = {k: v for k, v in decl.items() if v is not None or k in ("date_column",)}
    if change.get("date_column", "") is None:
        decl["date_column"] = None
    with pytest.raises(ContractError) as err:
        parse_model(node(decl=decl), MODELS)
    assert str(err.value).startswith("fct_sales: "), err.value
    assert message in str(err.value), err.value


def test_missing_date_column_says_what_it_is() -> None:
    decl = {k: v for k, v in GOOD.items() if k != "date_column"}
    with pytest.raises(
        ContractError, match=r"fct_sales: meta.restate.date_column is missing \(the partition"
    ):
        parse_model(node(decl=decl), MODELS)


def test_a_view_cannot_declare_a_contract() -> None:
    with pytest.raises(ContractError, match="materialized as 'view'"):
        parse_model(node(materialized="view"), MODELS)


def test_documented_columns_must_include_the_declared_ones() -> None:
    columns = {c: {"name": c} for c in ("sold_on", "shop", "sku_family", "units")}
    with pytest.raises(ContractError, match=r"does not document: \['takings'\]"):
        parse_model(node(columns=columns), MODELS)


def test_read_contract_lists_why_other_models_are_not_restatable() -> None:
    bad = {**GOOD, "keys": ["shop"]}
    manifest = {
        "nodes": {
            "model.shop.fct_sales": node(),
            "model.shop.fct_broken": node("fct_broken", decl=bad),
            "model.shop.int_sales": node("int_sales", decl=None),
            "model.shop.v_sales": node("v_sales", decl=None, materialized="view"),
            "model.shop.int_sales_touched": node("int_sales_touched", decl=None, materialized="table"),
            "test.shop.t": {"name": "t", "resource_type": "test"},
        },
        "sources": {},
    }
    project = read_contract(manifest)
    assert list(project.models) == ["fct_sales"]
    assert "keys must contain date_column" in project.not_restatable["fct_broken"]
    assert "declares no meta.restate" in project.not_restatable["int_sales"]
    assert "view" in project.not_restatable["v_sales"]
    with pytest.raises(ContractError, match=r"fct_broken: not restatable: .*keys must contain"):
        project.model("fct_broken")
    with pytest.raises(ContractError, match="fct_broken"):
        read_contract(manifest, strict=True)


def _source(meta: Any, columns: dict[str, Any]) -> dict[str, Any]:
    return {
        "source_name": "shop",
        "name": "sales",
        "schema": "raw",
        "identifier": "sales",
        "config": {"meta": {"restate": meta}},
        "columns": columns,
    }


def test_landing_declaration_needs_typed_columns_and_declared_processing_time() -> None:
    cols = {
        "id": {"name": "id", "data_type": "varchar"},
        "seen_at": {"name": "seen_at", "data_type": "timestamp"},
    }
    ok = _source({"landing": {"folder": "sales", "processed_at": ["seen_at"]}}, cols)
    lc = read_contract({"nodes": {}, "sources": {"source.shop.sales": ok}}).landing
    assert lc is not None and lc.folder == "sales" and lc.columns == {"id": "varchar", "seen_at": "timestamp"}
    untyped = _source({"landing": {"folder": "sales", "processed_at": ["seen_at"]}}, {"id": {"name": "id"}})
    with pytest.raises(ContractError, match="column id needs a data_type"):
        read_contract({"nodes": {}, "sources": {"s": untyped}})
    undeclared = _source({"landing": {"folder": "sales", "processed_at": ["arrived"]}}, cols)
    with pytest.raises(ContractError, match=r"processed_at names undeclared columns \['arrived'\]"):
        read_contract({"nodes": {}, "sources": {"s": undeclared}})
    hostile = _source({"landing": {"folder": "../etc", "processed_at": ["seen_at"]}}, cols)
    with pytest.raises(ContractError, match="folder must be a plain folder name"):
        read_contract({"nodes": {}, "sources": {"s": hostile}})
    bad_type = {**cols, "x": {"name": "x", "data_type": "varchar); drop table y; --"}}
    with pytest.raises(ContractError, match="column x needs a data_type"):
        read_contract(
            {
                "nodes": {},
                "sources": {
                    "s": _source({"landing": {"folder": "f", "processed_at": ["seen_at"]}}, bad_type)
                },
            }
        )


def test_a_project_without_the_shims_is_named_before_anything_runs() -> None:
    from restate.contract.spec import missing_shims

    shim = "{{ restate.generate_schema_name(custom_schema_name, node) }}"
    strategy = "{{ return(restate.get_incremental_replace_partitions_sql(arg_dict)) }}"
    ok = {
        "metadata": {"project_name": "shop"},
        "macros": {
            "macro.shop.generate_schema_name": {"macro_sql": shim},
            "macro.shop.get_incremental_replace_partitions_sql": {"macro_sql": strategy},
        },
    }
    assert missing_shims(ok) == []
    own = {**ok, "macros": {**ok["macros"], "macro.shop.generate_schema_name": {"macro_sql": "{{ 'x' }}"}}}
    assert missing_shims(own) == ["generate_schema_name"]
    assert missing_shims({"metadata": {"project_name": "shop"}, "macros": {}}) == list(
        ("generate_schema_name", "get_incremental_replace_partitions_sql")
    )


def test_a_target_building_elsewhere_than_production_is_refused(tmp_path: Any) -> None:
    from restate.contract.project import check_target
    from restate.settings import Settings

    def manifest(schema: str, database: str) -> dict[str, Any]:
        mart = node(schema=schema, database=database)
        plain = node("stg_sales", decl=None, materialized="view", schema="elsewhere", database="x")
        return {"nodes": {mart["unique_id"]: mart, plain["unique_id"]: plain}}

    duck = Settings(data_dir=tmp_path, duckdb_path=tmp_path / "shop.duckdb", prod_schema="sales")
    check_target(duck, manifest("sales", "shop"))  # only restatable models are checked
    with pytest.raises(ContractError, match=r"fct_sales into schema 'marts'.*RESTATE_PROD_SCHEMA=marts"):
        check_target(duck, manifest("marts", "shop"))
    with pytest.raises(ContractError, match=r"DuckDB database 'other'.*RESTATE_DUCKDB_PATH"):
        check_target(duck, manifest("sales", "other"))
    # Snowflake folds unquoted names to upper case; the database is the account's.
    snow = Settings(data_dir=tmp_path, engine="snowflake", prod_schema="sales")
    check_target(snow, manifest("SALES", "ANALYTICS_DB"))
