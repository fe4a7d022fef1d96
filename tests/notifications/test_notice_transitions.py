"""Notices that do not lie: one notice per promotion / rollback occurrence, no notice for
a transition that did not happen, and in-doubt deliveries resolved through the CLI.

Real dbt + DuckDB; the CLI through typer's runner; notices go to the local outbox (and,
for the in-doubt case, to the Slack stand-in).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from interfaces.cli import app
from notifications import build_context, notify
from notifications.dispatch import build_targets
from restate.actions import create_plan, finish_run, load_once, run_chunk, run_diff, start_run
from restate.engines import connect
from restate.plan.plans import PlanRequest
from restate.settings import Settings, get_settings
from restate.state import changelog
from tests.conftest import land
from tests.conftest import make_settings as make_wh_settings
from tests.notifications.conftest import SLACK_TOKEN, make_settings, seed_restatement
from tests.notifications.test_notify_delivery import AFFECTED_CHANNELS, CrashingTarget, SimulatedCrash

pytestmark = pytest.mark.slow

PERIOD = (date(2026, 9, 1), date(2026, 9, 30))


def use_settings(monkeypatch: pytest.MonkeyPatch, s: Settings, **env: str) -> None:
    """Point the CLI (which reads RESTATE_* from the environment) at this warehouse."""
    monkeypatch.setenv("RESTATE_DATA_DIR", str(s.data_dir))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_cli_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def outbox(s: Settings, rid: int) -> dict[str, dict[str, str]]:
    """event column -> {recipient: status} of one restatement's outbox rows."""
    with connect(s) as e:
        rows = e.query(
            f"select event, recipient, status from {s.meta_schema}.notification_outbox "
            "where restatement_id = ?",
            [rid],
        )
    out: dict[str, dict[str, str]] = {}
    for event, recipient, status in rows:
        out.setdefault(event, {})[recipient] = status
    return out


def sent_notices(s: Settings, rid: int) -> Counter[tuple[str, str]]:
    with connect(s) as e:
        entries = changelog.entries(e, s.meta_schema, rid)
    return Counter(
        (x["payload"]["notice"], x["payload"]["recipient"]) for x in entries if x["event"] == "notice_sent"
    )


def outbox_folders(s: Settings, key: str) -> list[Path]:
    return sorted(p.parent for p in Path(s.outbox_dir).glob(f"{key}/*/notice.json"))


def cli(*args: Any) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


def plan_september(s: Settings) -> int:
    return create_plan(
        s, PlanRequest("fct_revenue_daily+", *PERIOD, reason="refund bug", requested_by="ana", ticket="FIN-1")
    ).restatement_id


@pytest.fixture(scope="module")
def planned_only(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, int]:
    """Buggy production and a restatement that was planned, never run or promoted."""
    s = make_wh_settings(tmp_path_factory.mktemp("planned") / "wh")
    land(s)
    load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
    return s, plan_september(s)


