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
    drift_checks: [finance_daily]      # Soda check qualifiers whose failure is drift

The grain column mapped to the model's date column is the file's date. Files are read
strictly, in Python (the csv module, through fsspec for remote URIs): the exact header;
ISO dates (inside the month a ``name_pattern`` names); plain decimals that fit
decimal(18, 2) (no exponent, NaN, separators or third decimal); no empty grain value;
one line per grain (two would be summed into a doubled reference). A malformed file
refuses the whole load with an error naming the file and line, and the previous table
stays as it was. Rows are written with parameterised inserts on every engine.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from restate.contract.spec import IDENTIFIER, ContractError, ProjectContract
from restate.engines.base import Engine
from restate.settings import Settings

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
            )
        )
    names = [e.name for e in exports]
    if len(set(names)) != len(names):
        raise ContractError(f"{source}: two reference exports share a name: {names}")
    checks = data.get("drift_checks") or []
    return Declarations(exports, frozenset(str(c) for c in checks))


@lru_cache(maxsize=8)
def _read_declarations(path: str, mtime_ns: int) -> Declarations:
    return parse_declarations(yaml.safe_load(Path(path).read_text()), Path(path).name)


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
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ReferenceExportError(f"{name}:{line}: not UTF-8 text (byte {exc.start})") from exc


def _amount(value: str, name: str, line: int, column: str) -> Decimal:
    text = value.strip()
    if not AMOUNT_PATTERN.match(text):
        raise ReferenceExportError(
            f"{name}:{line}: {column} {value[:40]!r} is not a plain decimal amount "
            "(digits, optional minus, at most 2 decimals, at most 16 integer digits)"
        )
    try:
        return Decimal(text)
    except InvalidOperation as exc:  # unreachable after the pattern; kept as a guard
        raise ReferenceExportError(f"{name}:{line}: {column} {value!r} is not a number") from exc


def parse_file(export: ReferenceExport, name: str, text: str) -> Iterator[list[Any]]:
    """Rows of one file, in the export's header order, each value checked."""
    month: tuple[int, int] | None = None
    if export.name_pattern is not None:
        match = export.name_pattern.fullmatch(name)
        if not match:
            raise ReferenceExportError(f"{name}: does not match {export.name_pattern.pattern}")
        month = (int(match.group("year")), int(match.group("month")))
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    if header != export.header:
        raise ReferenceExportError(f"{name}: header {header[:20]} is not {export.header}")
    seen: dict[tuple[Any, ...], int] = {}
    records = enumerate(reader, start=2)
    n_grain = len(export.grain)
    while True:
        try:
            line, record = next(records)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ReferenceExportError(f"{name}:{reader.line_num}: {exc}") from exc
        if not record or all(not v.strip() for v in record):
            continue
        if len(record) != len(export.header):
            raise ReferenceExportError(
                f"{name}:{line}: expected {len(export.header)} fields, got {len(record)}"
            )
        values: list[Any] = []
        for column, raw in zip(export.grain, record[:n_grain], strict=True):
            text_value = raw.strip()
            if column == export.date_column:
                try:
                    if not DATE_PATTERN.match(text_value):
                        raise ValueError(text_value)
                    day = date.fromisoformat(text_value)
                except ValueError as exc:
                    raise ReferenceExportError(f"{name}:{line}: bad date {raw[:40]!r}") from exc
                if month is not None and (day.year, day.month) != month:
                    raise ReferenceExportError(
                        f"{name}:{line}: date {day} is outside {month[0]}-{month[1]:02d}"
                    )
                values.append(day)
            else:
                if not text_value or len(text_value) > _MAX_TEXT:
                    raise ReferenceExportError(f"{name}:{line}: {column} {raw[:40]!r} is empty or too long")
                values.append(text_value)
        for column, raw in zip(export.metrics, record[n_grain:], strict=True):
            values.append(_amount(raw, name, line, column))
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
    transaction, so a malformed file leaves the previous contents in place. Returns rows
    loaded per export."""
    loaded: dict[str, int] = {}
    for export in declared(settings):
        rows = []
        for name, data in _files(settings.finance, export.files):
            rows += [[*r, name] for r in parse_file(export, name, _decode(name, data))]
        loaded_at = datetime.now(UTC).replace(tzinfo=None)
        table = reference_table(settings, export)
        engine.execute(f"create schema if not exists {settings.meta_schema}")
        engine.execute(f"create table if not exists {table} ({_columns_sql(export)})")
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
        loaded[export.name] = len(rows)
    return loaded


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
