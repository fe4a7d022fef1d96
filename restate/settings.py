"""The one settings object: every knob, read from RESTATE_* environment variables."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Telemetry of every tool in the stack is off: these machines have no internet and
# finance data must not leave the approved account.
TELEMETRY_OFF = {
    "DO_NOT_TRACK": "1",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "SODA_CORE_TELEMETRY_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


# Recompute scan rate of one X-Small warehouse, MB/s of raw landing data: see docs/scale.md.
SNOWFLAKE_MB_PER_S_XSMALL = 84.0


# The examples shipped with restate: their project folder and what goes with it.
BUNDLED_EXAMPLES: dict[Path, dict[str, Any]] = {
    PROJECT_ROOT / "dbt" / "billing": {
        "soda_contracts_dir": PROJECT_ROOT / "soda_checks" / "billing",
        "reference_exports": PROJECT_ROOT / "examples" / "billing" / "reference_exports.yml",
        "explainer": "examples.billing.explain:explain_period",
        "demo": "examples.billing.demo:run_demo",
    },
    PROJECT_ROOT / "dbt" / "northstar": {
        "soda_contracts_dir": PROJECT_ROOT / "soda_checks" / "northstar",
        "reference_exports": PROJECT_ROOT / "examples" / "northstar" / "reference_exports.yml",
        "explainer": "examples.northstar.explain:explain_period",
    },
}


class Settings(BaseSettings):
    """Configuration of one restate installation (embedded default: DuckDB + local folder)."""

    model_config = SettingsConfigDict(env_prefix="RESTATE_", env_file=".env", extra="ignore")

    engine: Literal["duckdb", "snowflake"] = "duckdb"
    data_dir: Path = Field(default=PROJECT_ROOT / "data", description="local working folder")
    duckdb_path: Path | None = Field(default=None, description="DuckDB file; default data_dir")
    landing_uri: str | None = Field(default=None, description="raw landing root (path or s3://)")
    finance_uri: str | None = Field(default=None, description="finance exports folder")
    dbt_project_dir: Path = PROJECT_ROOT / "dbt" / "billing"
    # Schema names are spliced into SQL as identifiers: plain names only.
    prod_schema: str = Field(default="analytics", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
    meta_schema: str = Field(default="restate_meta", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
    # profiles.yml folder (default: the project's own folder) and the profile name
    # (default: the one dbt_project.yml names).
    dbt_profiles_dir: Path | None = None
    dbt_profile: str | None = None
    dbt_target: str = "dev"
    dbt_threads: int = 4
    # DuckDB: memory it may hold before spilling to disk (its own default is 80% of RAM, and
    # it keeps what it read cached up to that) and its threads (None: one per core).
    # Applied to restate's sessions and to dbt's (they share the database in one process).
    duckdb_memory_limit: str = Field(default="1GB", pattern=r"^\s*\d+(\.\d+)?\s*([KMGT]i?B)\s*$")
    duckdb_threads: int | None = Field(default=None, ge=1)
    # DuckDB has one writer per file: between two chunks a restatement lets a process
    # waiting for the file (a load) in first, for up to this long (then it goes on, so two
    # processes can never wait for each other longer).
    duckdb_yield_s: float = Field(default=5.0, ge=0)
    # One writer at a time (DuckDB): consecutive chunks run as one statement per model, as
    # many as fit in this many seconds by the last window's pace, at most twice the last
    # window and never more than half of what is left (a kill loses at most that); a waiting
    # load gets in between two such write windows. 0: one chunk per statement.
    write_window_s: float = Field(default=1.0, ge=0)
    # dbt vars every invocation carries (RESTATE_PROJECT_VARS, a JSON object): e.g. the
    # version of a model's logic that a restatement corrects. Recorded with every run.
    project_vars: dict[str, Any] = Field(default_factory=dict)
    # The dbt selector `restate plan` uses when none is given (RESTATE_DEFAULT_SELECTOR).
    default_selector: str | None = None
    # The Soda contracts restate runs (every *.yml in it; see restate/validation/contracts.py), and
    # values for variables the contracts declare beyond the ones restate sets.
    # None: the bundled example's own when the project is one (see _bundled_defaults).
    soda_contracts_dir: Path | None = None
    soda_variables: dict[str, str | float] = Field(default_factory=dict)
    # The reference exports finance sends (a YAML file; see restate/validation/reference.py), read
    # from finance_uri. None: the project has none.
    reference_exports: Path | None = None
    # The project's root-cause explainer ("package.module:function"; restate/validation/explainer.py)
    # and its demo ("package.module:function"; `restate demo`). None: it has none.
    explainer: str | None = None
    demo: str | None = None

    # A Prefect API to run restatements on as flow runs (Prefect's own PREFECT_API_URL);
    # unset: `restate run` works in its own process, no Prefect server needed.
    prefect_api_url: str | None = Field(default=None, validation_alias="PREFECT_API_URL")

    # Crash tests only: SIGKILL the process at this step boundary (see restate/state/faults.py).
    crash_at: str | None = None

    # Incremental loads
    lookback_hours: int = Field(default=72, ge=0, description="re-read this much before watermark")

    # Restatements
    close_date: date | None = Field(default=None, description="periods before it are closed")
    chunk_days: int = Field(default=31, ge=1, description="max partition-date span of one chunk")
    account_buckets: int = Field(default=1, ge=1, description="account buckets per date range")
    # What a valid entity id (account, store, ...) looks like: ids are checked against it (and against the
    # source) before they reach any SQL, in planning and again in the dbt macro.
    entity_id_pattern: str = Field(default=r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}")
    # None: required on the production engine (snowflake), not on duckdb; a value wins.
    require_approval: bool | None = None
    # Who may approve restatements and force failed validations (RESTATE_APPROVERS, a JSON
    # list); Slack ids in slack_approvers count as `slack:<id>`. See restate/state/duties.py.
    approvers: list[str] = Field(default_factory=list)
    # Who runs the commands of this process (recorded apart from the named approver);
    # default: the OS user.
    actor: str | None = None
    # How long a flow run waits paused for an approver, and how often it checks.
    approval_timeout_s: int = Field(default=86_400, ge=1, description="pause before failing")
    approval_poll_s: int = Field(default=10, ge=1, description="paused flow checks this often")
    # threads: chunks run in the flow run's process (one DuckDB writer);
    # task_workers: chunks are queued to Prefect task workers (`prefect task serve`).
    chunk_execution: Literal["threads", "task_workers"] = "threads"
    chunk_overhead_s: float = Field(default=0.6, description="measured dbt cost per chunk")
    tolerance_pct: float = Field(default=0.05, description="finance diff tolerance, percent")
    # Nightly reconciliation: how many closed days back from the last finance export it checks.
    reconcile_days: int = Field(default=450, ge=1, description="closed days the nightly run checks")

    # Cost model (Snowflake): see docs/scale.md for where the throughput default comes from.
    credit_price_usd: float = 3.0
    warehouse_size: str = "MEDIUM"
    rows_per_second: float = Field(default=2_000_000.0, description="measured recompute rate")
    snowflake_mb_per_s_xsmall: float = Field(
        default=SNOWFLAKE_MB_PER_S_XSMALL, gt=0, description="recompute scan rate of an X-Small"
    )
    snowflake_bytes_per_row: float | None = Field(
        default=None, description="override the table's stored bytes per row"
    )
    snowflake_chunk_concurrency: int = Field(default=8, ge=1, description="chunks in flight")
    budget_usd: float = 15_000.0

    # Changelog tamper evidence: the MAC key and the chain-head checkpoints live outside
    # the warehouse. Key: RESTATE_AUDIT_KEY, else the key file (created on first use, 0600).
    audit_key: SecretStr | None = None
    audit_key_file: Path | None = Field(default=None, description="default state_dir/audit.key")
    audit_checkpoint_file: Path | None = Field(
        default=None, description="append-only chain-head checkpoints; default state_dir"
    )

    # Key of the keyed e-mail hash (customer_email_hash): RESTATE_PII_HASH_KEY, else the key
    # file (created on first use, 0600). Never written into the warehouse or the repo.
    pii_hash_key: SecretStr | None = None
    pii_hash_key_file: Path | None = Field(default=None, description="default state_dir/pii_hash.key")

    # Notifications
    slack_token: SecretStr | None = None
    slack_base_url: str = "https://slack.com/api/"
    slack_signing_secret: SecretStr | None = None
    # Where evidence packs are published for readers of the notices (an internal share or
    # bucket website): notices link <evidence_url>/restatement-<id>/evidence.html. Unset,
    # they name the pack's path on the tool's host and the email attaches the page.
    evidence_url: str | None = None
    # Payment webhooks (Stripe): the endpoint's signing secret (whsec_...), the accepted
    # age of a delivery's signature, the durable journal, the landing folder.
    stripe_webhook_secret: SecretStr | None = None
    webhook_tolerance_s: int = Field(default=300, ge=1, le=3600)
    webhook_journal: Path | None = Field(default=None, description="default state_dir/webhooks.sqlite")
    webhook_folder: str = "payments"
    # The source connectors' declarations (sources/config.py): PostgreSQL tables, SFTP drops.
    sources_file: Path | None = None
    slack_platform_channel: str = "#data-platform"
    slack_approvers: list[str] = Field(default_factory=list)
    # Who each Slack user is, by the name they plan and force with ({"U012ABC": "ana"}): the
    # approver gate then refuses Ana's click on her own restatement as it refuses `ana`.
    slack_people: dict[str, str] = Field(default_factory=dict)
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_s: float = 10.0
    email_from: str = "restate@localhost"

    # Snowflake (production engine)
    snowflake_account: str | None = None
    snowflake_user: str | None = None
    snowflake_password: SecretStr | None = None
    snowflake_database: str | None = None
    snowflake_warehouse: str | None = None
    snowflake_role: str | None = None
    snowflake_host: str | None = None
    snowflake_port: int | None = None
    snowflake_protocol: str = "https"
    snowflake_landing_table: str = Field(default="raw.events", description="COPY target of the stage")
    snowflake_stage: str = Field(default="raw.landing", description="external stage over landing_uri")
    snowflake_credentials_block: str | None = Field(
        default=None, description="prefect-snowflake SnowflakeCredentials block name"
    )

    # S3 landing (prefect-aws credentials or the plain AWS chain); endpoint for S3-compatibles.
    s3_endpoint_url: str | None = None
    aws_region: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_credentials_block: str | None = Field(
        default=None, description="prefect-aws AwsCredentials block name"
    )

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any, info: ValidationInfo) -> Any:
        # RESTATE_X="" on an optional path or name means "none", not the path "." or the
        # name "". Dates, flags and secrets keep refusing or keeping "" as they always did
        # (an empty close date must not switch the closed-period guard off).
        if value == "" and info.field_name is not None:
            field = cls.model_fields[info.field_name]
            kinds = get_args(field.annotation)
            if SecretStr in kinds:
                # An empty key would sign, MAC or hash with "": a template left blank
                # must stop the process, not open it.
                raise ValueError("is set but empty: unset it or give it a value")
            if field.default is None and type(None) in kinds and any(k in (Path, str) for k in kinds):
                return None
        return value

    @model_validator(mode="after")
    def _snowflake_uses_prod_target(self) -> Settings:
        # The dbt profile's Snowflake output is `prod`; `dev` is DuckDB only.
        if self.engine == "snowflake" and self.dbt_target == "dev":
            self.dbt_target = "prod"
        return self

    @model_validator(mode="after")
    def _bundled_defaults(self) -> Settings:
        # A bundled example's contracts, reference exports, explainer and demo are the
        # defaults only while the project is that example: a user's own project never
        # runs an example's checks or explainer by accident. Set values always win.
        example = BUNDLED_EXAMPLES.get(self.dbt_project_dir.resolve())
        for key, value in (example or {}).items():
            if key not in self.model_fields_set:
                setattr(self, key, value)
        return self

    @property
    def warehouse_path(self) -> Path:
        return self.duckdb_path or self.data_dir / "warehouse.duckdb"

    @property
    def warehouse_id(self) -> str:
        """Which warehouse this installation writes: keeps cached results of one out of another."""
        if self.engine == "snowflake":
            where = f"snowflake://{self.snowflake_account}/{self.snowflake_database}/{self.meta_schema}"
        else:
            where = f"duckdb://{self.warehouse_path.resolve()}/{self.meta_schema}"
        return hashlib.sha256(where.encode()).hexdigest()[:12]

    @property
    def landing(self) -> str:
        return self.landing_uri or str(self.data_dir / "landing")

    @property
    def finance(self) -> str:
        return self.finance_uri or str(self.data_dir / "finance")

    def dbt_vars(self) -> dict[str, Any]:
        """dbt vars every invocation carries (RESTATE_PROJECT_VARS)."""
        return dict(self.project_vars)

    @property
    def chunk_concurrency(self) -> int:
        """Chunks in flight at once: one DuckDB writer; Snowflake scales out."""
        return 1 if self.engine == "duckdb" else self.snowflake_chunk_concurrency

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def state_dir(self) -> Path:
        """Where the tool keeps dbt manifests and Prefect results between runs."""
        return self.data_dir / "state"

    @property
    def webhook_journal_path(self) -> Path:
        return self.webhook_journal or self.state_dir / "webhooks.sqlite"

    @property
    def audit_key_path(self) -> Path:
        return self.audit_key_file or self.state_dir / "audit.key"

    @property
    def audit_checkpoint_path(self) -> Path:
        return self.audit_checkpoint_file or self.state_dir / "audit_checkpoints.jsonl"

    def pii_key(self) -> str:
        """The e-mail hash key: the setting, else the key file (created once, mode 0600)."""
        if self.pii_hash_key is not None:
            return self.pii_hash_key.get_secret_value()
        path = self.pii_hash_key_file or self.state_dir / "pii_hash.key"
        if not path.exists():
            import secrets
            import tempfile

            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".pii-key-")  # mode 0600
            try:
                os.write(fd, (secrets.token_hex(32) + "\n").encode())
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)  # atomic: whoever links first wins, everyone reads that key
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
        key = path.read_text().strip()
        if not key:
            raise ValueError(
                f"the e-mail hash key file {path} is empty: restore it or set RESTATE_PII_HASH_KEY"
            )
        return key

    def dbt_env(self) -> dict[str, str]:
        """Environment the dbt profile reads through env_var()."""
        env = {
            **TELEMETRY_OFF,
            # Read by restate.dbt_s3_plugin into a DuckDB session variable (never rendered
            # into SQL, so never in a view definition or dbt's target/ files).
            "DBT_RESTATE_PII_HASH_KEY": self.pii_key(),
            "DBT_RESTATE_DUCKDB_PATH": str(self.warehouse_path),
            "DBT_RESTATE_LANDING_URI": self.landing.rstrip("/"),
            "DBT_RESTATE_PROD_SCHEMA": self.prod_schema,
            "DBT_RESTATE_THREADS": str(self.dbt_threads),
            "DBT_RESTATE_TARGET": self.dbt_target,
            # Read by restate.dbt_s3_plugin when dbt opens the DuckDB file first.
            "DBT_RESTATE_DUCKDB_MEMORY_LIMIT": self.duckdb_memory_limit.strip(),
            "DBT_RESTATE_DUCKDB_THREADS": str(self.duckdb_threads or ""),
        }
        # s3:// landing: dbt-duckdb's fsspec filesystem and s3fs read the standard AWS chain.
        aws = {
            "AWS_ENDPOINT_URL_S3": self.s3_endpoint_url,
            "AWS_DEFAULT_REGION": self.aws_region,
            "AWS_ACCESS_KEY_ID": self.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": (
                self.aws_secret_access_key.get_secret_value() if self.aws_secret_access_key else None
            ),
        }
        env.update({k: v for k, v in aws.items() if v})
        if self.engine == "snowflake":
            # Account, user, secret and role: from the credentials block when one is named,
            # so dbt and Soda log in as the tool's own SQL does.
            from restate.engines.credentials import snowflake_connect_kwargs

            login = snowflake_connect_kwargs(self)
            env.update(
                {
                    "DBT_RESTATE_SNOWFLAKE_ACCOUNT": login.get("account") or "",
                    "DBT_RESTATE_SNOWFLAKE_USER": login.get("user") or "",
                    "DBT_RESTATE_SNOWFLAKE_PASSWORD": login.get("password") or "",
                    "DBT_RESTATE_SNOWFLAKE_DATABASE": self.snowflake_database or "",
                    "DBT_RESTATE_SNOWFLAKE_WAREHOUSE": self.snowflake_warehouse or "",
                    "DBT_RESTATE_SNOWFLAKE_ROLE": login.get("role") or "",
                    "DBT_RESTATE_SNOWFLAKE_PORT": str(self.snowflake_port or 443),
                    "DBT_RESTATE_SNOWFLAKE_PROTOCOL": self.snowflake_protocol,
                }
            )
            # Soda's data source file reads the host too; default: the account's endpoint.
            env["DBT_RESTATE_SNOWFLAKE_HOST"] = (
                self.snowflake_host or f"{login.get('account') or ''}.snowflakecomputing.com"
            )
        return env


def apply_process_env(settings: Settings) -> None:
    """Export what dbt, Soda and Prefect read from the process environment."""
    os.environ.update(settings.dbt_env())


def prefect_env(settings: Settings) -> dict[str, str]:
    """Where Prefect keeps its state for this installation (not ~/.prefect), telemetry off."""
    return {
        # Task parameters and results go to Prefect's default, <PREFECT_HOME>/storage: every
        # process sharing a home (a flow run a worker starts, a restate worker, this CLI)
        # reads what the others wrote.
        "PREFECT_HOME": str(settings.state_dir / "prefect"),
        # Prefect's temporary server needs more than its 20 s default on a busy machine.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }


def prepare_prefect(settings: Settings) -> None:
    """Point Prefect at the installation's state folder before Prefect is imported: Prefect
    reads its settings once, at import, so setting them later has no effect. Values already
    in the environment win (a team deployment sets its own); telemetry is always off."""
    import sys

    os.environ.update(TELEMETRY_OFF)
    if "prefect" in sys.modules:
        return  # too late to matter (and a test session keeps its own Prefect home)
    for key, value in prefect_env(settings).items():
        os.environ.setdefault(key, value)
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)


@lru_cache(maxsize=1)
def _settings_from_environment() -> Settings:
    return Settings()


_active: list[Settings] = []


def get_settings() -> Settings:
    """The installation's settings (read once from the environment), or the ones a
    use_settings block made current (the demo runs the real flows on its own folder)."""
    return _active[-1] if _active else _settings_from_environment()


def _clear_settings_cache() -> None:
    _settings_from_environment.cache_clear()


get_settings.cache_clear = _clear_settings_cache  # type: ignore[attr-defined]


@contextmanager
def use_settings(settings: Settings) -> Iterator[Settings]:
    """Within the block every get_settings() in this process returns these settings."""
    _active.append(settings)
    try:
        yield settings
    finally:
        _active.remove(settings)
