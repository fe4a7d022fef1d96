"""Finance exports (the source of truth) loaded into the meta schema for validation.

Finance delivers one CSV per month, ``revenue_YYYY-MM.csv``, with the columns
``date,currency,gross_revenue,refunds,net_revenue``. They are read in Python (the
standard csv module, through fsspec for remote URIs) and written with plain
parameterised inserts, so the same code loads them on every engine.
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
                    out.append((name, fh.read().decode("utf-8")))
        return out
    folder = Path(root)
    if not folder.is_dir():
        return []
    return [
        (p.name, p.read_text(encoding="utf-8"))
        for p in sorted(folder.glob("revenue_*.csv"))
        if FILE_PATTERN.match(p.name)
    ]


def _amount(value: str, name: str, line: int, column: str) -> Decimal:
    try:
        return Decimal(value.strip())
    except InvalidOperation as exc:
        raise FinanceExportError(f"{name}:{line}: {column} {value!r} is not a number") from exc


def parse_export(name: str, text: str) -> Iterator[FinanceRow]:
    """Rows of one export; the header and every date (inside the file's month) are checked."""
    match = FILE_PATTERN.match(name)
    if not match:
        raise FinanceExportError(f"{name}: not a revenue_YYYY-MM.csv file")
    year, month = int(match.group(1)), int(match.group(2))
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    if header != EXPECTED_HEADER:
        raise FinanceExportError(f"{name}: header {header} is not {EXPECTED_HEADER}")
    for line, record in enumerate(reader, start=2):
        if not record or all(not v.strip() for v in record):
            continue
        if len(record) != len(EXPECTED_HEADER):
            raise FinanceExportError(f"{name}:{line}: expected 5 fields, got {len(record)}")
        try:
            day = date.fromisoformat(record[0].strip())
        except ValueError as exc:
            raise FinanceExportError(f"{name}:{line}: bad date {record[0]!r}") from exc
        if (day.year, day.month) != (year, month):
            raise FinanceExportError(f"{name}:{line}: date {day} is outside {year}-{month:02d}")
        yield FinanceRow(
            day=day,
            currency=record[1].strip().upper(),
            gross_revenue=_amount(record[2], name, line, "gross_revenue"),
            refunds=_amount(record[3], name, line, "refunds"),
            net_revenue=_amount(record[4], name, line, "net_revenue"),
            source_file=name,
        )


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
