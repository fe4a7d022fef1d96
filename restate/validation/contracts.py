"""Validation with Soda v4 data contracts (every ``*.yml`` in the contracts folder).

Contracts are discovered by dataset name: each file's ``dataset`` names the table it
checks (its last segment) and, through a variable, the schema (``${var.schema}``: the
checked schema; ``${var.source_schema}``: where the restated models' upstreams are;
``${var.meta_schema}``: reference exports). One validation runs every contract for one
schema and period: a restatement's isolated ``restate_<id>`` before promotion, or
production for the nightly reconciliation. Soda evaluates every check; this module fills the contract
variables from the settings object, hands Soda the warehouse connection, turns
Soda's results into a :class:`ValidationResult` and finds the offending partitions
(event dates) of each failing check.

Where Soda's open-source check types cannot express a rule on their own - the
cross-table reconciliations (raw row accounting against the landing files, refund
rate against the raw events, totals against the finance exports) - the rule is
written as a Soda ``failed_rows`` check whose ``query`` returns one row per
offending partition, so Soda still decides pass/fail (count must be 0). Soda only
reports how many rows failed, not which, so for a failing check this module runs
the same query (read from the contract, with the same variables) to list the
partitions and by how much they are off. Likewise Soda's ``duplicate``,
``missing`` and ``invalid`` checks report counts only; their offending partitions
come from one SQL query each, derived from the check's own definition.

Reference exports are files; Soda cannot read them, so :mod:`restate.validation.reference` loads
each declared export into ``<meta>.reference_<name>`` first, and a contract may check it.

Variables every contract may use: database_prefix, schema, prod_schema, meta_schema,
source_schema, period_start, period_end, loaded_until, source_loaded_until,
tolerance_pct, landing_relation, landing_processed_at, landing_try_cast, the settings'
``soda_variables``, and ``relation``: the checked table itself, or - for a restatement
of some entities only - that table merged with production's other entities (what
promotion would publish).

DuckDB allows one writing process per file. Inside this process Soda gets a
cursor of the engine's own connection (same database instance), so validation
works while the tool holds the file; ``soda_checks/datasources/duckdb.yml`` is for
running the contracts with the soda CLI when nothing else holds it.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from restate.contract.entities import check_entity_ids
from restate.contract.spec import ContractError, ProjectContract
from restate.engines.base import Engine
from restate.ingest import landing
from restate.settings import PROJECT_ROOT, Settings, apply_process_env
from restate.state.clock import utc_now
from restate.validation import kept_checks, reference
from restate.yaml_cache import load_yaml

DATASOURCES_DIR = PROJECT_ROOT / "soda_checks" / "datasources"
DATA_SOURCE_NAME = "restate"
MAX_DETAIL_ROWS = 50
MAX_PARTITIONS = 1000
FAR_FUTURE = datetime(9999, 12, 31)
_VAR = re.compile(r"\$\{ *var\.([a-zA-Z_][a-zA-Z_0-9]*) *\}")


@dataclass
class ValidationCheck:
    """One Soda check's outcome, with what it measured and where it failed."""

    name: str
    dataset: str
    check_type: str
    outcome: str  # passed | failed | warned | not_evaluated
    passed: bool  # passed or only warned
    measured: float | None
    threshold: str
    column: str | None = None
    partitions: list[str] = field(default_factory=list)
    details: list[dict[str, Any]] = field(default_factory=list)
    # The contract's qualifier of the check (e.g. finance_daily), when it has one.
    qualifier: str | None = None
    # A partition-local check that passed in an earlier validation (its id) and was run
    # again only on ``scanned`` ("<first>..<last>" date; "" when no date changed).
    kept_from: str | None = None
    scanned: str | None = None

    @property
    def warned(self) -> bool:
        return self.outcome == "warned"


@dataclass
class ValidationResult:
    """Every contract's checks for one schema and period; ``passed`` gates promotion."""

    validation_id: str
    scope: str
    schema: str
    period_start: date
    period_end: date
    restatement_id: int | None
    passed: bool
    checks: list[ValidationCheck]
    errors: list[str]
    variables: dict[str, str | float]
    checked_at: datetime
    duration_s: float
    # Contracts not run, with why: a restatement's validation leaves production's own
    # (unchanged) relations to the loads and the nightly reconciliation.
    skipped: list[str] = field(default_factory=list)
    # What a later validation needs to keep this one's partition-local passes
    # (restate.validation.kept_checks): "inputs" (fingerprint), "digests" (per restated
    # relation and date), "chunks" (each chunk's state), "log_version" (the changelog's),
    # and, when this one kept checks, "from", "span" and "checks".
    kept: dict[str, Any] = field(default_factory=dict)

    @property
    def failed_checks(self) -> list[ValidationCheck]:
        return [c for c in self.checks if not c.passed]

    @property
    def warned_checks(self) -> list[ValidationCheck]:
        return [c for c in self.checks if c.warned]

    def check(self, name_part: str, dataset: str | None = None) -> ValidationCheck:
        """The one check whose name contains name_part (and on dataset's table, if given)."""
        found = [
            c
            for c in self.checks
            if name_part in c.name and (dataset is None or c.dataset.endswith(f".{dataset}"))
        ]
        if len(found) != 1:
            raise KeyError(f"{len(found)} checks match {name_part!r}: {[c.name for c in found]}")
        return found[0]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["period_start"] = self.period_start.isoformat()
        data["period_end"] = self.period_end.isoformat()
        data["checked_at"] = self.checked_at.isoformat()
        return data


# --------------------------------------------------------------------------- variables


@dataclass(frozen=True)
class _Restatement:
    accounts: list[str] | None
    source_watermark: datetime | None


