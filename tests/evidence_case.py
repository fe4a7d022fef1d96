"""One restatement taken through the real lifecycle for the evidence tests: buggy
production loaded by dbt, a plan scoped to two accounts with a hostile reason, the real
recompute, Soda validation and diff, a forced validation and an approval by two other people, the promotion."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from restate.actions import approve, create_plan, force_validation, load_once, promote, run_restatement
from restate.plan.plans import PlanRequest
from restate.settings import Settings
from tests.conftest import land, make_settings

# Markup, a remote image, a quote and an ampersand: all of it must show as text.
HOSTILE_REASON = (
    'refunds left out <script>window.__pwned = 1</script><img src="http://127.0.0.1:9/pixel.png" '
    "onerror=\"window.__pwned = 2\"> & 'quoted'"
)
ACCOUNTS = ["acct_000001", "acct_000002"]


@dataclass
class RestatedCase:
    settings: Settings
    restatement_id: int


def restated_case(data_dir: Path) -> RestatedCase:
    s = make_settings(
        data_dir, approvers=["cfo.maria", "controller.li", "ana"], require_approval=True, actor="ana"
    )
    land(s)  # everything landed: the finance reconciliation check can pass
    load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
    plan = create_plan(
        s,
        PlanRequest(
            "fct_revenue_daily+",
            date(2026, 8, 1),
            date(2026, 9, 30),
            reason=HOSTILE_REASON,
            requested_by="ana",
            ticket="FIN-7",
            accounts=ACCOUNTS,
        ),
    )
    rid = plan.restatement_id
    result = run_restatement(s, rid)
    # Scoped to two accounts, the restated days still hold the others' as-reported rows, so
    # the daily totals cannot match the finance exports: the override is part of the story.
    assert not result["validation"]["passed"]
    force_validation(s, rid, "controller.li", "scoped fix: other accounts follow in FIN-8")
    approve(s, rid, "cfo.maria", "checked against the ledger <b>bold</b>")
    promote(s, rid, approved_by="cfo.maria")
    return RestatedCase(s, rid)
