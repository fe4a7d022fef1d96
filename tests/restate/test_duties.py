"""Segregation of duties: one approval gate for the CLI, the Prefect form and Slack.

approver != requester != whoever forced a failed validation; approvers come from
RESTATE_APPROVERS (+ Slack ids as `slack:<id>`); forced validations and closed periods
need an approver; the production engine requires approval by default; who ran each
command is recorded next to the named approver.
"""

from __future__ import annotations

import getpass
import json
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from restate.engines import connect
from restate.partitions.promotion import GateError, check_gate, record_approval
from restate.plan.plans import Plan, store_plan
from restate.settings import Settings, get_settings
from restate.state import changelog
from restate.state.meta import init_meta
from tests.conftest import land, make_settings

APPROVERS = ["cfo", "controller"]
SEPT = (date(2026, 9, 1), date(2026, 9, 30))


def seed(
    s: Settings,
    *,
    requested_by: str = "ana",
    requires_approval: bool = False,
    passed: bool = True,
    period: tuple[date, date] = SEPT,
) -> Plan:
    """Restatement #1 stored as `restate plan` stores it, with one validation result."""
    plan = Plan(
        restatement_id=1,
        selector="fct_revenue_daily+",
        models=["fct_revenue_daily"],
        follow_views=[],
        period_start=period[0],
        period_end=period[1],
        accounts=None,
        reason="refunds left out of net revenue",
        ticket="FIN-1",
        requested_by=requested_by,
        requires_approval=requires_approval,
        chunks=[],
        exposures=[],
        source_watermark=None,
        code_version={},
    )
    with connect(s) as e:
        init_meta(e, s.meta_schema)
        store_plan(e, s, plan)
        add_validation(s, passed, "v1")
    return plan


def add_validation(s: Settings, passed: bool, vid: str, at: datetime | None = None) -> None:
    with connect(s) as e:
        e.execute(
            f"insert into {s.meta_schema}.validations values (?, 1, 'restatement', ?, ?, null, null, ?)",
            [vid, at or datetime.now(), passed, json.dumps({"checks": []})],
        )


def entries(s: Settings, event: str) -> list[dict]:
    with connect(s) as e:
        return [x for x in changelog.entries(e, s.meta_schema, 1) if x["event"] == event]


def approved_by(s: Settings) -> str | None:
    with connect(s) as e:
        return e.scalar(f"select approved_by from {s.meta_schema}.restatements where restatement_id = 1")


@pytest.fixture
def s(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "wh", approvers=APPROVERS, actor="ops-bot")


# ----------------------------------------------------------------- approver != requester


def test_requester_cannot_approve_her_own_restatement_even_when_listed(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "wh", approvers=["cfo", "ana", "controller"])
    plan = seed(s, requested_by="ana", requires_approval=True)
    with connect(s) as e:
        for name in ("ana", " ANA "):
            with pytest.raises(
                GateError,
                match=r"^ana requested restatement 1 and cannot approve it; approvers: cfo, controller$",
            ):
                record_approval(e, s, 1, name, "looks right")
        with pytest.raises(GateError, match="ana requested restatement 1 and cannot approve it"):
            check_gate(e, s, plan, "ana")
    assert approved_by(s) is None
    assert entries(s, "approved") == []


def test_unlisted_approver_is_refused(s: Settings) -> None:
    plan = seed(s, requires_approval=True)
    with connect(s) as e:
        with pytest.raises(
            GateError, match=r"^bob is not a configured approver; approvers: cfo, controller$"
        ):
            record_approval(e, s, 1, "bob", None)
        with pytest.raises(GateError, match="bob is not a configured approver"):
            check_gate(e, s, plan, "bob")
    assert approved_by(s) is None


def test_a_listed_approver_is_recorded_with_who_ran_the_command(s: Settings) -> None:
    plan = seed(s, requires_approval=True)
    with connect(s) as e:
        with pytest.raises(GateError, match="requires approval"):
            check_gate(e, s, plan, None)
        record_approval(e, s, 1, "cfo", "matches the export")
        gate = check_gate(e, s, plan, None)
    assert gate["approved_by"] == "cfo"
    assert approved_by(s) == "cfo"
    [entry] = entries(s, "approved")
    assert entry["actor"] == "cfo"
    assert entry["payload"]["run_by"] == "ops-bot"
    assert entry["payload"]["comment"] == "matches the export"


