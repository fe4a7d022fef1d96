"""Warm a long-lived process: pay once what a cold process's first restatement pays.

A restatement's own SQL takes milliseconds to seconds; in a fresh process the first dbt
call costs more (importing dbt, building its config schemas and classes, parsing the
project) and so does the first Soda session (importing Soda and its data source
plugins). A worker that serves many restatements (`restate worker`) pays that here, at
start, instead of inside every restatement.
"""

from __future__ import annotations

import time

from restate.context import Context
from restate.settings import Settings, apply_process_env


def warm_up(ctx: Context | Settings) -> dict[str, float]:
    """Import and exercise dbt (a parse of the project with the installation's vars) and
    Soda (its contract session and the engine's data source), and load the installed
    notifier; seconds per part. Opens no warehouse session: nothing is locked or written."""
    ctx = Context.of(ctx)
    apply_process_env(ctx.settings)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    ctx.dbt.warm()
    if ctx.settings.engine == "duckdb":
        # restate.dbt_s3_plugin registers s3fs on each new dbt connection to the file:
        # a process's first import of it costs a quarter of a second there.
        import s3fs  # noqa: F401
    seconds["dbt"] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    from restate.validation.contracts import warm_soda

    warm_soda(ctx.settings.engine)
    seconds["soda"] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    from restate.events import installed_notifier

    installed_notifier()  # imports the notifier and its clients (Slack, email) once
    seconds["notifier"] = round(time.perf_counter() - started, 3)
    return seconds
