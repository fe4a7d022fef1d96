"""Finance exports are the reference every number is checked against: only plain decimal
amounts (at most 2 decimals, within decimal(18, 2)) and 3-letter currencies get in, and a
bad value is one error naming the file and line, through `restate reconcile` too."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from restate.cli import app
from restate.engines.duckdb import DuckDBEngine
from restate.finance import FinanceExportError, load_finance_exports
from restate.settings import Settings, get_settings
from tests.conftest import make_settings

HEADER = "date,currency,gross_revenue,refunds,net_revenue\n"
GOOD = "2026-09-01,USD,100.00,10.50,89.50\n"


def _write(s: Settings, *lines: str, name: str = "revenue_2026-09.csv") -> Path:
    folder = Path(s.finance)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(HEADER + "".join(lines))
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    yield make_settings(tmp_path / "wh")


def _load(s: Settings) -> list[tuple]:
    s.data_dir.mkdir(parents=True, exist_ok=True)
    engine = DuckDBEngine(s.warehouse_path)
    try:
        load_finance_exports(engine, s)
        return engine.query(
            f"select currency, gross_revenue, refunds, net_revenue from {s.meta_schema}.finance_exports "
            "order by date, currency"
        )
    finally:
        engine.close()


def test_plain_decimals_and_currencies_load(settings: Settings) -> None:
    _write(
        settings,
        GOOD,
        "2026-09-02, eur ,0,0.5,-0.5\n",
        "2026-09-03,GBP,9999999999999999.99,0.00,9999999999999999.99\n",
    )
    assert _load(settings) == [
        ("USD", Decimal("100.00"), Decimal("10.50"), Decimal("89.50")),
        ("EUR", Decimal("0"), Decimal("0.50"), Decimal("-0.50")),
        ("GBP", Decimal("9999999999999999.99"), Decimal("0"), Decimal("9999999999999999.99")),
    ]


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("2026-09-02,USD,NaN,0,0\n", "gross_revenue 'NaN'"),
        ("2026-09-02,USD,1e30,0,0\n", "gross_revenue '1e30'"),
        ("2026-09-02,USD,1_000,0,1000\n", "gross_revenue '1_000'"),
        ("2026-09-02,USD,Infinity,0,0\n", "gross_revenue 'Infinity'"),
        ("2026-09-02,USD,10.005,0,10\n", "gross_revenue '10.005'"),
        ("2026-09-02,USD,10,0,12345678901234567\n", "net_revenue '12345678901234567'"),
        ("2026-09-02,USD,1,,1\n", "refunds ''"),
        ("2026-09-02,,1,0,1\n", "currency ''"),
        ("2026-09-02,US,1,0,1\n", "currency 'US'"),
        ("2026-09-02,US1,1,0,1\n", "currency 'US1'"),
        ("20260902,USD,1,0,1\n", "date '20260902'"),
    ],
)
def test_bad_values_name_file_and_line(settings: Settings, line: str, what: str) -> None:
    _write(settings, GOOD, line)
    with pytest.raises(FinanceExportError) as err:
        _load(settings)
    message = str(err.value)
    assert message.startswith("revenue_2026-09.csv:3: "), message
    assert what in message, message


@pytest.mark.parametrize(
    "bad",
    [
        "2026-09-02,USD,1e30,0,1e30\n",
        "2026-09-01,usd,100.00,10.50,89.50\n",  # a duplicate of line 2
        "2026-09-02,USD,100.00,10.50,100.00\n",  # net is not gross - refunds
    ],
)
def test_reconcile_refuses_a_bad_export_in_one_line(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    _write(settings, GOOD, bad)
    monkeypatch.setenv("RESTATE_DATA_DIR", str(settings.data_dir))
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


def test_undecodable_export_names_the_file(settings: Settings) -> None:
    path = _write(settings, GOOD)
    path.write_bytes(path.read_bytes() + b"2026-09-02,USD,1\xff,0,1\n")
    with pytest.raises(FinanceExportError, match=r"revenue_2026-09\.csv"):
        _load(settings)


@pytest.mark.parametrize("currency", ["USD", "usd", " Usd "])
def test_a_duplicate_date_and_currency_is_refused_naming_both_lines(
    settings: Settings, currency: str
) -> None:
    # Summed, the two lines would double the reference for that day.
    _write(settings, GOOD, "2026-09-02,EUR,5.00,0.00,5.00\n", f"2026-09-01,{currency},100.00,10.50,89.50\n")
    with pytest.raises(FinanceExportError) as err:
        _load(settings)
    message = str(err.value)
    assert message.startswith("revenue_2026-09.csv:4: "), message
    assert "2026-09-01 USD" in message and "line 2" in message, message


@pytest.mark.parametrize(
    "line",
    [
        "2026-09-02,USD,100.00,10.00,89.99\n",
        "2026-09-02,USD,100.00,10.00,100.00\n",
        "2026-09-02,USD,0,0,0.01\n",
    ],
)
def test_net_revenue_other_than_gross_minus_refunds_is_refused(settings: Settings, line: str) -> None:
    _write(settings, GOOD, line)
    with pytest.raises(FinanceExportError) as err:
        _load(settings)
    message = str(err.value)
    _, _, gross, refunds, net = line.strip().split(",")
    assert message.startswith("revenue_2026-09.csv:3: "), message
    assert all(repr(v) in message for v in (gross, refunds, net)), message


def test_the_previous_reference_stays_when_an_export_is_refused(settings: Settings) -> None:
    _write(settings, GOOD)
    assert len(_load(settings)) == 1
    _write(settings, GOOD, GOOD)
    with pytest.raises(FinanceExportError):
        _load(settings)
    _write(settings, GOOD, "2026-09-02,USD,1.10,0.10,1.00\n")
    assert len(_load(settings)) == 2
