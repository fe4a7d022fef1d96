"""Reference exports: the figures finance sends, declared in config and loaded for checks.

A project declares its reference exports in a YAML file (``RESTATE_REFERENCE_EXPORTS``)::

    reference_exports:
      - name: finance_sales            # loaded into <meta>.reference_finance_sales
        model: fct_sales_daily         # the mart it is compared with
        files: "sales_*.csv"           # file names under RESTATE_FINANCE_URI (local or fsspec URI)
        name_pattern: "sales_(?P<year>\\d{4})-(?P<month>\\d{2})\\.csv"   # optional
        grain: {day: sale_date, region: region}   # file column -> model column
        metrics: {sales: sales_amount, returns: returns_amount}   # file column -> model metric
        drift_metrics: [sales]         # optional (default: every metric)
        tolerance_pct: 0.05            # optional (default: RESTATE_TOLERANCE_PCT)
        # How finance writes it (optional; without these the strict defaults below hold):
        header: {"Posting Date": day, "Curr.": region}   # file label -> column above
        ignore_columns: [Comment]      # labels present in the file and not read
        date_format: "%d.%m.%Y"        # strptime format (default: ISO YYYY-MM-DD)
        thousands_separator: "."       # "", ",", ".", "'" or " " (default: none)
        decimal_separator: ","         # "." (default) or ","
        sheet: Export                  # XLSX: the sheet (default: the first)
    drift_checks: [finance_daily]      # Soda check qualifiers whose failure is drift

The grain column mapped to the model's date column is the file's date. Files are CSV
(UTF-8, a byte-order mark allowed; the csv module) or XLSX by their suffix (pandas over
openpyxl; date cells as dates, number cells as numbers), through fsspec for remote URIs,
and read strictly: the exact header (or, with ``header``, every declared label once, in
any order, and nothing undeclared); dates in the declared format (inside the month a
``name_pattern`` names); decimals that fit decimal(18, 2) (no exponent, NaN or third
decimal; thousands separators only as declared and correctly grouped); no empty grain
value; one line per grain (two would be summed into a doubled reference). A malformed
file refuses the whole load with an error naming the file, line (sheet row) and column,
and the previous table stays as it was. Rows are written with parameterised inserts.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

from restate.contract.spec import IDENTIFIER, ContractError, ProjectContract
from restate.engines.base import Engine
from restate.settings import Settings
from restate.yaml_cache import load_yaml

# Plain decimals that fit decimal(18, 2): no exponent, NaN/Infinity, separators or 3rd decimal.
AMOUNT_PATTERN = re.compile(r"^-?\d{1,16}(\.\d{1,2})?$")
DATE_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INSERT_BATCH = 500
_MAX_TEXT = 200


class ReferenceExportError(ValueError):
    """A reference export file is malformed; the message names the file and line."""


@dataclass(frozen=True)
class ReferenceExport:
    """One declared reference export."""

    name: str
    model: str
    files: str
    grain: dict[str, str]  # file column -> model column
    metrics: dict[str, str]  # file column -> model metric
    date_column: str  # the file column holding the date
    drift_metrics: tuple[str, ...] = ()
    tolerance_pct: float | None = None
    name_pattern: re.Pattern[str] | None = None
    # How finance writes the file (all optional; without them the strict defaults hold):
    labels: dict[str, str] = field(default_factory=dict)  # file header label -> file column
    ignore_columns: frozenset[str] = frozenset()  # labels present in the file, not read
    date_format: str | None = None  # strptime format, e.g. "%d.%m.%Y"; default ISO
    thousands_separator: str = ""  # e.g. "," for 1,234.56 or "." for 1.234,56
    decimal_separator: str = "."
    sheet: str | None = None  # XLSX: the sheet to read (default: the first)

    @property
    def table(self) -> str:
        return f"reference_{self.name}"

    @property
    def header(self) -> list[str]:
        return [*self.grain, *self.metrics]


@dataclass(frozen=True)
class Declarations:
    exports: list[ReferenceExport] = field(default_factory=list)
    drift_checks: frozenset[str] = frozenset()


def _ident(where: str, value: Any) -> str:
    if not isinstance(value, str) or not IDENTIFIER.match(value):
        raise ContractError(f"{where} must be a plain name, got {value!r}")
    return value


def _mapping(where: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not value:
        raise ContractError(f"{where} must map file columns to model columns")
    return {_ident(f"{where} key", k).lower(): _ident(f"{where}.{k}", v) for k, v in value.items()}


def parse_declarations(data: Any, source: str) -> Declarations:
    """The declarations of one YAML document; ContractError names the export and the key."""
    if not isinstance(data, dict) or not isinstance(data.get("reference_exports", []), list):
        raise ContractError(f"{source}: expected a mapping with a list `reference_exports`")
    exports = []
    for i, item in enumerate(data.get("reference_exports") or []):
        where = f"{source}: reference_exports[{i}]"
        if not isinstance(item, dict):
            raise ContractError(f"{where} must be a mapping")
        name = _ident(f"{where}.name", item.get("name"))
        where = f"{source}: reference export {name}"
        files = item.get("files")
        if not isinstance(files, str) or "/" in files or not files:
            raise ContractError(f"{where}: files must be a file-name pattern such as revenue_*.csv")
        grain = _mapping(f"{where}: grain", item.get("grain"))
        metrics = _mapping(f"{where}: metrics", item.get("metrics"))
        if set(grain) & set(metrics):
            raise ContractError(
                f"{where}: a column is both grain and metric: {sorted(set(grain) & set(metrics))}"
            )
        drift = tuple(item.get("drift_metrics") or metrics)
        unknown = [m for m in drift if m not in metrics]
        if unknown:
            raise ContractError(f"{where}: drift_metrics {unknown} are not among its metrics")
        pattern = item.get("name_pattern")
        compiled = re.compile(pattern) if isinstance(pattern, str) else None
        if compiled is not None and not {"year", "month"} <= set(compiled.groupindex):
            raise ContractError(f"{where}: name_pattern needs the groups (?P<year>..) and (?P<month>..)")
        tolerance = item.get("tolerance_pct")
        labels = item.get("header") or {}
        if not isinstance(labels, dict) or any(
            not isinstance(k, str) or str(v).lower() not in {*grain, *metrics} for k, v in labels.items()
        ):
            raise ContractError(f"{where}: header must map file labels to its grain and metric columns")
        thousands = str(item.get("thousands_separator") or "")
        decimal_sep = str(item.get("decimal_separator") or ".")
        if (
            thousands not in ("", ",", ".", " ", "'")
            or decimal_sep not in (".", ",")
            or thousands == decimal_sep
        ):
            raise ContractError(
                f"{where}: thousands_separator must be one of , . ' or a space, decimal_separator . or , "
                "and they must differ"
            )
        date_format = item.get("date_format")
        if date_format is not None and (not isinstance(date_format, str) or "%" not in date_format):
            raise ContractError(f"{where}: date_format must be a strptime format such as %d.%m.%Y")
        exports.append(
            ReferenceExport(
                name=name,
                model=_ident(f"{where}.model", item.get("model")),
                files=files,
                grain=grain,
                metrics=metrics,
                date_column=next(iter(grain)),  # checked against the model in bind()
                drift_metrics=drift,
                tolerance_pct=float(tolerance) if tolerance is not None else None,
                name_pattern=compiled,
                labels={_normal(k): str(v).lower() for k, v in labels.items()},
                ignore_columns=frozenset(_normal(c) for c in item.get("ignore_columns") or []),
                date_format=date_format,
                thousands_separator=thousands,
                decimal_separator=decimal_sep,
                sheet=str(item["sheet"]) if item.get("sheet") is not None else None,
            )
        )
    names = [e.name for e in exports]
    if len(set(names)) != len(names):
        raise ContractError(f"{source}: two reference exports share a name: {names}")
    checks = data.get("drift_checks") or []
    return Declarations(exports, frozenset(str(c) for c in checks))


@lru_cache(maxsize=8)
def _read_declarations(path: str, mtime_ns: int) -> Declarations:
    return parse_declarations(load_yaml(Path(path).read_text()), Path(path).name)


def declarations(settings: Settings) -> Declarations:
    """The project's declarations (none when RESTATE_REFERENCE_EXPORTS names no file)."""
    path = settings.reference_exports
    if path is None:
        return Declarations()
    if not path.is_file():
        raise ContractError(f"reference exports file {path} does not exist (RESTATE_REFERENCE_EXPORTS)")
    return _read_declarations(str(path), path.stat().st_mtime_ns)


