"""Reference exports (restate/validation/reference.py) are what every number is checked against: only
plain decimal amounts (at most 2 decimals, within decimal(18, 2)), non-empty grain values,
ISO dates inside the month the file is named for, one line per grain and the declared
header get in; a bad file is one error naming the file and line, through `restate
reconcile` too, and the previous table stays.

The billing declaration is examples/billing/reference_exports.yml. Whether its net revenue
equals gross revenue minus refunds is no longer refused at load time: it is the Soda check
``finance_net`` in soda_checks/billing/reference_finance_revenue.yml. A second, differently
shaped declaration (no dimension, other metric names, no name pattern) loads and drifts
the same way, and a declaration error names the export and the key.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from interfaces.cli import app
from restate.contract.spec import ContractError, ModelContract, ProjectContract, Upstream
from restate.engines.duckdb import DuckDBEngine
from restate.settings import PROJECT_ROOT, Settings, get_settings
from restate.validation import reference
from restate.validation.reference import ReferenceExportError, load_reference_exports
from tests.conftest import make_settings

HEADER = "date,currency,gross_revenue,refunds,net_revenue\n"
GOOD = "2026-09-01,USD,100.00,10.50,89.50\n"
BILLING = PROJECT_ROOT / "examples" / "billing" / "reference_exports.yml"
TABLE = "reference_finance_revenue"


def _write(s: Settings, *lines: str, name: str = "revenue_2026-09.csv", header: str = HEADER) -> Path:
    folder = Path(s.finance)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(header + "".join(lines))
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    yield make_settings(tmp_path / "wh", reference_exports=BILLING)


def _load(s: Settings) -> list[tuple]:
    s.data_dir.mkdir(parents=True, exist_ok=True)
    engine = DuckDBEngine(s.warehouse_path)
    try:
        load_reference_exports(engine, s)
        return engine.query(
            f"select currency, gross_revenue, refunds, net_revenue from {s.meta_schema}.{TABLE} "
            "order by date, currency"
        )
    finally:
        engine.close()


def test_the_billing_export_is_declared_as_its_table(settings: Settings) -> None:
    (export,) = reference.declared(settings)
    assert export.name == "finance_revenue"
    assert reference.reference_table(settings, export) == f"{settings.meta_schema}.{TABLE}"


def test_plain_decimals_load(settings: Settings) -> None:
    _write(
        settings,
        GOOD,
        "2026-09-02, EUR ,0,0.5,-0.5\n",
        "2026-09-03,GBP,9999999999999999.99,0.00,9999999999999999.99\n",
    )
    assert _load(settings) == [
        ("USD", Decimal("100.00"), Decimal("10.50"), Decimal("89.50")),
        ("EUR", Decimal("0"), Decimal("0.50"), Decimal("-0.50")),
        ("GBP", Decimal("9999999999999999.99"), Decimal("0"), Decimal("9999999999999999.99")),
    ]


def test_net_other_than_gross_minus_refunds_loads_for_the_soda_check(settings: Settings) -> None:
    # Refused by the contract check finance_net, not by the loader.
    _write(settings, GOOD, "2026-09-02,USD,100.00,10.00,100.00\n")
    assert _load(settings)[1] == ("USD", Decimal("100.00"), Decimal("10.00"), Decimal("100.00"))
    contract = (PROJECT_ROOT / "soda_checks" / "billing" / f"{TABLE}.yml").read_text()
    assert "finance_net" in contract


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("2026-09-02,USD,NaN,0,0\n", "gross_revenue 'NaN'"),
        ("2026-09-02,USD,1e30,0,0\n", "gross_revenue '1e30'"),
        ("2026-09-02,USD,1_000,0,1000\n", "gross_revenue '1_000'"),
        ("2026-09-02,USD,1 000,0,1000\n", "gross_revenue '1 000'"),
        ("2026-09-02,USD,Infinity,0,0\n", "gross_revenue 'Infinity'"),
        ("2026-09-02,USD,10.005,0,10\n", "gross_revenue '10.005'"),
        ("2026-09-02,USD,10,0,12345678901234567\n", "net_revenue '12345678901234567'"),
        ("2026-09-02,USD,1,,1\n", "refunds ''"),
        ("2026-09-02,,1,0,1\n", "currency ''"),
        ("2026-09-02,   ,1,0,1\n", "currency '   '"),
        ("20260902,USD,1,0,1\n", "bad date '20260902'"),
        ("2026-09-31,USD,1,0,1\n", "bad date '2026-09-31'"),
        ("2026-9-2,USD,1,0,1\n", "bad date '2026-9-2'"),
        (",USD,1,0,1\n", "bad date ''"),
        ("2026-10-01,USD,1,0,1\n", "date 2026-10-01 is outside 2026-09"),
        ("2025-09-01,USD,1,0,1\n", "date 2025-09-01 is outside 2026-09"),
        ("2026-09-02,USD,1,0\n", "expected 5 fields, got 4"),
    ],
)
def test_bad_values_name_file_and_line(settings: Settings, line: str, what: str) -> None:
    _write(settings, GOOD, line)
    with pytest.raises(ReferenceExportError) as err:
        _load(settings)
    message = str(err.value)
    assert message.startswith("revenue_2026-09.csv:3: "), message
    assert what in message, message


@pytest.mark.parametrize(
    "header",
    [
        "day,currency,gross_revenue,refunds,net_revenue\n",
        "date,currency,gross_revenue,net_revenue,refunds\n",  # reordered
        "date,currency,gross_revenue,refunds\n",
        "date,currency,gross_revenue,refunds,net_revenue,extra\n",
    ],
)
def test_a_wrong_header_is_refused_naming_the_file(settings: Settings, header: str) -> None:
    _write(settings, GOOD, header=header)
    with pytest.raises(ReferenceExportError, match=r"^revenue_2026-09\.csv: header "):
        _load(settings)


def test_a_file_name_outside_the_pattern_is_refused(settings: Settings) -> None:
    _write(settings, GOOD, name="revenue_2026-9.csv")
    with pytest.raises(ReferenceExportError, match=r"^revenue_2026-9\.csv: does not match"):
        _load(settings)


@pytest.mark.parametrize(
    "bad",
    [
        "2026-09-02,USD,1e30,0,1e30\n",
        "2026-09-01,USD,100.00,10.50,89.50\n",  # a duplicate of line 2
    ],
)
def test_reconcile_refuses_a_bad_export_in_one_line(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    _write(settings, GOOD, bad)
    monkeypatch.setenv("RESTATE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("RESTATE_REFERENCE_EXPORTS", str(BILLING))
    monkeypatch.delenv("RESTATE_DUCKDB_PATH", raising=False)
    monkeypatch.delenv("RESTATE_FINANCE_URI", raising=False)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["reconcile", "--no-notify"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, (result.output, result.exception)
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and "revenue_2026-09.csv:3" in err[0], result.output


def test_undecodable_export_names_the_file_and_line(settings: Settings) -> None:
    path = _write(settings, GOOD)
    path.write_bytes(path.read_bytes() + b"2026-09-02,USD,1\xff,0,1\n")
    with pytest.raises(ReferenceExportError, match=r"^revenue_2026-09\.csv:3: not UTF-8"):
        _load(settings)


@pytest.mark.parametrize("currency", ["USD", "usd", " Usd "])
def test_a_duplicated_grain_line_is_refused_naming_both_lines(settings: Settings, currency: str) -> None:
    # Summed, the two lines would double the reference for that day.
    _write(settings, GOOD, "2026-09-02,EUR,5.00,0.00,5.00\n", f"2026-09-01,{currency},100.00,10.50,89.50\n")
    with pytest.raises(ReferenceExportError) as err:
        _load(settings)
    message = str(err.value)
    assert message.startswith("revenue_2026-09.csv:4: "), message
    assert "2026-09-01" in message and "line 2" in message, message


def test_the_previous_reference_stays_when_an_export_is_refused(settings: Settings) -> None:
    _write(settings, GOOD)
    assert len(_load(settings)) == 1
    _write(settings, GOOD, GOOD)
    with pytest.raises(ReferenceExportError):
        _load(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = DuckDBEngine(settings.warehouse_path)
    try:
        assert engine.scalar(f"select count(*) from {settings.meta_schema}.{TABLE}") == 1
    finally:
        engine.close()
    _write(settings, GOOD, "2026-09-02,USD,1.10,0.10,1.00\n")
    assert len(_load(settings)) == 2


# A second project: a daily store-less sales mart, one reference line per day.
ORDERS_YAML = """
reference_exports:
  - name: daily_sales
    model: fct_sales_daily
    files: "sales-*.csv"
    grain: {day: sold_on}
    metrics: {net: net_sales, orders: order_count}
    drift_metrics: [net]
    tolerance_pct: 1