def _restatement(engine: Engine, settings: Settings, restatement_id: int | None) -> _Restatement:
    if restatement_id is None or not engine.relation_exists(settings.meta_schema, "restatements"):
        return _Restatement(None, None)
    rows = engine.query(
        f"select accounts, source_watermark from {settings.meta_schema}.restatements "
        "where restatement_id = ?",
        [restatement_id],
    )
    if not rows:
        return _Restatement(None, None)
    accounts, watermark = rows[0]
    listed = [a.strip() for a in accounts.split(",") if a.strip()] if accounts else None
    # The ids are rendered into the contracts' SQL text (Soda takes no bind parameters):
    # check them against the declared pattern again, whatever the warehouse holds.
    check_entity_ids(listed or [], settings.entity_id_pattern)
    return _Restatement(listed or None, watermark)


def _prod_watermark(engine: Engine, settings: Settings) -> datetime | None:
    if not engine.relation_exists(settings.meta_schema, "loads"):
        return None
    value: datetime | None = engine.scalar(
        f"select max(ingested_until) from {settings.meta_schema}.loads where status = 'success'"
    )
    return value


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ts(value: datetime | None) -> str:
    return (value or FAR_FUTURE).isoformat(sep=" ")


@dataclass(frozen=True)
class Dataset:
    """One contract file and the table it checks."""

    table: str
    path: Path
    partition_column: str | None
    relation: str
    schema: str  # the schema its dataset names, variables resolved


def contract_variables(
    engine: Engine,
    settings: Settings,
    schema: str,
    period_start: date,
    period_end: date,
    restatement_id: int | None = None,
    project: ProjectContract | None = None,
) -> dict[str, str | float]:
    """The values of the contracts' variables for one validation (``relation`` is per contract)."""
    prod = settings.prod_schema
    restatement = _restatement(engine, settings, restatement_id)
    prod_watermark = _prod_watermark(engine, settings)
    upstreams = sorted({c.upstream.model for c in project.models.values()}) if project else []
    rebuilt_sources = (
        schema != prod and bool(upstreams) and all(engine.relation_exists(schema, t) for t in upstreams)
    )
    source_schema = schema if rebuilt_sources else prod
    restated_at = restatement.source_watermark or prod_watermark
    lc = project.landing if project else None
    landed = landing.relation(engine, lc) if lc else None
    if lc and landed:
        landing_relation, landing_time = landed, landing.processed_at(engine, lc)
    else:  # no landing (yet): an empty relation with the processing-time column
        landing_relation = (
            "(select cast(null as timestamp) as landing_processed_at where 1 = 0) as no_landing"
        )
        landing_time = "landing_processed_at"
    database_prefix = (
        f"{settings.snowflake_database}/"
        if settings.engine == "snowflake" and settings.snowflake_database
        else ""
    )
    variables: dict[str, str | float] = {
        **{k: v for k, v in settings.soda_variables.items()},
        "database_prefix": database_prefix,
        "schema": schema,
        "prod_schema": prod,
        "meta_schema": settings.meta_schema,
        "source_schema": source_schema,
        "landing_relation": landing_relation,
        "landing_processed_at": landing_time,
        # DuckDB's landing view may hold string-typed columns: a value that does not parse
        # is missing there (and its row quarantined), as in a staging model.
        "landing_try_cast": "try_cast" if engine.name == "duckdb" else "cast",
        "period_start": period_start.isoformat(),
        "period_end": period_end.isoformat(),
        # The restated mart reflects the landing up to the restatement's source
        # watermark; production's intermediate tables up to the last load.
        "loaded_until": _ts(restated_at if schema != prod else prod_watermark),
        "source_loaded_until": _ts(restated_at if rebuilt_sources else prod_watermark),
        "tolerance_pct": float(settings.tolerance_pct),
    }
    return variables


def _dataset_parts(spec: dict[str, Any], variables: dict[str, str | float]) -> tuple[str, str]:
    """(schema, table) a contract's dataset names, its variables resolved."""
    parts = resolve_variables(str(spec.get("dataset") or ""), variables).split("/")
    if len(parts) < 3 or not parts[-1] or not parts[-2]:
        raise ContractError(f"dataset {spec.get('dataset')!r} must be <data source>/<schema>/<table>")
    return parts[-2], parts[-1]


def discover_datasets(
    engine: Engine,
    settings: Settings,
    variables: dict[str, str | float],
    project: ProjectContract | None,
    restatement_id: int | None,
) -> list[Dataset]:
    """Every contract in the contracts folder, with the table it checks (in file order)."""
    folder = settings.soda_contracts_dir
    if folder is None:
        raise ContractError("no Soda contracts folder is set: set RESTATE_SODA_CONTRACTS_DIR")
    if not folder.is_dir():
        raise ContractError(f"no Soda contracts folder at {folder} (RESTATE_SODA_CONTRACTS_DIR)")
    restatement = _restatement(engine, settings, restatement_id)
    models = project.models if project else {}
    references = {f"reference_{r.name}": r for r in reference.declared(settings)}
    found: list[Dataset] = []
    for path in sorted(folder.glob("*.yml")):
        spec = load_yaml(path.read_text()) or {}
        schema, table = _dataset_parts(spec, variables)
        contract = models.get(table)
        partition = contract.date_column if contract else None
        for c in models.values():  # an upstream or quarantine model has its mart's date column
            if partition is None and table in (
                c.upstream.model,
                c.quarantine.model if c.quarantine else None,
            ):
                partition = c.date_column
        if table in references:
            partition = references[table].date_column
        relation = f"{schema}.{table}"
        if contract and contract.entity_column and restatement.accounts and schema != settings.prod_schema:
            # What promotion would publish: the restated entities from the isolated schema,
            # every other entity from production.
            listed = ", ".join(_sql_str(a) for a in restatement.accounts)
            relation = (
                f"(select * from {schema}.{table} union all select * from {settings.prod_schema}.{table} "
                f"where {contract.entity_column} not in ({listed})) as checked"
            )
        found.append(Dataset(table, path, partition, relation, schema))
    if not found:
        raise ContractError(f"the Soda contracts folder {folder} holds no *.yml contract")
    return found


