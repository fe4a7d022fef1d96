"""Rollback flow: restore the as-reported partitions a promotion replaced, then notify."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from restate import actions
from restate.settings import apply_process_env, get_settings


@task(cache_policy=NO_CACHE)
def roll_back(restatement_id: int, by: str, reason: str | None, cascade: bool) -> dict[str, Any]:
    return actions.rollback(get_settings(), restatement_id, by, reason, cascade)


@flow(name="rollback", log_prints=True)
def rollback(
    restatement_id: int, by: str, reason: str | None = None, cascade: bool = False
) -> dict[str, Any]:
    """Undo a promotion in one step.

    1. Under the production write lock, in one transaction, archive the promoted rows
       and restore the version the promotion replaced (with cascade, later overlapping
       promotions are rolled back first); audited in the changelog. A restatement that
       is not promoted is refused (promotion.TransitionError) and nobody is notified.
    2. Notify the owners of the affected dashboards of every restatement rolled back.
    """
    apply_process_env(get_settings())
    result = roll_back(restatement_id, by, reason, cascade)  # announces every one rolled back
    print(f"restatement {restatement_id}: {result['status']}")
    return result
