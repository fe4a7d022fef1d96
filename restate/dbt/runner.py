"""Programmatic dbt: one in-process runner with the tool's guard rails."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from restate.settings import Settings, apply_process_env
from restate.yaml_cache import load_yaml

# Who executes a dbt command: (arguments, the parsed Manifest or None) -> dbt's
# dbtRunnerResult. Unset, dbt's own runner in-process. A flow hands in one that shows every
# model as its own task (flows/dbt_tasks.py, prefect-dbt) for the commands it wraps.
Invoker = Callable[[list[str], Any], Any]
_INVOKER: ContextVar[Invoker | None] = ContextVar("restate_dbt_invoker", default=None)


@contextmanager
def use_invoker(invoker: Invoker | None) -> Iterator[None]:
    """Run the dbt commands of this block (this thread or task) through `invoker`."""
    token = _INVOKER.set(invoker)
    try:
        yield
    finally:
        _INVOKER.reset(token)


class DbtError(RuntimeError):
    """A dbt invocation failed; the message names the failing nodes."""


class ProductionGuardError(RuntimeError):
    """A dbt call would rebuild production history from scratch."""


@dataclass
class NodeResult:
    unique_id: str
    status: str
    execution_time: float
    message: str | None
    # What `dbt compile` rendered, the node's config and the nodes it reads (compile only).
    compiled_code: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    depends_on: list[str] = field(default_factory=list)


@dataclass
class DbtResult:
    success: bool
    nodes: list[NodeResult] = field(default_factory=list)
    elapsed_s: float = 0.0


# dbt's programmatic runner is not safe for parallel invocations in one process.
_DBT_LOCK = threading.Lock()

# Vars that only reach SQL bodies at compile time, never a node's config or schema:
# a parsed manifest stays valid when only these change (see DbtProject.invoke).
RUNTIME_ONLY_VARS = frozenset({"restate_chunk", "ingested_since", "ingested_until"})
# Parsed manifests reused across chunk runs, keyed by project state and parse-time vars.
_PARSED: dict[str, Any] = {}
# The schema name a project is parsed with to learn where a restatement's schema lands
# (DbtProject._retargetable), and per probe-parsed manifest, by id: those fields.
SCHEMA_PROBE = "restate_schema_probe"
# The version of the rules a kept retargeting verdict was decided by (a new rule decides again).
RETARGET_RULES = 2
_PROBE_TEMPLATES: dict[int, dict[tuple[str, str], tuple[str | None, str | None]]] = {}
# env_var('NAME' ...) in a project or profile file.
_ENV_VAR = re.compile(r"""env_var\(\s*['"]([^'"]+)['"]""")
# manifest.json as the last parse with the installation's vars wrote it, by _parse_key.
_MANIFESTS: dict[str, str] = {}
# Files that declare a project's dbt packages (dbt reads dependencies.yml first).
PACKAGE_FILES = ("dependencies.yml", "packages.yml")
# Folders whose files never change what dbt parses (dbt output, installed packages,
# which the fingerprint reads from where they live).
_SKIPPED = frozenset({"target", "logs", "dbt_packages"})


class DbtProject:
    """The bundled dbt project, invoked in-process with settings-derived profile values."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.project_dir = settings.dbt_project_dir
        self.target_path = settings.state_dir / "dbt_target"
        self.log_path = settings.state_dir / "dbt_logs"
        self.prod_state_dir = settings.state_dir / "prod_manifest"
        # profiles.yml: the project's own unless the settings name another folder.
        self.profiles_dir = settings.dbt_profiles_dir or self.project_dir

    def _base_args(self) -> list[str]:
        return [
            "--project-dir",
            str(self.project_dir),
            "--profiles-dir",
            str(self.profiles_dir),
            "--target-path",
            str(self.target_path),
            "--log-path",
            str(self.log_path),
            "--target",
            self.settings.dbt_target,
            *(["--profile", self.settings.dbt_profile] if self.settings.dbt_profile else []),
        ]

    def invoke(
        self,
        command: list[str],
        vars: dict[str, Any] | None = None,
        query_tag: dict[str, Any] | None = None,
    ) -> DbtResult:
        """Run one dbt command (e.g. ["run", "--select", "x"]) and raise on failure."""
        if "--full-refresh" in command and not (vars or {}).get("restate_schema"):
            raise ProductionGuardError(
                "refusing --full-refresh on production models: restate history with `restate plan` instead"
            )
        from dbt.cli.main import dbtRunner

        apply_process_env(self.settings)
        # The profile's query_tag: every statement dbt sends is attributed (Snowflake).
        tag = query_tag or {"app": "restate", "step": command[0] if command else "dbt"}
        os.environ["DBT_RESTATE_QUERY_TAG"] = json.dumps(tag, sort_keys=True, separators=(",", ":"))
        args = [*command, *self._base_args(), "--quiet", "--no-use-colors"]
        if vars:
            args += ["--vars", json.dumps(vars, default=str)]
        if (vars or {}).get("restate_schema"):
            # A restatement's run or compile: its results are read from the call itself;
            # target/manifest.json stays production's (what notices read exposures from).
            args.append("--no-write-json")
        with _DBT_LOCK:
            self._install_packages()
            parsed = self._parsed_manifest(vars) if self._reuses_parse(command, vars) else None
            schema = (vars or {}).get("restate_schema")
            if parsed is not None and isinstance(schema, str) and schema:
                _refuse_outside(parsed, command, schema)
            custom = _INVOKER.get()
            res = custom(args, parsed) if custom is not None else dbtRunner(manifest=parsed).invoke(args)
        return self._to_result(res, command)

    def run_deferred(
        self, models: list[str], vars: dict[str, Any], query_tag: dict[str, Any] | None = None
    ) -> DbtResult:
        """Build models into the schema the vars name, reading every other model from
        production (the saved production manifest): how a restatement runs dbt."""
        command = self._deferred("run", models)
        return self.invoke(command, vars=vars, query_tag=query_tag)

    def compile_deferred(
        self, models: list[str], vars: dict[str, Any], query_tag: dict[str, Any] | None = None
    ) -> DbtResult:
        """The SQL `run_deferred` would run for these models with these vars, compiled
        against the warehouse as it is now (is_incremental() included), without running it."""
        command = self._deferred("compile", models)
        return self.invoke(command, vars=vars, query_tag=query_tag)

    def _deferred(self, verb: str, models: list[str]) -> list[str]:
        """`verb` on these models, every other model read from production's saved state."""
        return [verb, "--select", *models, "--defer", "--favor-state", "--state", str(self.prod_state_dir)]

    def _packages_dir(self) -> Path:
        """Where `dbt deps` installs the project's packages (packages-install-path)."""
        config = load_yaml((self.project_dir / "dbt_project.yml").read_text()) or {}
        return self.project_dir / str(config.get("packages-install-path") or "dbt_packages")

    def _packages_stale(self) -> bool:
        """True when the project declares packages and their folder is missing or
        older than the file that declares them."""
        declared = [self.project_dir / name for name in PACKAGE_FILES if (self.project_dir / name).is_file()]
        if not declared:
            return False
        installed = self._packages_dir()
        if not installed.is_dir():
            return True
        return installed.stat().st_mtime_ns < max(path.stat().st_mtime_ns for path in declared)

    def _install_packages(self) -> None:
        """Run `dbt deps` when the packages are missing or out of date, so a fresh
        clone works without a manual step. dbt installs them inside the project
        (its packages-install-path, dbt_packages/ by default, and package-lock.yml
        beside dbt_project.yml): standard dbt behaviour, one install per project that
        every installation of the tool shares. Callers hold _DBT_LOCK; a file lock keeps
        two processes from installing at once."""
        if not self._packages_stale():
            return
        from dbt.cli.main import dbtRunner

        key = hashlib.sha256(str(self.project_dir.resolve()).encode()).hexdigest()[:16]
        lock_path = Path(tempfile.gettempdir()) / f"restate-dbt-deps-{key}.lock"
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not self._packages_stale():  # another process installed them meanwhile
                    return
                args = ["deps", "--project-dir", str(self.project_dir), "--log-path", str(self.log_path)]
                res = dbtRunner().invoke([*args, "--quiet", "--no-use-colors"])
                if not res.success:
                    raise DbtError(f"dbt deps failed: {res.exception or 'see dbt logs'}")
                # dbt keeps an existing folder as is: mark it current for the check above.
                self._packages_dir().touch()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @staticmethod
    def _reuses_parse(command: list[str], vars: dict[str, Any] | None) -> bool:
        """Chunk runs and loads differ only in runtime-only vars: parse once, reuse the manifest.

        dbt re-parses the whole project whenever --vars change, which cost more than
        the chunk's SQL; the chunk bounds and load windows never affect what parsing
        produces. A restatement's follow-on views share its chunks' parse.
        """
        names = set(vars or {})
        return (
            bool(command)
            and command[0] in ("run", "compile")
            and bool((RUNTIME_ONLY_VARS | {"restate_schema"}) & names)
        )

    def _parse_state_file(self, parse_vars: dict[str, Any]) -> Path:
        """Where dbt's partial-parse state for these parse-time vars is kept between
        processes. dbt keeps one per target folder and throws it away when --vars
        change, so planning (production's vars) and a restatement (its schema's vars)
        would each re-parse the whole project after the other; one file per set of vars
        lets each process start from its own."""
        key = json.dumps(
            [str(self.project_dir), self.settings.dbt_target, parse_vars], sort_keys=True, default=str
        )
        name = hashlib.sha256(key.encode()).hexdigest()[:16]
        return self.settings.state_dir / "dbt_parse" / f"{name}.msgpack"

    def _parse(self, parse_vars: dict[str, Any]) -> Any:
        """`dbt parse` with these vars, starting from their saved partial-parse state
        (dbt itself re-parses whatever changed since); the new state is saved for them."""
        from dbt.cli.main import dbtRunner

        args = ["parse", *self._base_args(), "--quiet", "--no-use-colors"]
        if parse_vars:
            args += ["--vars", json.dumps(parse_vars, default=str)]
        saved = self._parse_state_file(parse_vars)
        if saved.is_file():
            args += ["--partial-parse-file-path", str(saved)]
        res = dbtRunner().invoke(args)
        if not res.success:
            raise DbtError(f"dbt parse failed: {res.exception or 'see dbt logs'}")
        written = self.target_path / "partial_parse.msgpack"
        if written.is_file():
            saved.parent.mkdir(parents=True, exist_ok=True)
            staged = saved.with_name(f"{saved.name}.{os.getpid()}.{threading.get_ident()}")
            shutil.copyfile(written, staged)
            os.replace(staged, saved)  # a reader never sees half a file
        return res

    def _parse_key(self, parse_vars: dict[str, Any]) -> str:
        """What a parse depends on: the project, the installation (its target folder and
        profile), the dbt target and vars, and what dbt's own partial parse would check (the
        project's, its packages' and its profile's files, the env_var() values they read:
        _env_fingerprint), so a long-lived process sees each change."""
        return json.dumps(
            [
                str(self.project_dir),
                str(self.target_path),
                str(self.profiles_dir),
                self.settings.dbt_target,
                parse_vars,
                self._env_fingerprint(),
            ],
            sort_keys=True,
            default=str,
        )

    def _project_fingerprint(self) -> str:
        """Paths, times and sizes of the project's files and of its installed packages
        (a local package is a link to a folder outside the project)."""
        h = hashlib.sha256()
        roots = [self.project_dir]
        packages = self._packages_dir()
        if packages.is_dir():
            roots += [p.resolve() for p in sorted(packages.iterdir()) if p.is_dir()]
        for root in roots:
            for path in sorted(root.rglob("*")):
                if (
                    path.is_file()
                    and path.suffix in (".sql", ".yml", ".yaml")
                    and not _SKIPPED & set(path.relative_to(root).parts)
                ):
                    h.update(f"{path}:{path.stat().st_mtime_ns}:{path.stat().st_size}".encode())
        return h.hexdigest()

    def _parsed_manifest(self, vars: dict[str, Any] | None) -> Any:
        """The parsed Manifest for these parse-time vars (parsing once per process).

        A restatement's schema is a parse-time var (generate_schema_name), so every new
        restatement would parse the whole project again (seconds: every macro is parsed
        anew). Where this project was shown to be retargetable (_retargetable), the
        project is parsed once with a probe schema (partially, from its saved state, in
        later processes) and its nodes are pointed at the restatement's schema instead."""
        parse_vars = {k: v for k, v in (vars or {}).items() if k not in RUNTIME_ONLY_VARS}
        target = parse_vars.get("restate_schema")
        if isinstance(target, str) and target and target != SCHEMA_PROBE:
            probe_vars = {**parse_vars, "restate_schema": SCHEMA_PROBE}
            state = self._probe_state(probe_vars)  # the project's files read once per call
            if self._retargetable(probe_vars, state):
                manifest = self._probe_manifest(probe_vars, state)
                _retarget(manifest, _PROBE_TEMPLATES[id(manifest)], target)
                return manifest
        key = self._parse_key(parse_vars)
        if key not in _PARSED:
            res = self._parse(parse_vars)
            _PARSED.clear()  # one restatement at a time per process; keep memory flat
            _PROBE_TEMPLATES.clear()
            _PARSED[key] = res.result
        return _PARSED[key]

    def _probe_state(self, probe_vars: dict[str, Any]) -> str:
        """What a probe parse depends on: the project's files (any kind, packages and profile
        included), dbt version, profile and the environment values they read, so a
        long-lived worker sees every edit."""
        return self._parse_key(probe_vars)

    def _probe_manifest(self, probe_vars: dict[str, Any], state: str) -> Any:
        """The project parsed with the probe schema, its probe-named fields recorded; kept
        while `state` (_probe_state) stays the same."""
        key = state
        if key not in _PARSED or id(_PARSED[key]) not in _PROBE_TEMPLATES:
            manifest = self._parse(probe_vars).result
            _PARSED.clear()
            _PROBE_TEMPLATES.clear()
            _PARSED[key] = manifest
            _PROBE_TEMPLATES[id(manifest)] = _probe_fields(manifest, SCHEMA_PROBE)
        return _PARSED[key]

    def _retargetable(self, probe_vars: dict[str, Any], state: str) -> bool:
        """Whether the schema var's value reaches nothing but node schemas and relation
        names: in the project parsed with the probe schema, the probe's name (in any case)
        appears nowhere else. Decided once per project state, dbt version, profile and
        environment (kept in the state folder), from the parse a restatement needs anyway;
        callers hold _DBT_LOCK."""
        decided = f"{RETARGET_RULES}:{state}"
        verdict = (
            self.settings.state_dir
            / "dbt_parse"
            / (f"retarget-{hashlib.sha256(decided.encode()).hexdigest()[:24]}.json")
        )
        try:
            return bool(json.loads(verdict.read_text())["retargetable"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not decided yet for this project state
        manifest = self._probe_manifest(probe_vars, state)
        retargetable = _carries_probe_only_in_schemas(manifest, _PROBE_TEMPLATES[id(manifest)])
        verdict.parent.mkdir(parents=True, exist_ok=True)
        staged = verdict.with_name(f"{verdict.name}.{os.getpid()}.{threading.get_ident()}")
        staged.write_text(json.dumps({"retargetable": retargetable}))
        os.replace(staged, verdict)
        return retargetable

    def warm(self) -> None:
        """Import dbt and parse the project in this process, with the installation's vars
        and as a restatement parses it: what its first dbt calls would otherwise pay
        (restate.actions.warm_up)."""
        apply_process_env(self.settings)
        with _DBT_LOCK:
            self._install_packages()
            probe_vars = {**self.settings.dbt_vars(), "restate_schema": SCHEMA_PROBE}
            state = self._probe_state(probe_vars)
            if self._retargetable(probe_vars, state):  # decided here, not in a restatement
                self._probe_manifest(probe_vars, state)
            else:
                self._parsed_manifest(self.settings.dbt_vars())  # dbt warm, at least

    @staticmethod
    def _to_result(res: Any, command: list[str]) -> DbtResult:
        nodes: list[NodeResult] = []
        results = getattr(res.result, "results", None) or []
        elapsed = float(getattr(res.result, "elapsed_time", 0.0) or 0.0)
        for r in results:
            nodes.append(
                NodeResult(
                    unique_id=r.node.unique_id,
                    status=str(r.status),
                    execution_time=float(r.execution_time or 0.0),
                    message=r.message,
                    compiled_code=getattr(r.node, "compiled_code", None),
                    config=_config_dict(r.node),
                    depends_on=list(getattr(getattr(r.node, "depends_on", None), "nodes", None) or []),
                )
            )
        if not res.success:
            failed = [n for n in nodes if n.status in ("error", "fail", "runtime error")]
            detail = "; ".join(f"{n.unique_id}: {n.message}" for n in failed)
            if res.exception is not None:
                detail = f"{detail} {res.exception}".strip()
            raise DbtError(f"dbt {' '.join(command[:1])} failed: {detail or 'see dbt logs'}")
        return DbtResult(success=True, nodes=nodes, elapsed_s=elapsed)

    def manifest(self) -> dict[str, Any]:
        """The parsed manifest with the installation's vars (dbt re-parses what changed)."""
        apply_process_env(self.settings)
        parse_vars = self.settings.dbt_vars()
        with _DBT_LOCK:
            self._install_packages()
            state = self._parse_key(parse_vars)
            key = hashlib.sha256(state.encode()).hexdigest()
            kept = self.settings.state_dir / "dbt_parse" / f"manifest-{key[:24]}.json"
            if key not in _MANIFESTS:
                try:
                    # Parsed by an earlier command from the same files, vars, profile and
                    # environment: what dbt would parse now, without importing dbt at all.
                    text = kept.read_text()
                    json.loads(text)
                    _MANIFESTS.clear()
                    _MANIFESTS[key] = text
                except (OSError, ValueError):
                    pass  # none yet, or replaced meanwhile: parse
            if key not in _MANIFESTS:
                # The parsed Manifest itself, never target/manifest.json: another process's
                # run or compile may rewrite that file between this parse and a read.
                manifest = self._parse(parse_vars).result
                kept.parent.mkdir(parents=True, exist_ok=True)
                staged = kept.with_name(f"{kept.name}.{os.getpid()}.{threading.get_ident()}")
                manifest.write(str(staged))
                text = staged.read_text()
                for old in kept.parent.glob("manifest-*.json"):
                    if old != kept:
                        old.unlink(missing_ok=True)
                os.replace(staged, kept)
                _MANIFESTS.clear()
                _MANIFESTS[key] = text
            loaded: dict[str, Any] = json.loads(_MANIFESTS[key])
        return loaded

    def _env_fingerprint(self) -> str:
        """The dbt version and profile name, the contents of the project's, its packages' and
        its profile's files, and the values of the environment variables they read with
        env_var() (all hashed: some are secrets)."""
        import dbt.version

        names: set[str] = set()
        contents = hashlib.sha256()
        files = [self.profiles_dir / "profiles.yml"]
        packages = self._packages_dir()
        roots = [self.project_dir]
        if packages.is_dir():
            roots += [p.resolve() for p in sorted(packages.iterdir()) if p.is_dir()]
        for root in roots:
            files += sorted(
                p
                for p in root.rglob("*")
                if p.is_file()
                and (p.suffix in (".sql", ".yml", ".yaml", ".py", ".csv") or p.name == ".dbtignore")
                and not _SKIPPED & set(p.relative_to(root).parts)
            )
        for path in files:
            try:
                data = path.read_bytes()
            except OSError:
                continue
            # Contents, not only times and sizes: an edit that keeps both is still seen.
            contents.update(f"{path}\0{len(data)}\0".encode() + data)
            names.update(_ENV_VAR.findall(data.decode(errors="replace")))
        values = {n: os.environ.get(n) for n in sorted(names) if n != "DBT_RESTATE_QUERY_TAG"}
        return hashlib.sha256(
            json.dumps(
                [dbt.version.__version__, self.settings.dbt_profile, values, contents.hexdigest()],
                sort_keys=True,
            ).encode()
        ).hexdigest()

    def last_manifest(self) -> dict[str, Any]:
        """The manifest dbt wrote on its last invocation (no parse)."""
        loaded: dict[str, Any] = json.loads((self.target_path / "manifest.json").read_text())
        return loaded

    def save_prod_state(self) -> None:
        """Keep production's manifest for --defer by restatement runs: the project as
        parsed with the installation's vars (what loads build production with), never
        whatever the last dbt command in the target folder wrote there (another process's
        restatement writes its isolated schema's manifest to the same folder)."""
        self.prod_state_dir.mkdir(parents=True, exist_ok=True)
        final = self.prod_state_dir / "manifest.json"
        staged = final.with_name(f"manifest.json.{os.getpid()}.{threading.get_ident()}")
        apply_process_env(self.settings)
        with _DBT_LOCK:
            self._parsed_manifest(self.settings.dbt_vars()).write(str(staged))
        staged.write_text(json.dumps(deferral_only(json.loads(staged.read_text()))))
        os.replace(staged, final)

    @staticmethod
    def model_code_hashes(manifest: dict[str, Any]) -> dict[str, str]:
        """sha256 of each model's raw SQL: the code version recorded with every run."""
        hashes = {}
        for node in manifest["nodes"].values():
            if node["resource_type"] == "model":
                hashes[node["name"]] = hashlib.sha256(node["raw_code"].encode()).hexdigest()
        return hashes


# What dbt's deferral reads from the state manifest (Manifest.merge_from_artifact): the
# nodes a ref can point at, and functions.
DEFERRED_NODE_TYPES = ("model", "seed", "snapshot")


def deferral_only(manifest: dict[str, Any]) -> dict[str, Any]:
    """A saved manifest cut to what --defer reads: every dbt call of a restatement loads
    the state manifest anew, and its macros, tests and docs (most of it) cost time there
    and are never read. The kept nodes are unchanged."""
    kept = {
        uid: node
        for uid, node in (manifest.get("nodes") or {}).items()
        if node.get("resource_type") in DEFERRED_NODE_TYPES
    }
    # Every other section emptied, of the type dbt reads it as.
    cut: dict[str, Any] = {
        key: {} if isinstance(value, dict) else [] if isinstance(value, list) else value
        for key, value in manifest.items()
    }
    cut.update(
        {
            "metadata": manifest.get("metadata", {}),
            "nodes": kept,
            "functions": manifest.get("functions") or {},
            "parent_map": {
                u: [p for p in ps if p in kept]
                for u, ps in (manifest.get("parent_map") or {}).items()
                if u in kept
            },
            "child_map": {
                u: [c for c in cs if c in kept]
                for u, cs in (manifest.get("child_map") or {}).items()
                if u in kept
            },
        }
    )
    return cut


def _refuse_outside(manifest: Any, command: list[str], schema: str) -> None:
    """Refuse a restatement's dbt call that would build a selected model anywhere but the
    restatement's schema (a project whose generate_schema_name does not route
    var('restate_schema'), parsed for real or retargeted)."""
    selected: set[str] = set()
    if "--select" in command:
        for token in command[command.index("--select") + 1 :]:
            if token.startswith("--"):
                break
            selected.add(token)
    for node in manifest.nodes.values():
        outside = str(node.schema).lower() != schema.lower()
        if node.resource_type == "model" and node.name in selected and outside:
            raise ProductionGuardError(
                f"refusing to build {node.name} into schema {node.schema}: a restatement "
                f"builds into {schema} only (the project's generate_schema_name must route "
                "var('restate_schema'); see dbt/restate/README.md)"
            )


# The manifest's collections whose entries carry a schema dbt computed at parse time.
_SCHEMA_COLLECTIONS = ("nodes", "unit_tests")


def _probe_fields(manifest: Any, probe: str) -> dict[tuple[str, str], tuple[str | None, str | None]]:
    """Per node (and unit test), its schema and relation name where they carry the probe
    schema's name; the key ("", "") holds the probe itself."""
    fields: dict[tuple[str, str], tuple[str | None, str | None]] = {("", ""): (probe, None)}
    for collection in _SCHEMA_COLLECTIONS:
        for unique_id, node in getattr(manifest, collection, {}).items():
            values = (getattr(node, "schema", None), getattr(node, "relation_name", None))
            carried = [v if isinstance(v, str) and probe in v else None for v in values]
            if any(carried):
                fields[(collection, unique_id)] = (carried[0], carried[1])
    return fields


def _retarget(
    manifest: Any, templates: dict[tuple[str, str], tuple[str | None, str | None]], target: str
) -> None:
    """Point what the probe parse put in the probe schema at `target` (in place)."""
    probe = templates[("", "")][0] or ""
    for (collection, unique_id), (schema, relation) in templates.items():
        if not collection:
            continue
        node = getattr(manifest, collection)[unique_id]
        if schema is not None:
            node.schema = schema.replace(probe, target)
        if relation is not None:
            node.relation_name = relation.replace(probe, target)


def _carries_probe_only_in_schemas(
    manifest: Any, templates: dict[tuple[str, str], tuple[str | None, str | None]]
) -> bool:
    """True when every model was put in the probe schema and the probe's name, in any case,
    is in no field of the parsed project but the schemas and relation names `templates`
    retargets (a config, an alias, a description or a compiled default that carries it would
    keep the probe's name)."""
    probe = (templates[("", "")][0] or "").lower()
    models = [uid for uid, node in manifest.nodes.items() if node.resource_type == "model"]
    if not models or any(templates.get(("nodes", uid), (None, None))[0] is None for uid in models):
        return False  # the schema macro put some model elsewhere: what it does with other names is unknown
    data = manifest.writable_manifest().to_dict(omit_none=False)
    data.pop("metadata", None)
    for (collection, unique_id), (schema, relation) in templates.items():
        if collection:
            entry = data[collection][unique_id]
            if schema is not None:
                entry["schema"] = None
            if relation is not None:
                entry["relation_name"] = None
    return probe not in json.dumps(data, default=str).lower()


def _config_dict(node: Any) -> dict[str, Any]:
    config = getattr(node, "config", None)
    try:
        return dict(config.to_dict()) if config is not None else {}
    except Exception:  # a node type whose config does not serialise: nothing to report
        return {}