def resolve_variables(text: str, variables: dict[str, str | float]) -> str:
    """Substitute ${var.NAME} the way Soda does (used to re-run a check's query)."""
    return _VAR.sub(lambda m: str(variables[m.group(1)]), text)


# --------------------------------------------------------------------------- Soda


@contextmanager
def _data_source(engine: Engine, settings: Settings) -> Iterator[Any]:
    """A Soda data source on the engine's warehouse.

    DuckDB: a cursor of the engine's own connection, i.e. the same database
    instance, so Soda works while this process holds the file. Other engines:
    the data source file soda_checks/datasources/<engine>.yml.
    """
    con = getattr(engine, "con", None)
    if engine.name == "duckdb" and con is not None:
        from soda_duckdb import DuckDBDataSource

        cursor = con.cursor()
        try:
            yield DuckDBDataSource.from_existing_cursor(cursor, DATA_SOURCE_NAME)
        finally:
            cursor.close()
        return
    from soda_core.common.data_source_impl import DataSourceImpl
    from soda_core.common.yaml import DataSourceYamlSource

    path = DATASOURCES_DIR / f"{engine.name}.yml"
    spec = load_yaml(path.read_text())
    if engine.name == "snowflake":
        from restate.engines.snowflake import encode_query_tag

        # Soda opens its own session: give it the engine's query tag (cost attribution).
        tag = encode_query_tag(engine.query_tag_for())
        spec["connection"]["session_parameters"] = {"QUERY_TAG": tag}
    source = DataSourceYamlSource.from_str(yaml.safe_dump(spec, sort_keys=False), file_path=str(path))
    impl = DataSourceImpl.from_yaml_source(source)
    try:
        yield impl
    finally:
        if impl is not None:
            impl.close_connection()


def warm_soda(engine_name: str) -> None:
    """Import Soda's contract session and the engine's data source (a process's first
    Soda session pays this; restate.actions.warm_up pays it ahead)."""
    import soda_core.common.yaml
    import soda_core.contracts.contract_verification  # noqa: F401

    if engine_name == "duckdb":
        import soda_duckdb  # noqa: F401


# A check of a contract: its type, its body, and its column's entry (None: dataset level).
_Pick = Callable[[str, dict[str, Any], dict[str, Any] | None], bool]


@dataclass(frozen=True)
class _Part:
    """What of one contract a Soda session runs: every check, or only the checks whose
    keys are in ``only``, or all but those in ``but``; a narrowed part only on ``span``
    (the dates changed since validation ``kept_from``)."""

    ds: Dataset
    variables: dict[str, str | float]
    dataset: str = ""
    only: frozenset[str] | None = None
    but: frozenset[str] = frozenset()
    kept_from: str | None = None
    span: tuple[date, date] | None = None

    def picks(self, kind: str, body: dict[str, Any], column: dict[str, Any] | None) -> bool:
        key = _check_key(self.dataset, kind, body, column)
        return (self.only is None or key in self.only) and key not in self.but

    @property
    def scanned(self) -> str | None:
        return None if self.span is None else f"{self.span[0]}..{self.span[1]}"


def _verify(
    engine: Engine, settings: Settings, variables: dict[str, str | float], parts: list[_Part]
) -> tuple[list[Any], list[str]]:
    """Run every contract part in one Soda session; (contract results, error messages)."""
    from soda_core.contracts.contract_verification import ContractVerificationSession

    sources = [_contract_source(part, engine) for part in parts]
    with _data_source(engine, settings) as data_source:
        session = ContractVerificationSession.execute(
            contract_yaml_sources=sources,
            data_source_impls=[data_source],
            variables=dict(variables),
        )
    errors = list(session.get_errors())
    return list(session.contract_verification_results), errors


def _with_relation(text: str, ds: Dataset) -> str:
    """The contract text with ``${var.relation}`` (per contract) resolved."""
    return re.sub(r"\$\{ *var\.relation *\}", lambda _: ds.relation, text)


def _spec_checks(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any] | None]]:
    """(type, body, column entry or None) of every check of a contract spec."""
    for item in spec.get("checks") or []:
        if isinstance(item, dict):
            for kind, body in item.items():
                yield kind, body if isinstance(body, dict) else {}, None
    for column in spec.get("columns") or []:
        for item in column.get("checks") or []:
            if isinstance(item, dict):
                for kind, body in item.items():
                    yield kind, body if isinstance(body, dict) else {}, column


def _picked(spec: dict[str, Any], pick: _Pick) -> None:
    """Keep in ``spec`` only the checks ``pick`` keeps."""

    def keep(item: Any, column: dict[str, Any] | None) -> bool:
        return isinstance(item, dict) and any(
            pick(t, b if isinstance(b, dict) else {}, column) for t, b in item.items()
        )

    spec["checks"] = [i for i in spec.get("checks") or [] if keep(i, None)]
    for column in spec.get("columns") or []:
        if column.get("checks"):
            column["checks"] = [i for i in column["checks"] if keep(i, column)]
            if not column["checks"]:
                del column["checks"]
    if not spec["checks"]:
        del spec["checks"]


def _narrow(spec: dict[str, Any], ds: Dataset, span: tuple[date, date], variables: dict[str, Any]) -> None:
    """Narrow a part's checks to ``span``: the built-in ones by a predicate added to the
    contract filter that leaves out only the period's dates outside the span (a row with
    no date or outside the period is checked as before; the period variables keep their
    whole-period values), a declared partition-local query by setting the period
    variables in its own text."""
    day = f"cast({ds.partition_column} as date)"
    first, last = (f"date '{d.isoformat()}'" for d in span)
    start, end = (f"date '{variables[k]}'" for k in ("period_start", "period_end"))
    on_span = f"({day} between {first} and {last} or {day} is null or {day} not between {start} and {end})"
    spec["filter"] = f"({spec['filter']}) and {on_span}" if spec.get("filter") else on_span
    dates = {"period_start": span[0].isoformat(), "period_end": span[1].isoformat()}
    for kind, body, _ in _spec_checks(spec):
        if kind == "failed_rows" and body.get("query"):
            body["query"] = _VAR.sub(lambda m: dates.get(m.group(1), m.group(0)), str(body["query"]))


