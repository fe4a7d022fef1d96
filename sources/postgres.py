"""Extract a PostgreSQL table into the landing without heavy reads on the source.

The source (an order database serving the shop) tolerates neither long queries nor
large scans, so every statement is a short, index-served keyset page:

    select <columns> from <table>
    where (<cursor>, <key>) > (%s, %s) and <cursor> <= %s
    order by <cursor>, <key> limit <page_size>

- one session per run, read-only (`default_transaction_read_only`), with a
  `statement_timeout`, each page its own transaction (no snapshot held across pages);
- the pair (cursor, key) is refused unless a btree index leads with exactly those
  columns, so a page never sorts the table;
- the upper bound is the server's `now() - settle`, fixed for the run: rows whose
  transaction commits a little after its `updated_at` are still read, by the next run
  at worst (a transaction open longer than `settle` can be missed: set it above the
  source's longest write transaction);
- each page lands as one Parquet file (written whole, then renamed) before the cursor
  moves past it (restate_meta.source_cursors), so a crash lands a page at most twice and
  never skips one; the landing's dedupe (one row per key and version) absorbs the repeat;
- updates arrive as new versions (a later `updated_at`); deletes must be soft (a
  `deleted_at`-style column the application sets together with `updated_at`) and land
  as a version like any other. Hard deletes would need logical decoding: wal_level=logical
  (a restart of the source) and a replication slot that holds WAL on the source while the
  extractor is down, a load the source was not to carry; not chosen.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from restate.engines.base import Engine
from restate.settings import Settings

_DECIMAL = re.compile(r"^(decimal|numeric)\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)$")
_TYPES = {
    "varchar": pa.string(),
    "text": pa.string(),
    "string": pa.string(),
    "timestamp": pa.timestamp("us"),
    "date": pa.date32(),
    "bigint": pa.int64(),
    "integer": pa.int64(),
    "int": pa.int64(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
}


class SourceError(ValueError):
    """The source cannot be read within the promised bounds (no index, unknown column)."""


def arrow_type(declared: str) -> pa.DataType:
    kind = declared.strip().lower()
    if m := _DECIMAL.match(kind):
        return pa.decimal128(int(m.group(2)), int(m.group(3)))
    if kind in _TYPES:
        return _TYPES[kind]
    raise SourceError(f"landing type {declared!r} is not one the extractor writes")


@dataclass(frozen=True)
class PostgresTable:
    """One source table and how to read it."""

    name: str  # the cursor's name in restate_meta.source_cursors, e.g. "shop.orders"
    dsn: str
    table: str  # schema.table
    columns: dict[str, str]  # landed column -> landing type, in order
    cursor_column: str = "updated_at"
    key_column: str = "id"
    landed_at_column: str | None = None  # stamped with the extraction time
    page_size: int = 5000
    statement_timeout_ms: int = 5000
    settle: timedelta = timedelta(seconds=60)


@dataclass
class ExtractReport:
    source: str
    pages: int = 0
    rows: int = 0
    statements: int = 0
    longest_statement_ms: float = 0.0
    max_rows_per_statement: int = 0
    cursor_before: tuple[str, str] | None = None
    cursor_after: tuple[str, str] | None = None
    upper_bound: datetime | None = None
    files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, datetime | tuple) else v) for k, v in self.__dict__.items()}


def load_cursor(engine: Engine, meta: str, source: str) -> tuple[str, str] | None:
    """The (cursor, key) of the last landed row, as text (cast back to the columns' types
    in the page statement, so any cursor and key type round-trips exactly)."""
    rows = engine.query(
        f"select cursor_value, cursor_key from {meta}.source_cursors where source = ?", [source]
    )
    return (str(rows[0][0]), str(rows[0][1])) if rows and rows[0][0] is not None else None


def save_cursor(engine: Engine, meta: str, source: str, cursor: tuple[Any, Any], rows: int) -> None:
    with engine.transaction():
        engine.execute(f"delete from {meta}.source_cursors where source = ?", [source])
        engine.execute(
            f"insert into {meta}.source_cursors values (?, ?, ?, ?, ?)",
            [source, _text(cursor[0]), _text(cursor[1]), rows, datetime.now()],
        )


def _text(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _connect(src: PostgresTable) -> Any:
    import psycopg

    options = (
        f"-c default_transaction_read_only=on -c statement_timeout={int(src.statement_timeout_ms)} "
        "-c idle_in_transaction_session_timeout=60000"
    )
    return psycopg.connect(src.dsn, options=options, application_name="restate-extract")


def _split(table: str) -> tuple[str, str]:
    schema, _, name = table.rpartition(".")
    return schema or "public", name


_TYPE_NAME = re.compile(r"^[a-z][a-z0-9 _(),]*$")


def column_types(con: Any, src: PostgresTable) -> dict[str, str]:
    """The source's column types (format_type), for casting the stored cursor back."""
    schema, name = _split(src.table)
    rows = con.execute(
        """
        select a.attname, format_type(a.atttypid, a.atttypmod)
        from pg_attribute a join pg_class t on t.oid = a.attrelid
        join pg_namespace ns on ns.oid = t.relnamespace
        where ns.nspname = %s and t.relname = %s and a.attnum > 0 and not a.attisdropped
        """,
        [schema, name],
    ).fetchall()
    con.rollback()
    types = {str(c): str(t) for c, t in rows}
    if not types:
        raise SourceError(f"{src.table}: no such table (or no privilege to read it)")
    wanted = [c for c in src.columns if c != src.landed_at_column]
    missing = [c for c in [*wanted, src.cursor_column, src.key_column] if c not in types]
    if missing:
        raise SourceError(f"{src.table} has no column {', '.join(sorted(set(missing)))}")
    for c in (src.cursor_column, src.key_column):
        if not _TYPE_NAME.match(types[c]):
            raise SourceError(f"{src.table}.{c}: unexpected type {types[c]!r}")
    return types


