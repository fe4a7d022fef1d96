"""The engine seam: the few SQL operations the tool itself runs on a warehouse."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from restate.settings import Settings


class Engine(ABC):
    """A connection to one warehouse, with explicit transactions."""

    name: str
    # The installation this engine was opened for (set by `connect`): where the changelog's
    # audit key and checkpoints live.
    settings: Settings | None = None
    # Callbacks of the open `transaction()`, run once it has committed; None outside one.
    _after_commit: list[Callable[[], None]] | None = None
    # Owned by a session scope (restate.engines.session_scope): `with` blocks only borrow it.
    _shared: bool = False

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        """Run a statement, discarding any result."""

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a query and return all rows."""

    @abstractmethod
    def query_dicts(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """Run a query and return rows as dicts keyed by lower-case column name."""

    @abstractmethod
    def begin(self) -> None: ...

    @abstractmethod
    def commit(self) -> None: ...

    @abstractmethod
    def rollback(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def relation_exists(self, schema: str, name: str) -> bool: ...

    @abstractmethod
    def result_columns(self, sql: str) -> list[str]:
        """Lower-case names of the columns a query returns (run with no rows)."""

    @abstractmethod
    def columns(self, schema: str, name: str) -> list[str]: ...

    def set_query_tag(self, **fields: Any) -> None:
        """Label the following statements (restatement id, chunk, step) for cost attribution.

        A field set to None is removed. Engines without per-statement billing ignore it.
        """
        return None

    def bytes_per_row(self, schema: str, name: str) -> float | None:
        """Stored bytes per row of a table, when the warehouse reports it (cost estimates)."""
        return None

    def query_tag_for(self, **fields: Any) -> dict[str, Any]:
        """The query tag a child process (dbt) should use for the given labels."""
        return {"app": "restate", **{k: v for k, v in fields.items() if v is not None}}

    def fold_identifier(self, name: str) -> str:
        """How the warehouse stores an unquoted identifier (for tools that quote names)."""
        return name

    def account_bucket_sql(self, column: str, buckets: int) -> str:
        """Same bucket expression as the dbt macro account_bucket()."""
        return f"(hash({column}) % {buckets})"

    def is_write_conflict(self, exc: BaseException) -> bool:
        """True when `exc` is the warehouse refusing a concurrent write (safe to retry)."""
        return False

    @property
    def in_transaction(self) -> bool:
        return self._after_commit is not None

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the open transaction has committed (never if it rolls back);
        outside a transaction, run it now."""
        if self._after_commit is None:
            callback()
        else:
            self._after_commit.append(callback)

    def sibling(self) -> Engine:
        """A second session on the same warehouse, for a helper thread (lock heartbeat)."""
        raise NotImplementedError(f"{self.name} engine has no sibling sessions")

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        rows = self.query(sql, params)
        return rows[0][0] if rows else None

    @contextmanager
    def transaction(self) -> Iterator[Engine]:
        """All statements inside commit together or not at all."""
        self.begin()
        hooks: list[Callable[[], None]] = []
        self._after_commit = hooks
        try:
            yield self
        except BaseException:
            self._after_commit = None
            self.rollback()
            raise
        self._after_commit = None
        self.commit()
        for hook in hooks:
            hook()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._shared:  # a scope's session stays open until the scope ends
            self.close()
