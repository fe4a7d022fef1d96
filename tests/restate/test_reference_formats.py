"""Reference exports as finance sends them: the same figures as an XLSX workbook (typed
cells) and as an ERP's CSV (byte-order mark, its own header labels in another order, an
ignored column, dd.mm.yyyy dates, thousands separators, decimal commas) load to exactly
the table the clean CSV gives; errors name the file, the row and the column; a malformed
workbook never replaces the previous good load."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from restate.engines.duckdb import DuckDBEngine
from restate.settings import Settings
from restate.validation.reference import ReferenceExportError, load_reference_exports
from tests.conftest import make_settings

openpyxl = pytest.importorskip("openpyxl")

CLEAN = "date,currency,gross_revenue,refunds,net_revenue\n2026-09-01,USD,1234.50,10.50,1224.00\n" \
    "2026-09-01,EUR,99.99,0.00,99.99\n2026-09-02,USD,1000000.00,0.01,999999.99\n"  # fmt: skip
ROWS = [
    ("2026-09-01", "USD", "1234.50", "10.50", "1224.00"),
    ("2026-09-01", "EUR", "99.99", "0.00", "99.99"),
    ("2026-09-02", "USD", "1000000.00", "0.01", "999999.99"),
]
DECLARATION = """
reference_exports:
  - name: finance_revenue
    model: fct_revenue_daily
    files: "{files}"
    name_pattern: "revenue_(?P<year>\\\\d{{4}})-(?P<month>\\\\d{{2}})\\\\.(csv|xlsx)"
    grain: {{date: event_date, currency: currency}}
    metrics: {{gross_revenue: gross_revenue, refunds: refunds, net_revenue: net_revenue}}
{extra}
"""
ERP = """    header:
      Posting Date: date
      Curr.: currency
      Gross Revenue: gross_revenue
      Refunds: refunds
      Net Revenue: net_revenue
    ignore_columns: [Comment]
    date_format: "%d.%m.%Y"
    thousands_separator: "."
    decimal_separator: ","
