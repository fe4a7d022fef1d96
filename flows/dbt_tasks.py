"""dbt inside flows through prefect-dbt: each model of a command is its own Prefect task
(state, logs, and an asset per materialized relation for lineage).

The incremental-load flow wraps its dbt run with it (every 15 minutes, each model of
the load is a task people can watch). Restatements keep restate's in-process runner for
chunks and follow-on views: benchmarks/prefect_dbt_bench.py measures a call through each
(a view: 0.20 s vs 0.71 s warm; a first call in a process costs several times more).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from restate.dbt.runner import DbtProject, Invoker, use_invoker
from restate.settings import Settings

# The commands whose nodes become tasks; every other command (parse above all) keeps
# dbt's own runner and the parsed manifest restate hands it.
BUILDS = ("run", "build", "seed", "snapshot", "test")


def prefect_dbt_invoker(settings: Settings) -> Invoker:
    """An Invoker running each command through prefect-dbt's PrefectDbtRunner."""
    from prefect_dbt import PrefectDbtRunner, PrefectDbtSettings

    project = DbtProject(settings)
    dbt_settings = PrefectDbtSettings(
        project_dir=project.project_dir,
        profiles_dir=project.profiles_dir,
        target_path=project.target_path,
    )

    def invoke(args: list[str], parsed: Any) -> Any:
        if not args or args[0] not in BUILDS:  # parse, compile, ...: nothing to show as tasks
            from dbt.cli.main import dbtRunner

            return dbtRunner(manifest=parsed).invoke(args)
        # raise_on_failure off: restate reads the result and raises its own DbtError.
        runner = PrefectDbtRunner(manifest=parsed, settings=dbt_settings, raise_on_failure=False)
        with _dbt_reusing(parsed):
            return runner.invoke(args)

    return invoke


@contextmanager
def _dbt_reusing(parsed: Any) -> Iterator[None]:
    """PrefectDbtRunner builds its task graph from the manifest it is given but invokes
    dbt without it, so dbt parses the project again on every call (a load's vars change
    each time: a full parse, 2 s on the example project). For the call, its dbtRunner is
    one that starts from that manifest. Safe: restate runs one dbt invocation at a time
    per process (restate.dbt.runner holds its lock around the invoker)."""
    import prefect_dbt.core.runner as prefect_runner
    from dbt.cli.main import dbtRunner

    if parsed is None or getattr(prefect_runner, "dbtRunner", None) is not dbtRunner:
        yield  # nothing parsed, or a prefect-dbt that builds its runner another way
        return

    def with_manifest(*args: Any, **kwargs: Any) -> dbtRunner:
        kwargs.setdefault("manifest", parsed)
        return dbtRunner(*args, **kwargs)

    original = prefect_runner.dbtRunner
    prefect_runner.dbtRunner = with_manifest
    try:
        yield
    finally:
        prefect_runner.dbtRunner = original


@contextmanager
def dbt_as_tasks(settings: Settings) -> Iterator[None]:
    """The dbt commands run in this block show each model as a Prefect task."""
    with use_invoker(prefect_dbt_invoker(settings)):
        yield
