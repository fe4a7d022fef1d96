"""Snowflake engine: the production warehouse, reached with the Snowflake connector.

Statements use qmark binding (`?`), the same placeholders as the DuckDB engine, and the
tool's SQL (written once, in DuckDB's dialect) is rendered for Snowflake by sqlglot
(restate.sql) before it is sent. Every statement runs under a session query tag (JSON with
the restatement id, chunk and step) so warehouse cost can be attributed from
QUERY_HISTORY. Transactions hold DML only: Snowflake commits DDL implicitly, so callers
create tables and views before `transaction()`, never inside it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import snowflake.connector

from restate.engines.base import Engine
from restate.sql import Native, render

# Snowflake folds unquoted identifiers to upper case; the tool names them in lower case.
_FOLD = "upper"


class SnowflakeEngine(Engine):
    name = "snowflake"

    def __init__(
        self,
        connect_kwargs: dict[str, Any],
        landing_table: str = "raw.events",
        query_tag: dict[str, Any] | None = None,
    ) -> None:
        self.landing_table = landing_table
        self._connect_kwargs = dict(connect_kwargs)
        self._tag: dict[str, Any] = dict(query_tag or {"app": "restate"})
        params = dict(connect_kwargs.pop("session_parameters", None) or {})
        params["QUERY_TAG"] = encode_query_tag(self._tag)
        self.con = snowflake.connector.connect(
            **connect_kwargs,
            paramstyle="qmark",
            session_parameters=params,
            # Autocommit outside explicit transactions, like DuckDB.
            autocommit=True,
        )

    def sibling(self) -> SnowflakeEngine:
        return SnowflakeEngine(dict(self._connect_kwargs), self.landing_table, dict(self._tag))

    @property
    def query_tag(self) -> dict[str, Any]:
        return dict(self._tag)

    def query_tag_for(self, **fields: Any) -> dict[str, Any]:
        return {**self._tag, **{k: v for k, v in fields.items() if v is not None}}

    def set_query_tag(self, **fields: Any) -> None:
        tag = {**self._tag, **{k: v for k, v in fields.items() if v is not None}}
        for key, value in fields.items():
            if value is None:
                tag.pop(key, None)
        if tag != self._tag:
            encoded = encode_query_tag(tag).replace("'", "''")
            self.con.cursor().execute(f"alter session set query_tag = '{encoded}'")
            self._tag = tag

    def _run(self, sql: str, params: Sequence[Any] | None) -> Any:
        cur = self.con.cursor()
        cur.execute(render(sql, "snowflake"), list(params) if params is not None else None)
        return cur

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        self._run(sql, params).close()

    def result_columns(self, sql: str) -> list[str]:
        cur = self._run(Native(f"select * from (\n{sql}\n) as q limit 0"), None)
        try:
            return [str(d[0]).lower() for d in cur.description or []]
        finally:
            cur.close()

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        cur = self._run(sql, params)
        try:
            return [tuple(r) for r in cur.fetchall()]
        finally:
            cur.close()

    def query_dicts(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        cur = self._run(sql, params)
        try:
            names = [d[0].lower() for d in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        finally:
            cur.close()

    def begin(self) -> None:
        self.execute("begin transaction")

    def commit(self) -> None:
        self.execute("commit")

    def rollback(self) -> None:
        self.execute("rollback")

    def close(self) -> None:
        self.con.close()

    def relation_exists(self, schema: str, name: str) -> bool:
        rows = self.query(
            f"select 1 from information_schema.tables where table_schema = {_FOLD}(?) "
            f"and table_name = {_FOLD}(?)",
            [schema, name],
        )
        return bool(rows)

    def columns(self, schema: str, name: str) -> list[str]:
        rows = self.query(
            f"select column_name from information_schema.columns where table_schema = {_FOLD}(?) "
            f"and table_name = {_FOLD}(?) order by ordinal_position",
            [schema, name],
        )
        return [str(r[0]).lower() for r in rows]

    def bytes_per_row(self, schema: str, name: str) -> float | None:
        rows = self.query(
            f"select bytes, row_count from information_schema.tables where table_schema = {_FOLD}(?) "
            f"and table_name = {_FOLD}(?)",
            [schema, name],
        )
        if not rows or not rows[0][0] or not rows[0][1]:
            return None
        return float(rows[0][0]) / float(rows[0][1])

    def fold_identifier(self, name: str) -> str:
        return name.upper()

    def account_bucket_sql(self, column: str, buckets: int) -> str:
        # Same expression as dbt's snowflake__account_bucket(): hash() is signed here.
        return f"(abs(hash({column})) % {buckets})"


def encode_query_tag(tag: dict[str, Any]) -> str:
    """Compact JSON, so QUERY_HISTORY can be grouped with parse_json(query_tag)."""
    return json.dumps(tag, sort_keys=True, separators=(",", ":"), default=str)