def _contract_source(part: _Part, engine: Engine) -> Any:
    """The contract as Soda gets it, with names in the case the warehouse stores them.

    Soda quotes every identifier it writes (dataset path, column names), so on a
    warehouse that stores unquoted names in upper case (Snowflake) the contract's
    lower-case names would not match; they are folded here. The SQL inside the checks
    is unquoted and is left as written.
    """
    from soda_core.common.yaml import ContractYamlSource

    ds, variables = part.ds, part.variables
    path = ds.path
    fold = engine.fold_identifier
    # Soda gets the contract as restate read it (PyYAML), never the raw text: both see one
    # contract even where YAML 1.1 and 1.2 read a value differently.
    spec = load_yaml(_with_relation(path.read_text(), ds))
    if part.only is not None or part.but:
        _picked(spec, part.picks)
    if part.span is not None:
        _narrow(spec, ds, part.span, variables)
    data_source, *parts = resolve_variables(spec["dataset"], variables).split("/")
    spec["dataset"] = "/".join([data_source, *(fold(p) for p in parts)])
    for column in spec.get("columns") or []:
        column["name"] = fold(column["name"])
    for item in spec.get("checks") or []:
        for body in item.values():
            if isinstance(body, dict) and isinstance(body.get("columns"), list):
                body["columns"] = [fold(c) for c in body["columns"]]
    return ContractYamlSource.from_str(yaml.safe_dump(spec, sort_keys=False), file_path=str(path))


# --------------------------------------------------------------------------- results


def _outcome(result: Any) -> str:
    return {
        "PASSED": "passed",
        "FAILED": "failed",
        "WARN": "warned",
    }.get(result.outcome.name, "not_evaluated")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | Decimal):
        return float(value)
    return None


def _threshold_text(check: Any, spec: dict[str, Any]) -> str:
    """Soda's thresholds of a check as one line, e.g. 'fail unless < 0.1 percent; warn unless = 0'."""
    ops = [
        ("must_be", "="),
        ("must_not_be", "!="),
        ("must_be_greater_than", ">"),
        ("must_be_greater_than_or_equal", ">="),
        ("must_be_less_than", "<"),
        ("must_be_less_than_or_equal", "<="),
    ]
    unit = " percent" if (spec.get("threshold") or {}).get("metric") == "percent" else ""
    parts = []
    for threshold in (check.threshold, check.warn_threshold):
        if threshold is None:
            continue
        terms = [
            f"{sym} {getattr(threshold, attr)}" for attr, sym in ops if getattr(threshold, attr) is not None
        ]
        if terms:
            parts.append(f"{threshold.level} unless {' and '.join(terms)}{unit}")
    return "; ".join(parts) or "must pass"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _partition_label(value: Any, column: str) -> str:
    if value is None:
        return "(no date)"
    if column.lower().endswith("month") and isinstance(value, date):
        return value.strftime("%Y-%m")
    return value.isoformat() if isinstance(value, date) else str(value)


class _Contract:
    """A contract file as YAML, to find a check's definition from Soda's result."""

    def __init__(self, ds: Dataset, variables: dict[str, str | float]) -> None:
        self.table = ds.table
        self.partition_column = ds.partition_column
        self.spec: dict[str, Any] = load_yaml(_with_relation(ds.path.read_text(), ds))
        self.variables = {**_contract_defaults(self.spec), **variables}

    def check_spec(self, check: Any) -> dict[str, Any]:
        if check.column_name:
            for column in self.spec.get("columns") or []:
                if str(column.get("name")).lower() == check.column_name.lower():
                    for item in column.get("checks") or []:
                        if check.type in item:
                            return item[check.type] or {}
            return {}
        for item in self.spec.get("checks") or []:
            body = item.get(check.type, None) if check.type in item else None
            if check.type in item and (body or {}).get("qualifier") == check.qualifier:
                return body or {}
        return {}

    def relation(self, schema: str) -> str:
        return f"{schema}.{self.table}"

    def where(self, spec: dict[str, Any]) -> str:
        """The contract filter and the check's own filter, as Soda applies them."""
        text = f"({self.spec['filter']})" if self.spec.get("filter") else "true"
        if spec.get("filter"):
            text += f" and ({spec['filter']})"
        return resolve_variables(text, self.variables)


def _query_rows(engine: Engine, sql: str) -> list[dict[str, Any]]:
    return engine.query_dicts(f"select * from ({sql}) as offending limit {MAX_PARTITIONS}")


