"""Fixtures shared by the restatement tests."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from restate.actions import create_plan, load_once, run_restatement
from restate.plan.plans import PlanRequest
from restate.settings import Settings
from tests.conftest import land, make_settings

PERIOD = (date(2026, 7, 20), date(2026, 8, 31))  # complete at landing: the finance checks pass


@pytest.fixture
def validated(tmp_path: Path) -> tuple[Settings, int]:
    s = make_settings(tmp_path / "wh")
    land(s, None, datetime(2026, 10, 20))
    load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
    plan = create_plan(
        s, PlanRequest("fct_revenue_daily+", *PERIOD, "refund bug", "ana", "FIN-1"), notify=False
    )
    first = run_restatement(s, plan.restatement_id)
    assert first["validation"]["passed"] and not first["validation"].get("kept")
    return s, plan.restatement_id
