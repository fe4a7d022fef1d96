"""Finance exports (the source of truth) loaded into the meta schema for validation.

Finance delivers one CSV per month, ``revenue_YYYY-MM.csv``, with the columns
``date,currency,gross_revenue,refunds,net_revenue``: one line per date and currency
(case-insensitive; two would be summed into a doubled reference) and net_revenue
exactly gross_revenue - refunds, else the file is refused, naming the lines. They
are read in Python (the standard csv module, through fsspec for remote URIs) and
written with plain parameterised inserts, so the same code loads them on every engine.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from restate.engines.base import Engine
from restate.settings import Settings

FINANCE_TABLE = "finance_exports"
EXPECTED_HEADER = ["date", "currency", "gross_revenue", "refunds", "net_revenue"]
FILE_PATTERN = re.compile(r"^revenue_(\d{4})-(\d{2})\.csv$")
# Plain decimals that fit decimal(18, 2): no exponent, NaN/Infinity, separators or 3rd decimal.
AMOUNT_PATTERN = re.compile(r"^-?\d{1,16}(\.\d{1,2})?$")
CURRENCY_PATTERN = re.compile(r"^[A-Za-z]{3}$")
DATE_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INSERT_BATCH = 500

FINANCE_COLUMNS = """
    date date not null,
    currency varchar not null,
    gross_revenue decimal(18, 2) not null,
    refunds decimal(18, 2) not null,
    net_revenue decimal(18, 2) not null,
    source_file varchar not null,
    loaded_at timestamp not null
"""


class FinanceExportError(ValueError):
    """A finance export file is malformed; the message names the file and line."""


@dataclass(frozen=True)
class FinanceRow:
    day: date
    currency: str
    gross_revenue: Decimal
    refunds: Decimal
    net_revenue: Decimal
    source_file: str


def finance_table(settings: Settings) -> str:
    return f"{settings.meta_schema}.{FINANCE_TABLE}"


def ensure_finance_table(engine: Engine, settings: Settings) -> None:
    engine.execute(f"create schema if not exists {settings.meta_schema}")
    engine.execute(f"create table if not exists {finance_table(settings)} ({FINANCE_COLUMNS})")


def _export_files(root: str) -> list[tuple[str, str]]:
    """(name, text) of every revenue_YYYY-MM.csv under root, sorted by name."""
    if "://" in root:
        import fsspec

        out = []
        for f in sorted(fsspec.open_files(f"{root.rstrip('/')}/revenue_*.csv"), key=lambda f: f.path):
            name = f.path.rsplit("/", 1)[-1]
            if FILE_PATTERN.match(name):
                with f as fh:
                    out.append((name, _decode(name, fh.read())))
        return out
    folder = Path(root)
    if not folder.is_dir():
        return []
    return [
        (p.name, _decode(p.name, p.read_bytes()))
        for p in sorted(folder.glob("revenue_*.csv"))
        if FILE_PATTERN.match(p.name)
    ]


def _decode(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FinanceExportError(f"{name}:{line}: not UTF-8 text (byte {exc.start})") from exc


def _amount(value: str, name: str, line: int, column: str) -> Decimal:
    """A plain decimal with at most 2 decimals within decimal(18, 2), e.g. 1234.5 or -0.25."""
    text = value.strip()
    if not AMOUNT_PATTERN.match(text):
        raise FinanceExportError(
            f"{name}:{line}: {column} {value!r} is not a plain decimal amount "
            "(digits, optional minus, at most 2 decimals, at most 16 integer digits)"
        )
    try:
        return Decimal(text)
    except InvalidOperation as exc:  # unreachable after the pattern; kept as a guard
        raise FinanceExportError(f"{name}:{line}: {column} {value!r} is not a number") from exc


def _currency(value: str, name: str, line: int) -> str:
    text = value.strip()
    if not CURRENCY_PATTERN.match(text):
        raise FinanceExportError(f"{name}:{line}: currency {value!r} is not a 3-letter code (e.g. USD)")
    return text.upper()


def parse_export(name: str, text: str) -> Iterator[FinanceRow]:
    """Rows of one export; the header, every date (inside the file's month), one line per
    (date, currency) (two would be summed into a doubled reference) and net_revenue =
    gross_revenue - refunds (exact decimals) are checked."""
    match = FILE_PATTERN.match(name)
    if not match:
        raise FinanceExportError(f"{name}: not a revenue_YYYY-MM.csv file")
    year, month = int(match.group(1)), int(match.group(2))
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    if header != EXPECTED_HEADER:
        raise FinanceExportError(f"{name}: header {header} is not {EXPECTED_HEADER}")
    records = enumerate(reader, start=2)
    seen: dict[tuple[date, str], int] = {}
    while True:
        try:
            line, record = next(records)
        except StopIteration:
            return
        except csv.Error as exc:
            raise FinanceExportError(f"{name}:{reader.line_num}: {exc}") from exc
        if not record or all(not v.strip() for v in record):
            continue
        if len(record) != len(EXPECTED_HEADER):
            raise FinanceExportError(f"{name}:{line}: expected 5 fields, got {len(record)}")
        try:
            if not DATE_PATTERN.match(record[0].strip()):
                raise ValueError(record[0])
            day = date.fromisoformat(record[0].strip())
        except ValueError as exc:
            raise FinanceExportError(f"{name}:{line}: bad date {record[0]!r}") from exc
        if (day.year, day.month) != (year, month):
            raise FinanceExportError(f"{name}:{line}: date {day} is outside {year}-{month:02d}")
        row = FinanceRow(
            day=day,
            currency=_currency(record[1], name, line),
            gross_revenue=_amount(record[2], name, line, "gross_revenue"),
            refunds=_amount(record[3], name, line, "refunds"),
            net_revenue=_amount(record[4], name, line, "net_revenue"),
            source_file=name,
        )
        if row.net_revenue != row.gross_revenue - row.refunds:
            raise FinanceExportError(
                f"{name}:{line}: net_revenue {record[4].strip()!r} is not gross_revenue "
                f"{record[2].strip()!r} - refunds {record[3].strip()!r} "
                f"(= {row.gross_revenue - row.refunds}); correct the line in the export"
            )
        first = seen.setdefault((row.day, row.currency), line)
        if first != line:
            raise FinanceExportError(
                f"{name}:{line}: {row.day} {row.currency} is already on line {first}; "
                "an export has one line per date and currency, merge them in the export"
            )
        yield row


def load_finance_exports(engine: Engine, settings: Settings) -> int:
    """Replace ``<meta>.finance_exports`` with every export under ``settings.finance``.

    All files are parsed before anything is written, and the table is replaced in one
    transaction, so a malformed file leaves the previous contents in place. Returns
    the number of rows loaded.
    """
    rows = [row for name, text in _export_files(settings.finance) for row in parse_export(name, text)]
    loaded_at = datetime.now(UTC).replace(tzinfo=None)
    ensure_finance_table(engine, settings)
    table = finance_table(settings)
    with engine.transaction():
        engine.execute(f"delete from {table}")
        for start in range(0, len(rows), _INSERT_BATCH):
            batch = rows[start : start + _INSERT_BATCH]
            placeholders = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(batch))
            params: list[object] = []
            for r in batch:
                params += [
                    r.day,
                    r.currency,
                    r.gross_revenue,
                    r.refunds,
                    r.net_revenue,
                    r.source_file,
                    loaded_at,
                ]
            engine.execute(f"insert into {table} values {placeholders}", params)
    return len(rows)