def _diagnose(
    engine: Engine, contract: _Contract, schema: str, check: Any, result: Any, spec: dict[str, Any]
) -> tuple[list[str], list[dict[str, Any]]]:
    """(offending partitions, offending rows) of a check that did not pass."""
    relation = contract.relation(schema)
    rows: list[dict[str, Any]] = []
    if check.type == "schema":
        details: list[dict[str, Any]] = []
        for name in getattr(result, "expected_column_names_not_actual", []) or []:
            details.append({"column": name, "problem": "missing"})
        for name in getattr(result, "actual_column_names_not_expected", []) or []:
            details.append({"column": name, "problem": "not expected"})
        for mismatch in getattr(result, "column_data_type_mismatches", []) or []:
            details.append(
                {
                    "column": mismatch.column,
                    "problem": "data type",
                    "expected": mismatch.get_expected(),
                    "actual": mismatch.get_actual(),
                }
            )
        if getattr(result, "are_columns_out_of_order", False):
            details.append({"problem": "columns out of order"})
        return [], details
    if check.type == "row_count":
        return [], [{"rows": _number(result.threshold_value)}]
    where = contract.where(spec)
    sql: str | None = None
    if check.type == "failed_rows" and spec.get("query"):
        sql = resolve_variables(spec["query"], contract.variables)
    elif check.type == "failed_rows" and spec.get("expression"):
        expression = resolve_variables(spec["expression"], contract.variables)
        sql = f"select * from {relation} where {where} and ({expression})"
    elif check.type == "duplicate":
        keys = spec.get("columns") or ([check.column_name] if check.column_name else [])
        on = " and ".join(f"s.{k} = d.{k}" for k in keys)
        pc = contract.partition_column
        lead = [pc] if pc and pc not in keys else []
        shown = ", ".join(f"s.{k}" for k in [*lead, *keys])
        sql = (
            f"with scoped as (select * from {relation} where {where}), "
            f"dups as (select {', '.join(keys)}, count(*) as copies from scoped "
            f"group by {', '.join(keys)} having count(*) > 1) "
            f"select {shown}, d.copies from scoped as s inner join dups as d on {on}"
        )
    elif check.type == "missing" and check.column_name:
        sql = f"select * from {relation} where {where} and {check.column_name} is null"
    elif check.type == "invalid" and check.column_name and spec.get("valid_values"):
        allowed = ", ".join(_sql_str(str(v)) for v in spec["valid_values"])
        sql = (
            f"select * from {relation} where {where} "
            f"and {check.column_name} is not null and {check.column_name} not in ({allowed})"
        )
    if sql is None:
        return [], []
    rows = _query_rows(engine, sql)
    partitions: list[str] = []
    column = _partition_column(rows, contract.partition_column)
    if column:
        rows.sort(key=lambda r: _partition_label(r[column], column))
        values = [r[column] for r in rows]
        if len(rows) >= MAX_PARTITIONS:  # more rows than fetched: ask for the partitions alone
            values = [v for (v,) in engine.query(f"select distinct {column} from ({sql}) as offending")]
        partitions = sorted({_partition_label(v, column) for v in values})
    details = [
        {k: _partition_label(v, k) if k == column else _jsonable(v) for k, v in r.items()}
        for r in rows[:MAX_DETAIL_ROWS]
    ]
    return partitions, details


def _partition_column(rows: list[dict[str, Any]], declared: str | None) -> str | None:
    """Which column of the offending rows names their partition: the dataset's declared date
    column when the rows carry it, else the first column holding dates."""
    if not rows:
        return None
    if declared and declared in rows[0]:
        return declared
    return next((k for k, v in rows[0].items() if isinstance(v, date) and not isinstance(v, datetime)), None)


def _short_errors(messages: list[str]) -> list[str]:
    """Soda's error messages without the SQL they quote: the first line and the
    database's own error lines, once each."""
    out: list[str] = []
    for message in messages:
        lines = [line.strip() for line in message.splitlines() if line.strip()]
        for line in lines[:1] + [x for x in lines[1:] if "Error:" in x or "Exception:" in x]:
            line = line[:300]
            if line not in out:
                out.append(line)
    return out[:10]


def _collect(
    engine: Engine, parts: list[_Part], contract_results: list[Any]
) -> tuple[list[ValidationCheck], list[str]]:
    checks: list[ValidationCheck] = []
    errors: list[str] = []
    for part, contract_result in zip(parts, contract_results, strict=True):
        ds, variables = part.ds, part.variables
        contract = _Contract(ds, variables)
        schema = ds.schema
        dataset = f"{schema}.{ds.table}"
        if contract_result.has_errors or not contract_result.check_results:
            reasons = _short_errors(contract_result.get_errors()) or ["no check results"]
            errors.append(f"{dataset}: contract could not be verified: {'; '.join(reasons)}")
        for result in contract_result.check_results:
            check = result.check
            column_name = check.column_name.lower() if check.column_name else None
            spec = contract.check_spec(check)
            outcome = _outcome(result)
            name = check.name or check.type
            if column_name and check.type in ("missing", "invalid", "duplicate"):
                name = f"{column_name}: {name}"
            partitions: list[str] = []
            details: list[dict[str, Any]] = []
            if outcome in ("failed", "warned"):
                try:
                    partitions, details = _diagnose(engine, contract, schema, check, result, spec)
                except Exception as exc:  # the verdict stands; only the listing failed
                    details = [{"diagnosis_error": str(exc)}]
            checks.append(
                ValidationCheck(
                    name=name,
                    dataset=dataset,
                    check_type=check.type,
                    outcome=outcome,
                    passed=outcome in ("passed", "warned"),
                    measured=_number(result.threshold_value),
                    threshold=_threshold_text(check, spec),
                    column=column_name,
                    partitions=partitions,
                    details=details,
                    qualifier=check.qualifier or None,
                    kept_from=part.kept_from,
                    scanned=part.scanned,
                )
            )
    return checks, errors


