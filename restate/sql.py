"""The tool's SQL is written once, in DuckDB's dialect, and rendered per engine by sqlglot.

`render(sql, "snowflake")` is what the Snowflake engine sends: DuckDB-only syntax
(`strftime`, `count(...) filter (where ...)`, `list(...)`, `::` casts) becomes its
Snowflake form. A statement written for one engine only (a Snowflake COPY INTO) is
wrapped in `Native` and passes through untouched. Statements sqlglot cannot model
(`alter session ...`) are sent as written.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import sqlglot
from sqlglot import exp

CORE_DIALECT = "duckdb"

log = logging.getLogger(__name__)


class Native(str):
    """SQL already in the target engine's dialect: never transpiled."""


class SqlRenderError(ValueError):
    """The core issued SQL that cannot be rendered for the engine (a bug, not bad input)."""


def render(sql: str, dialect: str) -> str:
    if dialect == CORE_DIALECT or isinstance(sql, Native):
        return str(sql)
    return _render(str(sql), dialect)


@lru_cache(maxsize=8192)
def _render(sql: str, dialect: str) -> str:
    try:
        statements = [s for s in sqlglot.parse(sql, read=CORE_DIALECT) if s is not None]
    except sqlglot.errors.ParseError as exc:
        raise SqlRenderError(f"cannot render for {dialect}: {exc}; statement: {sql[:200]}") from exc
    if not statements or any(isinstance(s, exp.Command) for s in statements):
        return sql  # a statement sqlglot does not model: sent as written
    return ";\n".join(s.sql(dialect=dialect) for s in statements)