"""


def _settings(tmp_path: Path, files: str, extra: str = "") -> Settings:
    tmp_path.mkdir(parents=True, exist_ok=True)
    declaration = tmp_path / "reference_exports.yml"
    declaration.write_text(DECLARATION.format(files=files, extra=extra))
    s = make_settings(tmp_path / "wh", reference_exports=declaration)
    Path(s.finance).mkdir(parents=True, exist_ok=True)
    return s


def _table(s: Settings) -> list[tuple]:
    s.data_dir.mkdir(parents=True, exist_ok=True)
    engine = DuckDBEngine(s.warehouse_path)
    try:
        load_reference_exports(engine, s)
        return engine.query(
            f"select date, currency, gross_revenue, refunds, net_revenue from {s.meta_schema}.reference_finance_revenue "
            "order by date, currency"
        )
    finally:
        engine.close()


def _workbook(path: Path, rows: list[list[object]], header: list[str] | None = None) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(header or ["date", "currency", "gross_revenue", "refunds", "net_revenue"])
    for row in rows:
        sheet.append(row)
    book.save(path)


def _typed(rows: list[tuple[str, ...]]) -> list[list[object]]:
    # As Excel holds them: dates as dates, amounts as numbers.
    return [[datetime.fromisoformat(d), c, float(g), float(r), float(n)] for d, c, g, r, n in rows]


def test_xlsx_and_an_erp_csv_load_to_the_same_table_as_the_clean_csv(tmp_path: Path) -> None:
    clean = _settings(tmp_path / "clean", "revenue_*.csv")
    (Path(clean.finance) / "revenue_2026-09.csv").write_text(CLEAN)
    expected = _table(clean)
    assert len(expected) == 3 and expected[2][2] == Decimal("1000000.00")

    xlsx = _settings(tmp_path / "xlsx", "revenue_*.xlsx")
    _workbook(Path(xlsx.finance) / "revenue_2026-09.xlsx", _typed(ROWS))
    assert _table(xlsx) == expected

    erp = _settings(tmp_path / "erp", "revenue_*.csv", ERP)
    lines = ["Net Revenue;Posting Date;Curr.;Gross Revenue;Refunds;Comment"]  # its own order
    for d, c, g, r, n in ROWS:
        day = datetime.fromisoformat(d).strftime("%d.%m.%Y")

        def european(x: str) -> str:
            whole, _, cents = x.partition(".")
            grouped = f"{int(whole):,}".replace(",", ".")
            return f"{grouped},{cents}"

        lines.append(f'"{european(n)}";{day};{c};"{european(g)}";"{european(r)}";checked by AP')
    text = "\n".join(lines).replace(";", ",") + "\n"  # comma-separated, amounts quoted
    (Path(erp.finance) / "revenue_2026-09.csv").write_bytes("\ufeff".encode() + text.encode())
    assert _table(erp) == expected


@pytest.mark.parametrize(
    ("cell", "column", "what"),
    [
        (2, "gross_revenue", "gross_revenue 'twelve'"),
        (0, "date", "date bad date 'not a day'"),
        (4, "net_revenue", "net_revenue '1.005'"),
    ],
)
def test_a_bad_cell_names_file_row_and_column_and_the_previous_load_stays(
    tmp_path: Path, cell: int, column: str, what: str
) -> None:
    s = _settings(tmp_path, "revenue_*.xlsx")
    path = Path(s.finance) / "revenue_2026-09.xlsx"
    _workbook(path, _typed(ROWS))
    good = _table(s)
    rows = _typed(ROWS)
    rows[1][cell] = {0: "not a day", 2: "twelve", 4: 1.005}[cell]
    _workbook(path, rows)
    with pytest.raises(ReferenceExportError) as err:
        _table(s)
    assert str(err.value).startswith("revenue_2026-09.xlsx:3: "), err.value  # sheet row 3
    assert what in str(err.value), err.value
    path.write_bytes(b"PK\x03\x04 not really a workbook")
    with pytest.raises(ReferenceExportError, match="not a readable XLSX workbook"):
        _table(s)
    engine = DuckDBEngine(s.warehouse_path)
    try:
        kept = engine.query(
            f"select date, currency, gross_revenue, refunds, net_revenue from {s.meta_schema}.reference_finance_revenue "
            "order by date, currency"
        )
    finally:
        engine.close()
    assert kept == good  # the refused files replaced nothing


def test_erp_formats_refuse_what_they_do_not_declare(tmp_path: Path) -> None:
    s = _settings(tmp_path, "revenue_*.csv", ERP)
    header = "Posting Date,Curr.,Gross Revenue,Refunds,Net Revenue,Comment\n"
    for line, what in [
        ('01.09.2026,USD,"1.234,5",0,"1.234,5",x\n', None),  # one decimal: fine
        ('01.09.2026,USD,"12.34,50",0,"12.34,50",x\n', "gross_revenue '12.34,50'"),  # bad grouping
        ('01.09.2026,USD,"1234.50",0,"1234.50",x\n', "gross_revenue '1234.50'"),  # a point here
        ("2026-09-01,USD,1,0,1,x\n", "date bad date '2026-09-01' (expected %d.%m.%Y)"),
    ]:
        (Path(s.finance) / "revenue_2026-09.csv").write_text(header + line)
        if what is None:
            assert _table(s)[0][2] == Decimal("1234.50")
            continue
        with pytest.raises(ReferenceExportError) as err:
            _table(s)
        assert str(err.value).startswith("revenue_2026-09.csv:2: ") and what in str(err.value), err.value
    (Path(s.finance) / "revenue_2026-09.csv").write_text(
        header.replace("Comment", "Approver") + "01.09.2026,USD,1,0,1,x\n"
    )
    with pytest.raises(ReferenceExportError, match="column 'Approver' is neither mapped"):
        _table(s)
