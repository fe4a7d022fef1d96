"""What a user can do, one module per action, each a plain function taking a Context
(restate.context; the Settings alone do for a one-off call). The CLI, the Prefect flows,
the Slack app and the demo all call these and nothing below them.

    plan       create_plan                  restatement_planned
    run        run_restatement              the sequence: recompute, validate, diff
    recompute  start_run, run_chunk, finish_run, run_chunks_in_threads (its steps)
    validate   run_validation_step, force_validation    validation_failed / approval_needed
    diff       run_diff, monthly_diff
    approve    approve, awaiting_approval
    promote    promote                      promoted
    rollback   rollback                     rolled_back
    cancel     cancel
    load       load_once (prepare_window, execute_window: its steps), rebuild_derived
    reconcile  reconcile_once               drift_detected
    warm       warm_up                      (a long-lived worker's start)
"""

from restate.actions.approve import approve, awaiting_approval
from restate.actions.cancel import cancel, reject
from restate.actions.diff import monthly_diff, run_diff
from restate.actions.load import execute_window, load_once, prepare_window, rebuild_derived
from restate.actions.plan import create_plan, get_plan, refuse_cancelled
from restate.actions.promote import promote
from restate.actions.recompute import (
    ChunkRunner,
    Progress,
    finish_run,
    run_chunk,
    run_chunks_in_threads,
    start_run,
    worker_identity,
)
from restate.actions.reconcile import reconcile_once
from restate.actions.rollback import rollback, rolled_back_ids
from restate.actions.run import run_restatement
from restate.actions.validate import force_validation, run_validation_step
from restate.actions.warm import warm_up

__all__ = [
    "ChunkRunner",
    "Progress",
    "approve",
    "awaiting_approval",
    "cancel",
    "create_plan",
    "execute_window",
    "finish_run",
    "force_validation",
    "get_plan",
    "load_once",
    "monthly_diff",
    "prepare_window",
    "promote",
    "rebuild_derived",
    "reconcile_once",
    "refuse_cancelled",
    "reject",
    "rollback",
    "rolled_back_ids",
    "run_chunk",
    "run_chunks_in_threads",
    "run_diff",
    "run_restatement",
    "run_validation_step",
    "start_run",
    "warm_up",
    "worker_identity",
]