def test_run_by_defaults_to_the_os_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESTATE_ACTOR", raising=False)
    s = make_settings(tmp_path / "wh", approvers=APPROVERS)
    seed(s, requires_approval=True)
    with connect(s) as e:
        record_approval(e, s, 1, "controller", None)
    [entry] = entries(s, "approved")
    assert entry["payload"]["run_by"] == getpass.getuser()


def test_no_approvers_configured_is_said_plainly(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "wh")
    plan = seed(s, requires_approval=True)
    with connect(s) as e:
        with pytest.raises(GateError, match="no approvers configured: set RESTATE_APPROVERS"):
            check_gate(e, s, plan, None)
        with pytest.raises(GateError, match="no approvers configured: set RESTATE_APPROVERS"):
            record_approval(e, s, 1, "cfo", None)


# ----------------------------------------------------------------- forced validations


def test_requester_cannot_force_a_failed_validation(s: Settings) -> None:
    from restate.actions import force_validation

    seed(s, passed=False)
    with pytest.raises(
        GateError,
        match=r"^ana requested restatement 1 and cannot force its validation; approvers: cfo, controller$",
    ):
        force_validation(s, 1, "ana", "finance export is wrong")
    with pytest.raises(GateError, match="bob is not a configured approver"):
        force_validation(s, 1, "bob", "finance export is wrong")
    with connect(s) as e:
        assert e.scalar(f"select forced_by from {s.meta_schema}.validations") is None
    assert entries(s, "validation_forced") == []


def test_forced_validation_needs_a_second_approver_and_the_forcer_cannot_approve(s: Settings) -> None:
    from restate.actions import force_validation

    plan = seed(s, passed=False, requires_approval=False)
    with connect(s) as e, pytest.raises(GateError, match="failed validation"):
        check_gate(e, s, plan, None)
    force_validation(s, 1, "cfo", "finance export is wrong (FIN-7)")
    with connect(s) as e:
        with pytest.raises(
            GateError, match=r"requires approval.*validation was forced by cfo.*approvers: controller"
        ):
            check_gate(e, s, plan, None)
        with pytest.raises(
            GateError,
            match=r"^cfo forced the validation of restatement 1 and cannot also approve it; approvers: controller$",
        ):
            record_approval(e, s, 1, "cfo", None)
        with pytest.raises(GateError, match="cfo forced the validation"):
            check_gate(e, s, plan, "cfo")
        with pytest.raises(GateError, match="ana requested restatement 1"):
            record_approval(e, s, 1, "ana", None)
        record_approval(e, s, 1, "controller", "reviewed FIN-7")
        gate = check_gate(e, s, plan, None)
    assert gate["approved_by"] == "controller" and gate["validation"]["forced_by"] == "cfo"
    [forced] = entries(s, "validation_forced")
    assert forced["actor"] == "cfo" and forced["payload"]["run_by"] == "ops-bot"
    [approved] = entries(s, "approved")
    assert approved["actor"] == "controller" and approved["payload"]["run_by"] == "ops-bot"


def test_the_approver_cannot_later_force_a_failed_revalidation(s: Settings) -> None:
    from restate.actions import force_validation

    plan = seed(s, passed=True, requires_approval=True)
    with connect(s) as e:
        record_approval(e, s, 1, "cfo", None)
    add_validation(s, False, "v2", datetime.now() + timedelta(seconds=1))
    with pytest.raises(GateError, match="cfo approved restatement 1 and cannot also force its validation"):
        force_validation(s, 1, "cfo", "close enough")
    force_validation(s, 1, "controller", "export error FIN-7")
    with connect(s) as e:
        # The approval was given before the force: it does not cover the forced result.
        with pytest.raises(GateError, match="requires approval"):
            check_gate(e, s, plan, None)
        assert check_gate(e, s, plan, "cfo")["approved_by"] == "cfo"


# ----------------------------------------------------------------- when approval is required


