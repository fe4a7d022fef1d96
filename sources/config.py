"""Which sources feed the landing, declared in one YAML file (RESTATE_SOURCES_FILE):

    postgres:
      - name: shop.orders                # the cursor's name
        dsn: ${ORDERS_DSN}               # ${VAR} is read from the environment
        table: public.orders
        folder: orders                   # <landing>/orders/<batch>/
        cursor_column: updated_at
        key_column: order_id
        landed_at_column: order_ingested_at
        columns: {order_id: varchar, updated_at: timestamp, gross_amount: "decimal(18, 2)"}
    webhooks:
      folder: payments                   # the journal lands here (restate webhooks flush)
    sftp:
      - name: 3pl-east
        host: sftp.partner.example
        username: northstar
        password: ${THREEPL_EAST_PASSWORD}
        host_key: "ssh-ed25519 AAAA..."  # pinned: no trust on first use
        remote_dir: /outbound
        folder: fulfilment
        columns: {order_id: varchar, shipped_at: timestamp, carrier: varchar, units: integer}

Secrets are never written in the file: `${VAR}` is replaced from the environment, and a
variable that is not set is an error naming it.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from sources.postgres import PostgresTable
from sources.sftp_drops import SftpDrop

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SourceConfigError(ValueError):
    """The sources file cannot be used (named, with the reason)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PostgresSource(_Model):
    name: str
    dsn: str
    table: str
    folder: str
    columns: dict[str, str]
    cursor_column: str = "updated_at"
    key_column: str = "id"
    landed_at_column: str | None = None
    page_size: int = Field(default=5000, ge=1, le=100_000)
    statement_timeout_ms: int = Field(default=5000, ge=100)
    settle_s: float = Field(default=60.0, ge=0)

    def table_source(self) -> PostgresTable:
        return PostgresTable(
            name=self.name,
            dsn=self.dsn,
            table=self.table,
            columns=self.columns,
            cursor_column=self.cursor_column,
            key_column=self.key_column,
            landed_at_column=self.landed_at_column,
            page_size=self.page_size,
            statement_timeout_ms=self.statement_timeout_ms,
            settle=timedelta(seconds=self.settle_s),
        )


class WebhookSource(_Model):
    folder: str = "payments"


class SftpSource(_Model):
    name: str
    host: str
    port: int = 22
    username: str
    password: str | None = None
    key_file: Path | None = None
    host_key: str
    remote_dir: str
    folder: str
    columns: dict[str, str]
    settle_s: float = Field(default=5.0, ge=0)

    def drop(self) -> SftpDrop:
        return SftpDrop(
            name=self.name,
            host=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            key_file=self.key_file,
            host_key=self.host_key,
            remote_dir=self.remote_dir,
            columns=self.columns,
            settle_s=self.settle_s,
        )


class SourcesConfig(_Model):
    postgres: list[PostgresSource] = Field(default_factory=list)
    webhooks: WebhookSource | None = None
    sftp: list[SftpSource] = Field(default_factory=list)


def _expand(value: Any, where: str) -> Any:
    if isinstance(value, str):

        def env(m: re.Match[str]) -> str:
            if m.group(1) not in os.environ:
                raise SourceConfigError(f"{where}: environment variable {m.group(1)} is not set")
            return os.environ[m.group(1)]

        return _VAR.sub(env, value)
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def load_sources(path: Path) -> SourcesConfig:
    """The sources file, validated; SourceConfigError naming the file and the field."""
    from pydantic import ValidationError

    if not path.is_file():
        raise SourceConfigError(f"{path}: no sources file (set RESTATE_SOURCES_FILE)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SourceConfigError(f"{path}: not YAML: {exc}") from exc
    try:
        return SourcesConfig.model_validate(_expand(raw, path.name))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SourceConfigError(f"{path}: {where}: {first['msg']}") from exc