def check_index(con: Any, src: PostgresTable) -> str:
    """The btree index leading with (cursor, key); SourceError naming the fix when none."""
    schema, name = _split(src.table)
    rows = con.execute(
        """
        select i.relname,
               array(select a.attname from unnest(x.indkey) with ordinality k(attnum, n)
                     join pg_attribute a on a.attrelid = x.indrelid and a.attnum = k.attnum
                     order by k.n) as cols
        from pg_index x
        join pg_class t on t.oid = x.indrelid
        join pg_namespace ns on ns.oid = t.relnamespace
        join pg_class i on i.oid = x.indexrelid
        join pg_am am on am.oid = i.relam
        where ns.nspname = %s and t.relname = %s and am.amname = 'btree'
        """,
        [schema, name],
    ).fetchall()
    con.rollback()
    for index, cols in rows:
        if list(cols[:2]) == [src.cursor_column, src.key_column]:
            return str(index)
    raise SourceError(
        f"{src.table} has no btree index on ({src.cursor_column}, {src.key_column}): every page would "
        f"sort the table; create one: create index concurrently on {src.table} "
        f"({src.cursor_column}, {src.key_column})"
    )


def page_statement(src: PostgresTable, types: dict[str, str], first: bool) -> Any:
    from psycopg import sql

    selected = [c for c in src.columns if c != src.landed_at_column]
    where = (
        "{cur} <= %s::{cur_t}"
        if first
        else "({cur}, {key}) > (%s::{cur_t}, %s::{key_t}) and {cur} <= %s::{cur_t}"
    )
    return sql.SQL("select {cols} from {table} where " + where + " order by {cur}, {key} limit %s").format(
        cols=sql.SQL(", ").join(sql.Identifier(c) for c in selected),
        table=sql.Identifier(*_split(src.table)),
        cur=sql.Identifier(src.cursor_column),
        key=sql.Identifier(src.key_column),
        cur_t=sql.SQL(types[src.cursor_column]),
        key_t=sql.SQL(types[src.key_column]),
    )


def _write_page(settings: Settings, folder: str, run: str, page: int, table: pa.Table) -> str:
    from restate.engines.object_store import landing_filesystem

    path = f"{settings.landing.rstrip('/')}/{folder}/{run}/part-{page:06d}.parquet"
    fs = landing_filesystem(settings)
    if fs is not None:  # an object store PUT is all-or-nothing
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        fs.pipe(path, sink.getvalue().to_pybytes())
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.partial"  # not *.parquet: never listed by the landing while written
    pq.write_table(table, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def extract(
    settings: Settings,
    engine: Engine,
    src: PostgresTable,
    folder: str,
    max_pages: int | None = None,
) -> ExtractReport:
    """Land every row changed since the stored cursor (up to now - settle), page by page."""
    from restate.state.meta import init_meta

    init_meta(engine, settings.meta_schema)
    meta = settings.meta_schema
    schema = pa.schema([(c, arrow_type(t)) for c, t in src.columns.items()])
    report = ExtractReport(src.name, cursor_before=load_cursor(engine, meta, src.name))
    cursor = report.cursor_before
    run = f"pg_{datetime.now():%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:8]}"
    with _connect(src) as con:
        types = column_types(con, src)
        check_index(con, src)
        upper = con.execute("select now() - %s::interval", [src.settle]).fetchone()[0]
        con.rollback()
        report.upper_bound = upper
        first_page, later_page = page_statement(src, types, True), page_statement(src, types, False)
        names = [c for c in src.columns if c != src.landed_at_column]  # the order the page selects
        while max_pages is None or report.pages < max_pages:
            if cursor is None:
                params: list[Any] = [upper, src.page_size]
            else:
                params = [cursor[0], cursor[1], upper, src.page_size]
            started = time.perf_counter()
            rows = con.execute(first_page if cursor is None else later_page, params).fetchall()
            con.rollback()  # the page's read-only transaction ends here
            elapsed_ms = (time.perf_counter() - started) * 1000
            report.statements += 1
            report.longest_statement_ms = max(report.longest_statement_ms, elapsed_ms)
            report.max_rows_per_statement = max(report.max_rows_per_statement, len(rows))
            if not rows:
                break
            data: dict[str, list[Any]] = {c: [r[i] for r in rows] for i, c in enumerate(names)}
            if src.landed_at_column:
                data[src.landed_at_column] = [datetime.now()] * len(rows)
            landed = pa.table({c: pa.array(data[c], type=schema.field(c).type) for c in src.columns})
            report.files.append(_write_page(settings, folder, run, report.pages, landed))
            last = rows[-1]
            cursor = (_text(last[names.index(src.cursor_column)]), _text(last[names.index(src.key_column)]))
            report.pages += 1
            report.rows += len(rows)
            save_cursor(engine, meta, src.name, cursor, report.rows)  # after the page is durable
            if len(rows) < src.page_size:
                break
    report.cursor_after = cursor
    return report