def declared_key_checks(
    engine: Engine,
    project: ProjectContract,
    schema: str,
    start: date,
    end: date,
    narrowing: _Narrowing | None = None,
) -> list[ValidationCheck]:
    """restate's own check, whatever the project's Soda contracts say: in every restatable
    model present in ``schema``, the declared keys (meta.restate.keys) are unique in the
    period; the diff and the promotion match rows on them. The keys include the date
    column (restate.contract.spec), so with ``narrowing`` a check that passed before runs
    on its span only."""
    out = []
    for c in project.models.values():
        if not engine.relation_exists(schema, c.model):
            continue
        keys = ", ".join(c.keys)
        dataset = f"{schema}.{c.model}"
        key = kept_checks.check_key(dataset, "declared_keys", None, "declared_keys")
        narrowed = narrowing is not None and dataset in narrowing.datasets and narrowing.previous.keeps(key)
        first, last = start, end
        if narrowing is not None and narrowed:
            if narrowing.span is None:
                out.append(narrowing.copied(key))
                continue
            first, last = narrowing.span
        rows = engine.query(
            f"select {c.date_column}, count(*) - 1 from {schema}.{c.model} "
            f"where {c.date_column} between ? and ? group by {keys} having count(*) > 1 "
            f"order by 1 limit {MAX_PARTITIONS}",
            [first, last],
        )
        extra = sum(int(r[1]) for r in rows)
        out.append(
            ValidationCheck(
                name=f"declared keys ({keys}) are unique",
                dataset=f"{schema}.{c.model}",
                check_type="declared_keys",
                outcome="failed" if rows else "passed",
                passed=not rows,
                measured=float(extra),
                threshold="must be 0 duplicate rows",
                partitions=sorted({_partition_label(r[0], c.date_column) for r in rows}),
                details=[{"problem": f"{extra} rows repeat a key of meta.restate.keys"}] if rows else [],
                qualifier="declared_keys",
                **(narrowing.marks() if narrowing is not None and narrowed else {}),
            )
        )
    return out


@dataclass(frozen=True)
class _Narrowing:
    """Partition-local checks of ``datasets`` that passed in validation ``previous`` are
    run again only on ``span`` (None: no date changed since: they are kept as they were)."""

    previous: kept_checks.Previous
    span: tuple[date, date] | None
    datasets: frozenset[str]  # the restated relations digested now and then
    reads: frozenset[str]  # relations a declared partition-local query may read

    def label(self) -> str:
        return "" if self.span is None else f"{self.span[0]}..{self.span[1]}"

    def marks(self) -> dict[str, Any]:
        return {"kept_from": self.previous.validation_id, "scanned": self.label()}

    def copied(self, key: str) -> ValidationCheck:
        """The earlier pass of a check no date of which changed."""
        stored = dict(self.previous.checks[key])
        fields = {f.name for f in ValidationCheck.__dataclass_fields__.values()}
        return ValidationCheck(**{**{k: v for k, v in stored.items() if k in fields}, **self.marks()})


def _narrowing(
    previous: kept_checks.Previous | None,
    inputs: str,
    digests: dict[str, dict[str, str]],
    chunks: dict[str, tuple[str, date, date]],
    period: tuple[date, date],
    reads: frozenset[str],
) -> _Narrowing | None:
    """Whether (and on which dates) this validation can keep ``previous``' partition-local passes."""
    if previous is None or previous.inputs != inputs or not digests:
        return None
    try:
        span = kept_checks.changed_span(previous, digests, chunks)
    except LookupError:
        return None  # a restated relation it did not check
    if span is not None and span[0] <= period[0] and span[1] >= period[1]:
        return None  # every date changed: nothing to keep
    return _Narrowing(previous, span, frozenset(digests), reads)


def _check_key(dataset: str, kind: str, body: dict[str, Any], column: dict[str, Any] | None) -> str:
    name = str(column.get("name")) if column else None
    return kept_checks.check_key(dataset, kind, name, body.get("qualifier"))


# The checked relation (``${var.relation}``) as a declared query's tables are listed.
_CHECKED = "restate_checked.relation_under_check"


@dataclass(frozen=True)
class _Kept:
    """Whether ``narrowing`` keeps a check of a contract: partition-local, and passed before."""

    narrowing: _Narrowing
    dataset: str
    date_column: str | None
    variables: dict[str, str | float]
    dialect: str

    def key(self, kind: str, body: dict[str, Any], column: dict[str, Any] | None) -> str:
        return _check_key(self.dataset, kind, body, column)

    def local(self, kind: str, body: dict[str, Any], column: dict[str, Any] | None) -> bool:
        name = str(column.get("name")).lower() if column else None
        try:  # as Soda runs it: a variable's value may hold a subquery or a clock
            resolved = json.loads(
                resolve_variables(json.dumps(body), {**self.variables, "relation": _CHECKED})
            )
            entry = json.loads(resolve_variables(json.dumps(column), self.variables)) if column else None
        except (KeyError, ValueError):
            return False  # a variable this contract does not define: Soda refuses it anyway
        if not kept_checks.is_partition_local(kind, resolved, name, self.date_column, entry):
            return False
        if kind == "failed_rows" and resolved.get("query"):
            sql = str(resolved["query"])
            return kept_checks.reads_only(sql, set(self.narrowing.reads) | {_CHECKED}, self.dialect)
        return True

    def __call__(self, kind: str, body: dict[str, Any], column: dict[str, Any] | None) -> bool:
        return self.local(kind, body, column) and self.narrowing.previous.keeps(self.key(kind, body, column))


