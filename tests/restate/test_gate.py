"""The validation gate: a restatement that disagrees with finance needs --force by a listed
approver who is not the requester, then approval by another listed approver."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from interfaces.cli import app
from restate.actions import create_plan, finish_run, load_once, run_chunk, run_validation_step, start_run
from restate.engines import connect
from restate.partitions.promotion import GateError, promote
from restate.plan.plans import PlanRequest, load_plan
from restate.settings import get_settings
from restate.state import changelog
from tests.conftest import land, make_settings

pytestmark = pytest.mark.slow


def test_finance_disagreement_blocks_promotion_until_forced_by_an_approver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = make_settings(tmp_path / "wh", approvers=["cfo", "controller"])
    land(s)
    load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
    # Finance's export for 2026-09-14 USD is 1% higher than what the data supports.
    csv = Path(s.finance) / "revenue_2026-09.csv"
    lines = csv.read_text().splitlines()
    for i, line in enumerate(lines):
        day, cur, gross, refunds, net = line.split(",")
        if day == "2026-09-14" and cur == "USD":
            g, n = float(gross) * 1.01, float(net) + float(gross) * 0.01
            lines[i] = f"{day},{cur},{g:.2f},{refunds},{n:.2f}"
    csv.write_text("\n".join(lines) + "\n")

    rid = create_plan(
        s, PlanRequest("fct_revenue_daily+", date(2026, 9, 1), date(2026, 9, 30), "refund bug", "ana")
    ).restatement_id
    start_run(s, rid)
    for c in load_plan_chunks(s, rid):
        run_chunk(s, rid, c)
    finish_run(s, rid)
    out = run_validation_step(s, rid)
    assert not out["passed"]
    assert "finance" in out["report"] and "2026-09-14" in out["report"]

    with connect(s) as e, pytest.raises(GateError, match="failed validation"):
        promote(e, s, load_plan(e, s, rid))

    monkeypatch.setenv("RESTATE_DATA_DIR", str(s.data_dir))
    monkeypatch.setenv("RESTATE_APPROVERS", '["cfo", "controller"]')
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        refused = runner.invoke(app, ["validate", str(rid), "--force"])
        assert refused.exit_code == 1 and "--approved-by" in refused.output
        # The requester cannot override her own failed validation.
        own = runner.invoke(
            app, ["validate", str(rid), "--force", "--approved-by", "ana", "--reason", "looks fine to me"]
        )
        assert own.exit_code == 1
        assert "ana requested restatement" in " ".join(own.output.split())
        forced = runner.invoke(
            app,
            [
                "validate",
                str(rid),
                "--force",
                "--approved-by",
                "cfo",
                "--reason",
                "finance export error FIN-7",
            ],
        )
        assert forced.exit_code == 0, forced.output
    finally:
        get_settings.cache_clear()

    with connect(s) as e:
        # A forced validation needs approval by another listed approver than the forcer.
        with pytest.raises(GateError, match="requires approval"):
            promote(e, s, load_plan(e, s, rid))
        with pytest.raises(GateError, match="cfo forced the validation"):
            promote(e, s, load_plan(e, s, rid), approved_by="cfo")
        assert promote(e, s, load_plan(e, s, rid), approved_by="controller")["status"] == "promoted"
        entries = changelog.entries(e, s.meta_schema, rid)
        assert changelog.verify(e, s.meta_schema) is None
    failed = next(r for r in entries if r["event"] == "validation_failed")
    checks = failed["payload"]["evidence"]["checks"]
    finance_check = next(c for c in checks if "finance" in c["name"] and not c["passed"])
    assert "2026-09-14" in finance_check["partitions"]
    forced_entry = next(r for r in entries if r["event"] == "validation_forced")
    assert forced_entry["actor"] == "cfo" and "FIN-7" in forced_entry["payload"]["reason"]
    events = [r["event"] for r in entries]
    assert events.index("validation_forced") < events.index("approved") < events.index("promoted")
    assert entries[events.index("approved")]["actor"] == "controller"
    # The promotion notice says the validation was forced, by whom and why, and the scope.
    from notifications import build_context, compose

    with connect(s) as e:
        notice = compose(build_context(e, s, rid, "promoted"))
    assert "Validation: failed, and was forced by cfo: " in notice.text and "FIN-7" in notice.text
    assert "Scope: every entity" in notice.text
    assert "forced by cfo" in notice.html and any("forced by cfo" in str(b) for b in notice.blocks)
    assert entries[events.index("promoted")]["payload"]["approved_by"] == "controller"


def load_plan_chunks(s: object, rid: int) -> list[str]:
    with connect(s) as e:  # type: ignore[arg-type]
        return [c.chunk_id for c in load_plan(e, s, rid).chunks]  # type: ignore[arg-type]
