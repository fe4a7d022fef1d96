"""`restate worker`: a long-lived process that runs restatements and their chunks warm.

A fresh process pays seconds before a restatement's first statement (importing dbt and
Soda, parsing the project); a one-day restatement's own SQL takes milliseconds. The
worker pays that once, at start (restate.actions.warm_up), then serves Prefect task
runs: whole restatement runs queued by `restate run ID --on-worker`, and the chunks a
restatement flow queues with RESTATE_CHUNK_EXECUTION=task_workers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from restate import actions
from restate.settings import Settings, apply_process_env


def serve(settings: Settings, limit: int = 1, say: Callable[[str], None] = print) -> None:
    """Warm up, then serve restatement runs and chunks until stopped (Ctrl-C, SIGTERM)."""
    apply_process_env(settings)
    seconds = actions.warm_up(settings)
    say(
        f"restate worker {actions.worker_identity()}: warm in {sum(seconds.values()):.1f} s "
        f"(dbt {seconds['dbt']:.1f} s, Soda {seconds['soda']:.1f} s); "
        f"serving restatement runs and chunks, {limit} at a time"
    )
    from prefect.task_worker import serve as serve_tasks
    from prefect.utilities.importtools import import_object

    # Loaded from the file, as a deployment's flow run loads its entrypoint (and as
    # `prefect task serve` does): the context a flow run hands over with each chunk names
    # the flow's module as that loader names it.
    tasks = [import_object(f"{RESTATEMENT_FLOWS}:{name}") for name in ("recompute_chunk", "run_on_worker")]
    serve_tasks(*tasks, limit=limit)


RESTATEMENT_FLOWS = Path(__file__).resolve().parent / "restatement.py"