def test_closed_period_needs_approval(tmp_path: Path) -> None:
    from restate.state.duties import plan_requires_approval

    s = make_settings(tmp_path / "wh", approvers=APPROVERS, close_date=date(2026, 10, 1))
    assert plan_requires_approval(s, None, date(2026, 9, 1)) is True
    assert plan_requires_approval(s, None, date(2026, 10, 1)) is False
    # Even a plan stored without the flag (the close date moved after planning) needs one.
    plan = seed(s, requires_approval=False)
    with connect(s) as e:
        with pytest.raises(GateError, match=r"requires approval.*closed period"):
            check_gate(e, s, plan, None)
        assert check_gate(e, s, plan, "controller")["approved_by"] == "controller"


def test_production_engine_requires_approval_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from restate.state.duties import approval_required_by_default, plan_requires_approval

    monkeypatch.delenv("RESTATE_REQUIRE_APPROVAL", raising=False)
    snowflake = Settings(data_dir=tmp_path, engine="snowflake")  # type: ignore[call-arg]
    duckdb = Settings(data_dir=tmp_path, engine="duckdb")  # type: ignore[call-arg]
    assert snowflake.require_approval is None and duckdb.require_approval is None
    assert approval_required_by_default(snowflake) is True
    assert approval_required_by_default(duckdb) is False
    assert plan_requires_approval(snowflake, None, date(2026, 9, 1)) is True
    assert plan_requires_approval(duckdb, None, date(2026, 9, 1)) is False
    # An explicit setting wins.
    explicit = Settings(data_dir=tmp_path, engine="snowflake", require_approval=False)  # type: ignore[call-arg]
    assert approval_required_by_default(explicit) is False
    monkeypatch.setenv("RESTATE_REQUIRE_APPROVAL", "true")
    assert approval_required_by_default(Settings(data_dir=tmp_path)) is True  # type: ignore[call-arg]
    # A requester cannot waive what the installation requires.
    with pytest.raises(GateError, match=r"approval is required .*a plan cannot waive it"):
        plan_requires_approval(snowflake, False, date(2026, 9, 1))
    assert plan_requires_approval(duckdb, True, date(2026, 9, 1)) is True


# ----------------------------------------------------------------- Slack and the Prefect form


def test_slack_approve_by_the_requesters_slack_id_is_refused_and_audited(tmp_path: Path) -> None:
    from interfaces.slack import handle_command

    s = make_settings(tmp_path / "wh", approvers=["cfo"], slack_approvers=["UANA", "UCFO"])
    seed(s, requested_by="slack:UANA", requires_approval=True)

    reply = handle_command(lambda: connect(s), s, "UANA", "ana", "approve 1 all good")
    assert "slack:UANA requested restatement 1 and cannot approve it" in reply.text
    assert "recorded in the audit log" in reply.text and not reply.in_channel
    [refused] = entries(s, "approval_refused")
    assert refused["actor"] == "slack:UANA"
    assert "cannot approve it" in refused["payload"]["reason"]
    assert approved_by(s) is None

    reply = handle_command(lambda: connect(s), s, "UCFO", "cfo", "approve 1 all good")
    assert "approved by" in reply.text and reply.in_channel
    assert approved_by(s) == "slack:UCFO"
    [approved] = entries(s, "approved")
    assert approved["payload"]["run_by"] == "slack:UCFO"


def test_slack_forcer_cannot_approve(tmp_path: Path) -> None:
    from interfaces.slack import handle_command
    from restate.actions import force_validation

    s = make_settings(tmp_path / "wh", slack_approvers=["UCFO", "UCTRL"])
    seed(s, passed=False)
    force_validation(s, 1, "slack:UCFO", "export error")
    reply = handle_command(lambda: connect(s), s, "UCFO", "cfo", "approve 1")
    assert "slack:UCFO forced the validation of restatement 1" in reply.text
    assert approved_by(s) is None
    assert "approved by" in handle_command(lambda: connect(s), s, "UCTRL", "ctrl", "approve 1").text
    assert approved_by(s) == "slack:UCTRL"