def _parts(
    datasets: list[Dataset],
    variables: dict[str, str | float],
    narrowing: _Narrowing | None,
    dialect: str,
) -> tuple[list[_Part], list[ValidationCheck]]:
    """Each contract as Soda runs it: whole, or - for a restated relation when checks are
    kept - its other checks on the whole period and its kept partition-local checks on
    the narrowed span; and the kept checks no date of which changed (not run at all)."""
    specs = [(ds, load_yaml(ds.path.read_text()) or {}) for ds in datasets]
    named = [(ds, spec, f"{ds.schema}.{ds.table}") for ds, spec in specs]
    keys = [_check_key(dataset, *c) for _, spec, dataset in named for c in _spec_checks(spec)]
    if len(set(keys)) < len(keys):
        narrowing = None  # two checks, one identity (in one contract or two): none is kept
    parts: list[_Part] = []
    copied: list[ValidationCheck] = []
    for ds, spec, dataset in named:
        whole = _Part(ds, variables)
        if narrowing is None or dataset not in narrowing.datasets or not ds.partition_column:
            parts.append(whole)
            continue
        own = {**_contract_defaults(spec), **variables}
        try:
            rows_checked = resolve_variables(str(spec.get("filter") or ""), own)
        except KeyError:
            rows_checked = "${var.undefined}"  # Soda refuses it; nothing is kept
        if kept_checks.hazardous(rows_checked) or "${" in rows_checked:
            parts.append(whole)  # which rows it checks can change with no row changing
            continue
        kept = _Kept(narrowing, dataset, ds.partition_column, own, dialect)
        checks = list(_spec_checks(spec))
        keep = frozenset(kept.key(*c) for c in checks if kept(*c))
        if len(keep) < len(checks):
            parts.append(_Part(ds, variables, dataset, but=keep))
        if not keep:
            continue
        if narrowing.span is None:
            copied += [narrowing.copied(key) for key in sorted(keep)]
            continue
        parts.append(
            _Part(
                ds,
                variables,
                dataset,
                only=keep,
                kept_from=narrowing.previous.validation_id,
                span=narrowing.span,
            )
        )
    return parts, copied


def _contract_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    """The contract's own defaults for variables restate does not set (as Soda applies them)."""
    return {
        k: v["default"]
        for k, v in (spec.get("variables") or {}).items()
        if isinstance(v, dict) and v.get("default") is not None
    }


def run_validation(
    settings: Settings,
    engine: Engine,
    schema: str,
    period_start: date,
    period_end: date,
    restatement_id: int | None,
    project: ProjectContract | None = None,
    previous: kept_checks.Previous | None = None,
) -> ValidationResult:
    """Run every Soda contract on ``schema`` for [period_start, period_end].

    ``schema`` is a restatement's ``restate_<id>`` or the production schema. The reference
    exports are (re)loaded first. The result passes when no check failed (warnings
    allowed) and every contract was verified. With ``previous`` (the restatement's last
    validation), partition-local checks that passed there run only on the dates changed
    since (restate.validation.kept_checks).
    """
    from restate.contract.project import project_contract

    apply_process_env(settings)  # Soda's telemetry stays off
    started = time.monotonic()
    checked_at = utc_now()  # a kept whole validation compares it with contract and finance files' times
    engine.set_query_tag(restatement_id=restatement_id, chunk=None, step="validate")
    project = project if project is not None else project_contract(settings)
    reference.load_reference_exports(engine, settings)
    variables, datasets, skipped = _checked(
        engine, settings, schema, period_start, period_end, restatement_id, project
    )
    missing = []
    for ds in datasets:
        if not engine.relation_exists(ds.schema, ds.table):
            missing.append(f"{ds.schema}.{ds.table} does not exist")
    restated = restatement_id is not None and schema != settings.prod_schema
    chunks = kept_checks.chunk_states(engine, settings, restatement_id) if restated and restatement_id else {}
    inputs = _inputs(engine, settings, datasets, variables, project)
    digests = _restated_digests(engine, settings, project, schema, datasets, period_start, period_end)
    reads = frozenset(
        [d.lower() for d in digests]
        + [reference.reference_table(settings, r).lower() for r in reference.declared(settings)]
    )
    narrowing = _narrowing(previous, inputs, digests, chunks, (period_start, period_end), reads)
    parts, copied = _parts(datasets, variables, narrowing, engine.name)
    # Every check kept and no date changed: nothing for Soda to run.
    contract_results, session_errors = _verify(engine, settings, variables, parts) if parts else ([], [])
    checks, errors = _collect(engine, parts, contract_results)
    checks += copied
    checks += declared_key_checks(engine, project, schema, period_start, period_end, narrowing)
    keeping: dict[str, Any] = {
        "inputs": inputs,
        "digests": digests,
        "chunks": {k: state for k, (state, _, _) in chunks.items()},
        "log_version": kept_checks.log_version(engine, settings),
    }
    if narrowing is not None:
        keeping.update(
            {
                "from": narrowing.previous.validation_id,
                "span": narrowing.label(),
                "checks": sum(c.kept_from is not None for c in checks),
            }
        )
    if parts and not contract_results:
        errors += _short_errors(session_errors) or ["Soda verified no contract"]
    errors = missing + errors
    passed = bool(checks) and not errors and all(c.passed for c in checks)
    return ValidationResult(
        validation_id=uuid.uuid4().hex[:12],
        scope="production" if schema == settings.prod_schema else "restatement",
        schema=schema,
        period_start=period_start,
        period_end=period_end,
        restatement_id=restatement_id,
        passed=passed,
        checks=checks,
        errors=errors,
        variables=variables,
        checked_at=checked_at,
        duration_s=round(time.monotonic() - started, 3),
        skipped=skipped,
        kept=keeping,
    )


def _checked(
    engine: Engine,
    settings: Settings,
    schema: str,
    period_start: date,
    period_end: date,
    restatement_id: int | None,
    project: ProjectContract,
) -> tuple[dict[str, str | float], list[Dataset], list[str]]:
    """The contracts' variables, the contracts a validation runs, and those it leaves out (why)."""
    variables = contract_variables(
        engine, settings, schema, period_start, period_end, restatement_id, project
    )
    datasets = discover_datasets(engine, settings, variables, project, restatement_id)
    skipped: list[str] = []
    if restatement_id is None or schema == settings.prod_schema:
        return variables, datasets, skipped
    # Checks scan only what changed: the restated relations (and the reference they are
    # compared with). Production's upstream is as every load left it; its conservation
    # against the raw landing is the loads' and the nightly run's.
    kept = []
    for ds in datasets:
        if ds.schema == settings.prod_schema:
            skipped.append(
                f"{ds.schema}.{ds.table}: not changed by this restatement "
                "(checked by the nightly reconciliation)"
            )
        else:
            kept.append(ds)
    return variables, kept, skipped