def declared(settings: Settings) -> list[ReferenceExport]:
    return declarations(settings).exports


def bind(export: ReferenceExport, project: ProjectContract) -> ReferenceExport:
    """The export checked against its model's contract: the grain maps the date column and
    every metric is a declared metric of the model."""
    contract = project.model(export.model)
    dates = [f for f, m in export.grain.items() if m == contract.date_column]
    if len(dates) != 1:
        raise ContractError(
            f"reference export {export.name}: grain must map exactly one file column to "
            f"{export.model}.{contract.date_column}"
        )
    missing = [m for m in export.metrics.values() if m not in contract.metrics]
    if missing:
        raise ContractError(f"reference export {export.name}: {missing} are not metrics of {export.model}")
    return ReferenceExport(**{**export.__dict__, "date_column": dates[0]})


def reference_table(settings: Settings, export: ReferenceExport) -> str:
    return f"{settings.meta_schema}.{export.table}"


def _columns_sql(export: ReferenceExport) -> str:
    cols = [
        f"{c} date not null" if c == export.date_column else f"{c} varchar not null" for c in export.grain
    ]
    cols += [f"{c} decimal(18, 2) not null" for c in export.metrics]
    return ", ".join([*cols, "source_file varchar not null", "loaded_at timestamp not null"])