def test_prefect_approval_form_goes_through_the_same_gate(
    s: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.restatement import record_approval as form_task

    seed(s, requires_approval=True)
    monkeypatch.setenv("RESTATE_DATA_DIR", str(s.data_dir))
    monkeypatch.setenv("RESTATE_APPROVERS", json.dumps(APPROVERS))
    monkeypatch.delenv("RESTATE_ACTOR", raising=False)
    get_settings.cache_clear()
    try:
        with pytest.raises(GateError, match="ana requested restatement 1 and cannot approve it"):
            form_task.fn(1, "ana", "mine, approved")
        with pytest.raises(GateError, match="mallory is not a configured approver"):
            form_task.fn(1, "mallory", "approved")
        assert approved_by(s) is None
        form_task.fn(1, "cfo", "matches FIN-1")
    finally:
        get_settings.cache_clear()
    assert approved_by(s) == "cfo"
    [approved] = entries(s, "approved")
    assert approved["payload"]["run_by"].startswith("cfo")


# ----------------------------------------------------------------- through the CLI, on a real restatement


@pytest.mark.slow
def test_cli_promote_of_a_closed_period_refuses_the_requester_and_records_who_ran_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from interfaces.cli import app
    from restate.actions import finish_run, load_once, run_chunk, run_validation_step, start_run

    s = make_settings(tmp_path / "wh")
    land(s)
    load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
    monkeypatch.setenv("RESTATE_DATA_DIR", str(s.data_dir))
    monkeypatch.setenv("RESTATE_APPROVERS", json.dumps(APPROVERS))
    monkeypatch.setenv("RESTATE_CLOSE_DATE", "2026-10-01")
    monkeypatch.setenv("RESTATE_ACTOR", "ana-laptop")
    monkeypatch.delenv("RESTATE_REQUIRE_APPROVAL", raising=False)
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        planned = runner.invoke(
            app,
            [
                "plan", "-s", "fct_revenue_daily+", "--start", "2026-09-01", "--end", "2026-09-30",
                "--reason", "refunds left out", "--requested-by", "ana", "--allow-closed-period", "--json",
            ],
        )  # fmt: skip
        assert planned.exit_code == 0, planned.output
        waived = runner.invoke(
            app,
            [
                "plan", "-s", "fct_revenue_daily+", "--start", "2026-09-01", "--end", "2026-09-30",
                "--reason", "skip the gate", "--requested-by", "ana", "--allow-closed-period",
                "--no-require-approval",
            ],
        )  # fmt: skip
        assert waived.exit_code == 1 and "a plan cannot waive it" in " ".join(waived.output.split())
        body = json.loads(planned.output)
        rid = body["restatement_id"]
        assert body["requires_approval"] is True  # a closed period, on DuckDB (no default)
        s = get_settings()
        plan = start_run(s, rid)
        for c in plan.chunks:
            run_chunk(s, rid, c.chunk_id)
        finish_run(s, rid)
        assert run_validation_step(s, rid)["passed"]

        outputs = {}
        for args in ([], ["--approved-by", "ana"], ["--approved-by", "bob"]):
            out = runner.invoke(app, ["promote", str(rid), *args])
            assert out.exit_code == 1, out.output
            assert "Traceback" not in out.output
            outputs[tuple(args)] = " ".join(out.output.split())
        assert f"restatement {rid} requires approval" in outputs[()]
        assert "closed period" in outputs[()]
        assert (
            f"ana requested restatement {rid} and cannot approve it; approvers: cfo, controller"
            in outputs[("--approved-by", "ana")]
        )
        assert "bob is not a configured approver" in outputs[("--approved-by", "bob")]
        with connect(s) as e:
            assert (
                e.scalar(f"select status from {s.meta_schema}.restatements where restatement_id = ?", [rid])
                == "validated"
            )

        ok = runner.invoke(app, ["promote", str(rid), "--approved-by", "cfo"])
        assert ok.exit_code == 0, ok.output
    finally:
        get_settings.cache_clear()
    with connect(s) as e:
        log = changelog.entries(e, s.meta_schema, rid)
        assert changelog.verify(e, s.meta_schema) is None
    events = [x["event"] for x in log]
    approved = log[events.index("approved")]
    promoted = log[events.index("promoted")]
    assert approved["actor"] == "cfo" and approved["payload"]["run_by"] == "ana-laptop"
    assert promoted["payload"]["approved_by"] == "cfo"
    assert promoted["payload"]["run_by"] == "ana-laptop"
    assert events.index("approved") < events.index("promoted")