"""


def _sales_contract(**overrides: object) -> ProjectContract:
    fields: dict[str, object] = {
        "model": "fct_sales_daily",
        "unique_id": "model.shop.fct_sales_daily",
        "date_column": "sold_on",
        "keys": ("sold_on",),
        "metrics": ("net_sales", "order_count"),
        "upstream": Upstream("int_sales", "processed_at"),
    }
    fields.update(overrides)
    contract = ModelContract(**fields)  # type: ignore[arg-type]
    return ProjectContract(models={contract.model: contract}, not_restatable={})


def _declare(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "exports.yml"
    path.write_text(text)
    s = make_settings(tmp_path / "shop", reference_exports=path)
    s.data_dir.mkdir(parents=True, exist_ok=True)
    return s


def test_a_second_declaration_without_dimensions_loads_and_drifts(tmp_path: Path) -> None:
    s = _declare(tmp_path, ORDERS_YAML)
    (export,) = reference.declared(s)
    export = reference.bind(export, _sales_contract())
    assert export.table == "reference_daily_sales" and export.date_column == "day"
    _write(
        s,
        "2026-03-01,100.00,4\n2026-03-02,200.00,5\n",
        name="sales-a.csv",
        header="day,net,orders\n",
    )
    # No name pattern: a file may hold any month; another file adds its days.
    _write(s, "2026-04-30,50.00,1\n", name="sales-b.csv", header="day,net,orders\n")
    engine = DuckDBEngine(s.warehouse_path)
    try:
        assert load_reference_exports(engine, s) == {"daily_sales": 3}
        assert engine.query(
            f"select day, net, orders, source_file from {reference.reference_table(s, export)} order by day"
        ) == [
            (date(2026, 3, 1), Decimal("100.00"), Decimal("4.00"), "sales-a.csv"),
            (date(2026, 3, 2), Decimal("200.00"), Decimal("5.00"), "sales-a.csv"),
            (date(2026, 4, 30), Decimal("50.00"), Decimal("1.00"), "sales-b.csv"),
        ]
        # Production: inside the 1 % tolerance on day 1, 10 % off on day 2, day 3 only in prod.
        engine.execute(f"create schema {s.prod_schema}")
        engine.execute(
            f"create table {s.prod_schema}.fct_sales_daily (sold_on date, net_sales decimal(18, 2), "
            "order_count integer)"
        )
        engine.execute(
            f"insert into {s.prod_schema}.fct_sales_daily values ('2026-03-01', 100.50, 4), "
            "('2026-03-02', 180.00, 99), ('2026-03-03', 7.00, 1)"
        )
        drift = reference.drift_rows(engine, s, export, date(2026, 3, 1), date(2026, 3, 31))
    finally:
        engine.close()
    assert sorted(
        (str(r["day"]), r["metric"], r["prod_value"], r["reference_value"], r["delta"]) for r in drift
    ) == [
        ("2026-03-02", "net_sales", Decimal("180.00"), Decimal("200.00"), Decimal("-20.00")),
        ("2026-03-03", "net_sales", Decimal("7.00"), Decimal("0"), Decimal("7.00")),
    ]
    assert {r["export"] for r in drift} == {"daily_sales"}
    assert all(set(r) == {"day", "metric", "prod_value", "reference_value", "delta", "export"} for r in drift)


def test_a_second_declaration_refuses_its_own_bad_lines(tmp_path: Path) -> None:
    s = _declare(tmp_path, ORDERS_YAML)
    _write(s, "2026-03-01,100.00,4\n2026-03-01,1.00,1\n", name="sales-a.csv", header="day,net,orders\n")
    with pytest.raises(ReferenceExportError, match=r"^sales-a\.csv:3: 2026-03-01 is already on line 2"):
        _load_any(s)
    _write(s, "2026-03-01,NaN,4\n", name="sales-a.csv", header="day,net,orders\n")
    with pytest.raises(ReferenceExportError, match=r"^sales-a\.csv:2: net 'NaN'"):
        _load_any(s)


def _load_any(s: Settings) -> dict[str, int]:
    engine = DuckDBEngine(s.warehouse_path)
    try:
        return load_reference_exports(engine, s)
    finally:
        engine.close()


@pytest.mark.parametrize(
    ("declaration", "names"),
    [
        # A metric the model does not declare.
        ("metrics: {net: net_sales, refunds: refunds_total}", ["daily_sales", "refunds_total", "metrics"]),
        # A grain that does not map the model's date column.
        ("grain: {day: shipped_on}", ["daily_sales", "grain", "fct_sales_daily.sold_on"]),
    ],
)
def test_a_declaration_error_names_the_export_and_key(
    tmp_path: Path, declaration: str, names: list[str]
) -> None:
    key = declaration.split(":", 1)[0]
    text = "\n".join(
        f"    {declaration}" if line.strip().startswith(f"{key}:") else line
        for line in ORDERS_YAML.splitlines()
    )
    s = _declare(tmp_path, text)
    (export,) = reference.declared(s)
    with pytest.raises(ContractError) as err:
        reference.bind(export, _sales_contract())
    assert all(n in str(err.value) for n in names), str(err.value)


@pytest.mark.parametrize(
    ("item", "key"),
    [
        (
            '{name: daily_sales, model: fct_sales_daily, files: "a/*.csv", grain: {day: sold_on}, metrics: {net: net_sales}}',
            "files",
        ),
        ("{name: daily_sales, model: fct_sales_daily, files: x.csv, metrics: {net: net_sales}}", "grain"),
        ("{name: daily_sales, model: fct_sales_daily, files: x.csv, grain: {day: sold_on}}", "metrics"),
        (
            "{name: daily_sales, model: fct_sales_daily, files: x.csv, grain: {day: sold_on}, "
            "metrics: {net: net_sales}, drift_metrics: [gross]}",
            "drift_metrics",
        ),
        (
            "{name: daily_sales, model: fct_sales_daily, files: x.csv, grain: {day: sold_on}, "
            "metrics: {net: net_sales}, name_pattern: 'sales-.*'}",
            "name_pattern",
        ),
    ],
)
def test_a_malformed_declaration_names_the_export_and_key(tmp_path: Path, item: str, key: str) -> None:
    s = _declare(tmp_path, f"reference_exports:\n  - {item}\n")
    with pytest.raises(ContractError) as err:
        reference.declared(s)
    assert "daily_sales" in str(err.value) and key in str(err.value), str(err.value)


def test_an_unchanged_export_is_kept_and_a_changed_file_or_table_is_loaded_again(settings: Settings) -> None:
    """Every validation loads the exports first: files and declaration unchanged and the
    table still as loaded, it is kept (its load time stays); a changed, added or withdrawn
    file, or a table changed in the warehouse since (a row deleted, an amount edited, a
    grain value edited with the totals kept), is loaded again."""
    path = _write(settings, GOOD, "2026-09-02,EUR,5.00,0,5.00\n")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = DuckDBEngine(settings.warehouse_path)
    table = f"{settings.meta_schema}.{TABLE}"
    try:

        def load() -> tuple[int, object]:
            rows = load_reference_exports(engine, settings)["finance_revenue"]
            return rows, engine.scalar(f"select max(loaded_at) from {table}")

        rows, first = load()
        assert rows == 2
        assert load() == (2, first)  # kept: nothing rewritten
        engine.execute(f"update {table} set gross_revenue = 1000 where currency = 'USD'")
        rows, second = load()
        assert rows == 2 and second != first  # the edit in the warehouse is undone
        assert engine.scalar(f"select gross_revenue from {table} where currency = 'USD'") == Decimal("100.00")
        engine.execute(f"delete from {table} where currency = 'EUR'")
        rows, third = load()
        assert rows == 2 and third != second
        engine.execute(f"update {table} set currency = 'GBP' where currency = 'EUR'")  # totals kept
        rows, fourth = load()
        assert rows == 2 and fourth != third
        assert engine.scalar(f"select count(*) from {table} where currency = 'EUR'") == 1
        path.write_text(HEADER + GOOD)  # finance sends a corrected file
        rows, fifth = load()
        assert rows == 1 and fifth != fourth
        assert load() == (1, fifth)
        second_file = _write(settings, "2026-10-01,USD,1.00,0,1.00\n", name="revenue_2026-10.csv")
        assert load()[0] == 2
        second_file.unlink()  # a file withdrawn
        assert load()[0] == 1
    finally:
        engine.close()
