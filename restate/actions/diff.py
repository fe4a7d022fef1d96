"""Diff a recomputed restatement against production: per partition, and per month."""

from __future__ import annotations

from typing import Any

from restate.context import Context
from restate.plan.plans import load_plan
from restate.settings import Settings


def run_diff(ctx: Context | Settings, restatement_id: int) -> int:
    """Store as-reported vs restated for every metric and dimension; returns the rows stored."""
    from restate.validation.diff import compute_diff

    ctx = Context.of(ctx)
    with ctx.session() as engine:
        return compute_diff(engine, ctx.settings, load_plan(engine, ctx.settings, restatement_id))


def monthly_diff(ctx: Context | Settings, restatement_id: int) -> list[dict[str, Any]]:
    from restate.validation.diff import diff_by_month

    ctx = Context.of(ctx)
    with ctx.session() as engine:
        return diff_by_month(engine, ctx.settings, restatement_id)