def test_rollback_of_a_never_promoted_restatement_is_refused_and_announces_nothing(
    planned_only: tuple[Settings, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    s, rid = planned_only
    use_settings(monkeypatch, s)
    before = outbox(s, rid)
    assert set(before) == {"restatement_planned"}

    result = cli("rollback", rid, "--by", "cfo")

    assert result.exit_code != 0, result.output
    line = one_line(result.output)
    assert str(rid) in line and "promoted" in line
    assert outbox(s, rid) == before  # no rolled_back row, nothing else either
    assert not list(Path(s.outbox_dir).glob(f"restatement-{rid}-rolled_back*"))
    with connect(s) as e:
        assert (
            e.scalar(f"select status from {s.meta_schema}.restatements where restatement_id = ?", [rid])
            == "planned"
        )
        assert "rolled_back" not in [x["event"] for x in changelog.entries(e, s.meta_schema, rid)]


@pytest.mark.parametrize("event", ["promoted", "rolled_back", "approval_needed", "validation_failed"])
def test_notify_for_an_event_that_never_happened_is_an_error_and_enqueues_nothing(
    planned_only: tuple[Settings, int], monkeypatch: pytest.MonkeyPatch, event: str
) -> None:
    s, rid = planned_only
    use_settings(monkeypatch, s)
    before = outbox(s, rid)

    result = cli("notify", rid, "--event", event)

    assert result.exit_code == 1, result.output
    assert event in one_line(result.output)
    assert outbox(s, rid) == before
    assert not list(Path(s.outbox_dir).glob(f"restatement-{rid}-{event}*"))


def test_notify_for_an_event_that_happened_still_finishes_quietly(
    planned_only: tuple[Settings, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    s, rid = planned_only
    use_settings(monkeypatch, s)
    planned = outbox(s, rid)["restatement_planned"]

    result = cli("notify", rid, "--event", "restatement_planned", "--json")

    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["sent"] == [] and sorted(out["already_sent"]) == sorted(planned)


def store_passing_validation(s: Settings, rid: int) -> None:
    """The promotion gate reads a stored validation result (the Soda step writes it)."""
    with connect(s) as e:
        e.execute(
            f"insert into {s.meta_schema}.validations values (?, ?, 'restatement', ?, true, null, null, ?)",
            [f"test-{rid}", rid, datetime.now(), json.dumps({"checks": []})],
        )


def test_promote_rollback_promote_announces_each_occurrence_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = make_wh_settings(tmp_path / "wh")
    land(s)
    load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
    rid = plan_september(s)
    plan = start_run(s, rid)
    for c in plan.chunks:
        run_chunk(s, rid, c.chunk_id)
    finish_run(s, rid)
    run_diff(s, rid)
    store_passing_validation(s, rid)
    use_settings(monkeypatch, s)

    for args in (
        ["promote", rid],
        ["rollback", rid, "--by", "cfo", "--reason", "wrong FX"],
        ["promote", rid],
    ):
        result = cli(*args)
        assert result.exit_code == 0, result.output
    # Promoting a promoted restatement is not a transition: nothing more is announced.
    again = cli("promote", rid, "--json")
    assert again.exit_code == 0, again.output
    # Re-running notify for each event (and for the first promotion) sends nothing new.
    for args in (
        ["--event", "promoted"],
        ["--event", "promoted"],
        ["--event", "promoted", "--occurrence", "1"],
        ["--event", "rolled_back"],
        ["--event", "rolled_back"],
    ):
        result = cli("notify", rid, *args, "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["sent"] == []

    rows = outbox(s, rid)
    recipients = set(rows["promoted"])
    assert recipients and any(r.startswith("email:") for r in recipients)
    notices = {"promoted": "promoted", "rolled_back": "rolled_back", "promoted#2": "promoted-2"}
    for event, key in notices.items():
        assert rows[event] == dict.fromkeys(recipients, "sent"), event
        folders = outbox_folders(s, f"restatement-{rid}-{key}")
        assert len(folders) == len(recipients), key
        assert {json.loads((f / "notice.json").read_text())["key"] for f in folders} == {
            f"restatement-{rid}-{key}"
        }
    assert not [e for e in rows if e not in {"restatement_planned", *notices}]
    sent = sent_notices(s, rid)
    assert {n: c for n, c in sent.items() if n[0] in notices} == {
        (event, r): 1 for event in notices for r in recipients
    }
    second = outbox_folders(s, f"restatement-{rid}-promoted-2")[0]
    assert "Restated numbers are live" in json.loads((second / "notice.json").read_text())["subject"]
    with connect(s) as e:
        assert changelog.verify(e, s.meta_schema) is None


@pytest.mark.parametrize(
    ("after_delivery", "crash_on", "answer"),
    [(True, 2, "--delivered"), (False, 1, "--not-delivered")],
    ids=["delivered", "not-delivered"],
)
def test_in_doubt_slack_notice_is_listed_and_resolved_through_the_cli(
    tmp_path, engine, manifest, slack_api, monkeypatch, after_delivery, crash_on, answer
) -> None:
    seed_restatement(engine)
    changelog.append(
        engine, "restate_meta", "promoted", {"models": ["fct_revenue_daily"]}, restatement_id=1, actor="alice"
    )
    settings = make_settings(tmp_path, slack_token=SLACK_TOKEN, slack_base_url=slack_api.api_url)
    real = build_targets(settings)
    crashing = {**real, "slack": CrashingTarget(real["slack"], crash_on, after_delivery=after_delivery)}
    with pytest.raises(SimulatedCrash):
        notify(engine, settings, manifest, build_context(engine, settings, 1, "promoted"), targets=crashing)
    doubtful = AFFECTED_CHANNELS[crash_on - 1]
    use_settings(
        monkeypatch,
        settings,
        RESTATE_SLACK_TOKEN=SLACK_TOKEN,
        RESTATE_SLACK_BASE_URL=slack_api.api_url,
        RESTATE_SLACK_PLATFORM_CHANNEL="#data-platform",
    )

    listed = cli("notify", 1, "--event", "promoted")
    assert listed.exit_code == 1, listed.output
    assert f"slack:{doubtful}" in listed.output and "--resolve" in listed.output
    posts_before = slack_api.posted_channels()

    incomplete = cli("notify", 1, "--event", "promoted", "--resolve", f"slack:{doubtful}")
    assert incomplete.exit_code == 1 and "--by" in one_line(incomplete.output)
    wrong = cli("notify", 1, "--event", "promoted", "--resolve", "slack:#nowhere", answer, "--by", "bob")
    assert wrong.exit_code == 1 and "slack:#nowhere" in one_line(wrong.output)

    resolved = cli(
        "notify", 1, "--event", "promoted", "--resolve", f"slack:{doubtful}", answer, "--by", "bob"
    )
    assert resolved.exit_code == 0, resolved.output
    assert slack_api.posted_channels() == AFFECTED_CHANNELS  # each channel exactly once
    assert len(slack_api.posted_channels()) == len(posts_before) + (0 if after_delivery else 1)
    assert set(outbox_status(engine).values()) == {"sent"}
    entries = changelog.entries(engine, "restate_meta", 1)
    resolved_entries = [x for x in entries if x["event"] == "notice_resolved"]
    assert [(x["actor"], x["payload"]["recipient"], x["payload"]["delivered"]) for x in resolved_entries] == [
        ("bob", f"slack:{doubtful}", after_delivery)
    ]
    final = cli("notify", 1, "--event", "promoted")
    assert final.exit_code == 0, final.output
    assert slack_api.posted_channels() == AFFECTED_CHANNELS


def outbox_status(engine: Any) -> dict[str, str]:
    return dict(engine.query("select recipient, status from restate_meta.notification_outbox"))


def recompute_validated(s: Settings, rid: int) -> None:
    plan = start_run(s, rid)
    for c in plan.chunks:
        run_chunk(s, rid, c.chunk_id)
    finish_run(s, rid)
    run_diff(s, rid)
    store_passing_validation(s, rid)


def test_cascaded_rollback_announces_every_restatement_it_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = make_wh_settings(tmp_path / "wh")
    land(s)
    load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v1"}}))
    use_settings(monkeypatch, s)
    first = plan_september(s)
    recompute_validated(s, first)
    assert cli("promote", first).exit_code == 0
    second = plan_september(s)  # later, over the same partitions
    recompute_validated(s, second)
    assert cli("promote", second).exit_code == 0

    result = cli("rollback", first, "--by", "cfo", "--cascade")

    assert result.exit_code == 0, result.output
    for rid in (first, second):
        rows = outbox(s, rid)
        assert rows["rolled_back"] and set(rows["rolled_back"].values()) == {"sent"}, rid
        assert rows["rolled_back"].keys() == rows["promoted"].keys()
        assert len(outbox_folders(s, f"restatement-{rid}-rolled_back")) == len(rows["promoted"])