def _inputs(
    engine: Engine,
    settings: Settings,
    datasets: list[Dataset],
    variables: dict[str, str | float],
    project: ProjectContract,
) -> str:
    declarations = [repr(c) for c in sorted(project.models.values(), key=lambda c: c.model)]
    texts = [(ds.path.name, ds.path.read_text()) for ds in datasets]
    return kept_checks.inputs_fingerprint(engine, settings, texts, variables, declarations)


def current_state(
    engine: Engine,
    settings: Settings,
    schema: str,
    period_start: date,
    period_end: date,
    restatement_id: int,
    project: ProjectContract,
) -> tuple[str, dict[str, dict[str, str]]]:
    """The inputs' fingerprint and the per-date row digests a validation of the
    restatement would store now (the reference exports as last loaded)."""
    variables, datasets, _ = _checked(
        engine, settings, schema, period_start, period_end, restatement_id, project
    )
    digests = _restated_digests(engine, settings, project, schema, datasets, period_start, period_end)
    return _inputs(engine, settings, datasets, variables, project), digests


def _restated_digests(
    engine: Engine,
    settings: Settings,
    project: ProjectContract,
    schema: str,
    datasets: list[Dataset],
    start: date,
    end: date,
) -> dict[str, dict[str, str]]:
    """Per restatable model in a restatement's schema, its per-date row digests (of the
    relation its contract checks: for some entities only, merged with production's others)."""
    if schema == settings.prod_schema:
        return {}
    checked = {ds.table: ds.relation for ds in datasets if ds.schema == schema}
    out: dict[str, dict[str, str]] = {}
    for c in project.models.values():
        if not engine.relation_exists(schema, c.model):
            continue
        columns = [f'"{name}"' for name in engine.columns(schema, c.model)]
        relation = checked.get(c.model, f"{schema}.{c.model}")
        out[f"{schema}.{c.model}"] = kept_checks.date_digests(
            engine, relation, columns, c.date_column, start, end
        )
    return out


def store_validation(engine: Engine, settings: Settings, result: ValidationResult) -> str:
    """Record the result in ``<meta>.validations`` (what the promotion gate reads)."""
    from restate.state.meta import init_meta

    init_meta(engine, settings.meta_schema)
    engine.execute(
        f"insert into {settings.meta_schema}.validations (validation_id, restatement_id, scope, "
        "checked_at, passed, result_json) values (?, ?, ?, ?, ?, ?)",
        [
            result.validation_id,
            result.restatement_id,
            result.scope,
            result.checked_at,
            result.passed,
            json.dumps(result.as_dict(), default=str),
        ],
    )
    return result.validation_id


# --------------------------------------------------------------------------- report


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".") if abs(value) < 1 else f"{value:,.2f}"
    return str(value)


_COMPARISON = ("metric", "value", "reference", "diff", "diff_pct")


def _detail_line(row: dict[str, Any]) -> str:
    """One offending row; a comparison with a reference (metric, value, reference, diff,
    diff_pct, and the columns that place it) reads as a sentence."""
    if {"metric", "value", "reference"} <= row.keys():
        where = " ".join(str(v) for k, v in row.items() if k not in _COMPARISON and v is not None)
        if row["value"] is None or row["reference"] is None:
            side = "mart" if row["value"] is None else "reference export"
            return f"{where} {row['metric']}: missing in {side}"
        pct = row.get("diff_pct")
        pct_text = f", {pct:.4f}%" if isinstance(pct, float) else ""
        return (
            f"{where} {row['metric']}: {_fmt(row['value'])} vs reference {_fmt(row['reference'])} "
            f"(diff {_fmt(row.get('diff'))}{pct_text})"
        )
    return ", ".join(f"{k}={_fmt(v)}" for k, v in row.items())


def format_report(result: ValidationResult) -> str:
    """A readable report: which checks failed or warned, on which partitions, by how much."""
    failed, warned = result.failed_checks, result.warned_checks
    who = f" (restatement {result.restatement_id})" if result.restatement_id is not None else ""
    verdict = "PASSED" if result.passed else "FAILED"
    lines = [
        f"Validation {result.validation_id} of {result.schema}{who} for "
        f"{result.period_start}..{result.period_end}: {verdict} - {len(result.checks)} checks, "
        f"{sum(c.outcome == 'failed' for c in failed)} failed, "
        f"{sum(c.outcome != 'failed' for c in failed)} not evaluated, {len(warned)} warned "
        f"({result.duration_s:.1f}s)"
    ]
    for error in result.errors:
        lines.append(f"ERROR {error}")
    for group in (failed, warned):
        for c in group:
            label = {"failed": "FAILED", "warned": "WARN"}.get(c.outcome, "NOT EVALUATED")
            measured = "" if c.measured is None else f" measured {_fmt(c.measured)}"
            lines.append(f"{label} {c.dataset}: {c.name}:{measured} ({c.threshold})")
            if c.partitions:
                shown = ", ".join(c.partitions[:20])
                more = f" and {len(c.partitions) - 20} more" if len(c.partitions) > 20 else ""
                lines.append(f"    partitions: {shown}{more}")
            for row in c.details[:10]:
                lines.append(f"    {_detail_line(row)}")
            if len(c.details) > 10:
                lines.append(f"    ... {len(c.details) - 10} more rows")
    passed = [c for c in result.checks if c.outcome == "passed"]
    lines.append(f"passed: {len(passed)} checks")
    if result.kept.get("from"):
        where = f"run again on {result.kept['span']} only" if result.kept["span"] else "no date changed"
        lines.append(
            f"kept: {result.kept['checks']} partition-local checks had passed in validation "
            f"{result.kept['from']}; {where} (the other dates keep that pass)"
        )
    lines += [f"not rerun: {s}" for s in result.skipped]
    return "\n".join(lines)