def _files(root: str, pattern: str) -> list[tuple[str, bytes]]:
    """(name, bytes) of every file matching the pattern under root, sorted by name."""
    if "://" in root:
        import fsspec

        out = []
        for f in sorted(fsspec.open_files(f"{root.rstrip('/')}/{pattern}"), key=lambda f: f.path):
            with f as fh:
                out.append((f.path.rsplit("/", 1)[-1], fh.read()))
        return out
    folder = Path(root)
    if not folder.is_dir():
        return []
    return [(p.name, p.read_bytes()) for p in sorted(folder.glob(pattern)) if p.is_file()]


def _decode(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")  # a byte-order mark (Excel's CSV export) is not data
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ReferenceExportError(f"{name}:{line}: not UTF-8 text (byte {exc.start})") from exc


def _amount_text(export: ReferenceExport, value: Any) -> str | None:
    """The cell as a plain decimal string (the declared separators removed); None when it
    uses a separator the declaration does not (a point where the decimal is a comma)."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):  # an XLSX number: the shortest text that round-trips
        return repr(value) if value == value and abs(value) != float("inf") else str(value)
    text = str(value).strip()
    sep, dec = re.escape(export.thousands_separator), re.escape(export.decimal_separator)
    if export.thousands_separator and re.fullmatch(rf"-?\d{{1,3}}({sep}\d{{3}})+({dec}\d+)?", text):
        text = text.replace(export.thousands_separator, "")
    if export.decimal_separator != ".":
        if "." in text:
            return None
        text = text.replace(export.decimal_separator, ".")
    return text


def _amount(export: ReferenceExport, value: Any, name: str, line: int, column: str) -> Decimal:
    text = _amount_text(export, value)
    if text is None or not AMOUNT_PATTERN.match(text):
        shown = str(value)[:40]
        raise ReferenceExportError(
            f"{name}:{line}: {column} {shown!r} is not a plain decimal amount "
            "(digits, optional minus, at most 2 decimals, at most 16 integer digits"
            + (f", thousands separator {export.thousands_separator!r}" if export.thousands_separator else "")
            + ")"
        )
    try:
        return Decimal(text)
    except InvalidOperation as exc:  # unreachable after the pattern; kept as a guard
        raise ReferenceExportError(f"{name}:{line}: {column} {value!r} is not a number") from exc


def _day(export: ReferenceExport, value: Any, name: str, line: int, column: str) -> date:
    if isinstance(value, datetime):  # an XLSX date cell (pandas gives a Timestamp, a datetime)
        if value.time() != datetime.min.time():
            raise ReferenceExportError(f"{name}:{line}: {column} bad date {str(value)!r} (it has a time)")
        return value.date()
    if isinstance(value, date):
        return value
    text = "" if value is None else str(value).strip()
    try:
        if export.date_format:
            return datetime.strptime(text, export.date_format).date()
        if not DATE_PATTERN.match(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError as exc:
        expected = export.date_format or "YYYY-MM-DD"
        raise ReferenceExportError(
            f"{name}:{line}: {column} bad date {text[:40]!r} (expected {expected})"
        ) from exc


def _normal(label: Any) -> str:
    return " ".join(str(label if label is not None else "").split()).lower()


def _positions(export: ReferenceExport, name: str, header: list[Any]) -> list[int]:
    """Where each of the export's columns is in the file's header."""
    if not export.labels and not export.ignore_columns:
        if [_normal(h) for h in header] != export.header:
            raise ReferenceExportError(
                f"{name}: header {[_normal(h) for h in header][:20]} is not {export.header}"
            )
        return list(range(len(export.header)))
    found: dict[str, int] = {}
    for index, label in enumerate(_normal(h) for h in header):
        column = export.labels.get(label, label if label in export.header else None)
        if column is None:
            if label in export.ignore_columns:
                continue
            raise ReferenceExportError(
                f"{name}: column {str(header[index])[:40]!r} is neither mapped (header:) nor ignored "
                "(ignore_columns:) in the declaration"
            )
        if column in found:
            raise ReferenceExportError(f"{name}: two columns read as {column}")
        found[column] = index
    missing = [c for c in export.header if c not in found]
    if missing:
        raise ReferenceExportError(
            f"{name}: header {[str(h) for h in header][:20]} has no {', '.join(missing)}"
        )
    return [found[c] for c in export.header]


def _records(
    export: ReferenceExport, name: str, data: bytes
) -> tuple[list[Any], Iterator[tuple[int, list[Any]]]]:
    """The header and the (line or sheet row, cells) of a CSV or XLSX file."""
    if name.lower().endswith((".xlsx", ".xlsm")):
        import pandas as pd

        try:
            frame = pd.read_excel(
                io.BytesIO(data), sheet_name=export.sheet or 0, header=None, dtype=object, engine="openpyxl"
            )
        except Exception as exc:  # not a workbook, no such sheet
            raise ReferenceExportError(f"{name}: not a readable XLSX workbook ({str(exc)[:120]})") from exc
        cells = [[None if pd.isna(v) else v for v in row] for row in frame.itertuples(index=False)]
        if not cells:
            return [], iter(())
        return list(cells[0]), ((row + 2, values) for row, values in enumerate(cells[1:]))
    reader = csv.reader(io.StringIO(_decode(name, data)))
    header: list[Any] = list(next(reader, []))

    def lines() -> Iterator[tuple[int, list[Any]]]:
        records = enumerate(reader, start=2)
        while True:
            try:
                line, record = next(records)
            except StopIteration:
                return
            except csv.Error as exc:
                raise ReferenceExportError(f"{name}:{reader.line_num}: {exc}") from exc
            yield line, list(record)

    return header, lines()


def parse_file(export: ReferenceExport, name: str, data: bytes | str) -> Iterator[list[Any]]:
    """Rows of one file (CSV, or XLSX by its suffix), in the export's column order, each
    value checked; ReferenceExportError names the file, line (sheet row) and column."""
    month: tuple[int, int] | None = None
    if export.name_pattern is not None:
        match = export.name_pattern.fullmatch(name)
        if not match:
            raise ReferenceExportError(f"{name}: does not match {export.name_pattern.pattern}")
        month = (int(match.group("year")), int(match.group("month")))
    header, records = _records(export, name, data.encode() if isinstance(data, str) else data)
    positions = _positions(export, name, header)
    seen: dict[tuple[Any, ...], int] = {}
    n_grain = len(export.grain)
    for line, record in records:
        if not record or all(v is None or not str(v).strip() for v in record):
            continue
        if len(record) != len(header):
            raise ReferenceExportError(f"{name}:{line}: expected {len(header)} fields, got {len(record)}")
        cells = [record[i] for i in positions]
        values: list[Any] = []
        for column, raw in zip(export.grain, cells[:n_grain], strict=True):
            if column == export.date_column:
                day = _day(export, raw, name, line, column)
                if month is not None and (day.year, day.month) != month:
                    raise ReferenceExportError(
                        f"{name}:{line}: date {day} is outside {month[0]}-{month[1]:02d}"
                    )
                values.append(day)
            else:
                text_value = "" if raw is None else str(raw).strip()
                if not text_value or len(text_value) > _MAX_TEXT:
                    shown = "" if raw is None else str(raw)[:40]
                    raise ReferenceExportError(f"{name}:{line}: {column} {shown!r} is empty or too long")
                values.append(text_value)
        for column, raw in zip(export.metrics, cells[n_grain:], strict=True):
            values.append(_amount(export, "" if raw is None else raw, name, line, column))
        key = tuple(v.upper() if isinstance(v, str) else v for v in values[:n_grain])
        first = seen.setdefault(key, line)
        if first != line:
            shown = " ".join(str(v) for v in values[:n_grain])
            raise ReferenceExportError(
                f"{name}:{line}: {shown} is already on line {first}; an export has one line per "
                f"{', '.join(export.grain)}: merge them in the export"
            )
        yield values


def load_reference_exports(engine: Engine, settings: Settings) -> dict[str, int]:
    """Replace each declared export's table with every file of it under ``settings.finance``.

    All files are parsed before anything is written, and each table is replaced in one
    transaction, so a malformed file leaves the previous contents in place. A table
    already loaded from the same files under the same declaration, and still holding
    what that load wrote (_summary: rows, date range, metric totals, a sum of row
    hashes), is kept as it is. Returns rows loaded (or kept) per export."""
    loaded: dict[str, int] = {}
    for export in declared(settings):
        files = _files(settings.finance, export.files)
        table = reference_table(settings, export)
        engine.execute(f"create schema if not exists {settings.meta_schema}")
        engine.execute(f"create table if not exists {table} ({_columns_sql(export)})")
        engine.execute(
            f"create table if not exists {settings.meta_schema}.reference_loads "
            "(export varchar not null, fingerprint varchar not null, summary varchar not null, "
            "loaded_at timestamp not null)"
        )
        fingerprint = _fingerprint(export, files)
        kept = _kept_rows(engine, settings, export, fingerprint)
        if kept is not None:
            loaded[export.name] = kept
            continue
        rows = []
        for name, data in files:
            rows += [[*r, name] for r in parse_file(export, name, data)]
        loaded_at = datetime.now(UTC).replace(tzinfo=None)
        width = len(export.header) + 2
        with engine.transaction():
            engine.execute(f"delete from {table}")
            for start in range(0, len(rows), _INSERT_BATCH):
                batch = rows[start : start + _INSERT_BATCH]
                placeholders = ", ".join(["(" + ", ".join(["?"] * width) + ")"] * len(batch))
                params: list[Any] = []
                for r in batch:
                    params += [*r, loaded_at]
                engine.execute(f"insert into {table} values {placeholders}", params)
            engine.execute(
                f"delete from {settings.meta_schema}.reference_loads where export = ?", [export.name]
            )
            engine.execute(
                f"insert into {settings.meta_schema}.reference_loads values (?, ?, ?, ?)",
                [export.name, fingerprint, _summary(engine, table, export), loaded_at],
            )
        loaded[export.name] = len(rows)
    return loaded


# Raise when parsing changes (amounts, dates, headers): tables parsed before are loaded again.
PARSER_VERSION = 1


def _fingerprint(export: ReferenceExport, files: list[tuple[str, bytes]]) -> str:
    """The parser's version, the declaration and every file's name and bytes, hashed."""
    declaration = json.dumps(
        {
            key: sorted(value) if isinstance(value, (set, frozenset)) else value
            for key, value in vars(export).items()
        },
        sort_keys=True,
        default=lambda v: v.pattern if isinstance(v, re.Pattern) else str(v),
    )
    digest = hashlib.sha256(f"{PARSER_VERSION}\0{declaration}".encode())
    for name, data in files:
        digest.update(f"\0{name}\0{len(data)}\0".encode() + data)
    return digest.hexdigest()


def _summary(engine: Engine, table: str, export: ReferenceExport) -> str:
    """What the table holds, in brief: rows, date range, the total of every metric and a
    sum of every row's hash (any edited value, grain or file name changes it)."""
    totals = ", ".join(f"sum({m})" for m in export.metrics)
    columns = ", ".join([*export.header, "source_file"])
    row = engine.query(
        f"select count(*), min({export.date_column}), max({export.date_column}), {totals}, "
        f"sum(hash({columns})) from {table}"
    )[0]
    return json.dumps([str(v) for v in row])


def _kept_rows(engine: Engine, settings: Settings, export: ReferenceExport, fingerprint: str) -> int | None:
    """Rows of the export's table when the last load was of these files and the table still
    holds what it wrote; None: load again."""
    stored = engine.query(
        f"select fingerprint, summary from {settings.meta_schema}.reference_loads where export = ?",
        [export.name],
    )
    if len(stored) != 1 or stored[0][0] != fingerprint:
        return None
    table = reference_table(settings, export)
    summary = _summary(engine, table, export)
    if summary != stored[0][1]:
        return None  # changed in the warehouse since it was loaded: load the files again
    return int(json.loads(summary)[0])


def last_reference_date(engine: Engine, settings: Settings, export: ReferenceExport) -> date | None:
    table = reference_table(settings, export)
    schema, _, name = table.partition(".")
    if not engine.relation_exists(schema, name):
        return None
    value: date | None = engine.scalar(f"select max({export.date_column}) from {table}")
    return value


def drift_rows(
    engine: Engine, settings: Settings, export: ReferenceExport, start: date, end: date
) -> list[dict[str, Any]]:
    """Grain rows x drift metrics where production differs from the reference beyond the
    tolerance (percent of the reference); a row on one side only counts (0 on the other)
    unless its value is 0 (a day with no sales is the same whether or not it has a row)."""
    tolerance = Decimal(
        str(export.tolerance_pct if export.tolerance_pct is not None else settings.tolerance_pct)
    )
    model_date = export.grain[export.date_column]
    group_prod = ", ".join(f"{m} as {f}" for f, m in export.grain.items())
    group_keys = ", ".join(export.grain)
    out: list[dict[str, Any]] = []
    for file_metric in export.drift_metrics:
        model_metric = export.metrics[file_metric]
        on = " and ".join(f"p.{g} = f.{g}" for g in export.grain)
        grain_out = ", ".join(f"coalesce(p.{g}, f.{g}) as {g}" for g in export.grain)
        rows = engine.query_dicts(
            f"""
            with prod as (
                select {group_prod}, sum({model_metric}) as value
                from {settings.prod_schema}.{export.model}
                where {model_date} between ? and ? group by {group_keys}
            ),
            ref as (
                select {group_keys}, sum({file_metric}) as value
                from {reference_table(settings, export)}
                where {export.date_column} between ? and ? group by {group_keys}
            )
            select {grain_out}, '{model_metric}' as metric,
                coalesce(p.value, 0) as prod_value, coalesce(f.value, 0) as reference_value,
                coalesce(p.value, 0) - coalesce(f.value, 0) as delta
            from prod p full outer join ref f on {on}
            where abs(coalesce(p.value, 0) - coalesce(f.value, 0)) > ? * abs(coalesce(f.value, 0))
                or ((f.value is null) <> (p.value is null) and coalesce(p.value, f.value) <> 0)
            order by 1
            """,
            [start, end, start, end, tolerance / 100],
        )
        for r in rows:
            r["day"] = r.pop(export.date_column)
            r["export"] = export.name
        out += rows
    return out
