"""Promotion notices over real transports: routing, content on the wire, exactly once."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from notifications import NoticeContext, NoticeEvent, Target, notify, resolve_in_doubt
from notifications.dispatch import build_targets
from notifications.events import Message
from restate.state import changelog
from tests.notifications.conftest import SLACK_TOKEN, channel_id, make_settings, seed_restatement

pytestmark = pytest.mark.slow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
AFFECTED_CHANNELS = ["#cs-analytics", "#data-platform", "#finance-reporting"]
AFFECTED_OWNERS = ["maria.finance@example.com", "sam.success@example.com"]


def monthly_rows() -> list[dict[str, Any]]:
    rows = []
    for month, before, after in [
        ("2026-01", "101250.40", "99875.15"),
        ("2026-02", "98410.00", "98410.00"),
        ("2026-03", "120000.55", "117300.05"),
    ]:
        b, a = Decimal(before), Decimal(after)
        rows.append(
            {
                "month": month,
                "dimensions": "currency=USD",
                "metric": "net_revenue",
                "as_reported": b,
                "restated": a,
                "delta": a - b,
                "pct": float((a - b) * 100 / b),
            }
        )
    return rows


def promotion(restatement_id: int = 7) -> NoticeContext:
    return NoticeContext(
        restatement_id=restatement_id,
        event=NoticeEvent.PROMOTED,
        models=["fct_revenue_daily"],
        period_start=date(2026, 1, 1),
        period_end=date(2026, 3, 31),
        reason="Refunds were not subtracted from net revenue",
        ticket="FIN-1234",
        requested_by="alice",
        approved_by="slack:UAPPROVER",
        changelog_version=42,
        monthly=monthly_rows(),
        as_reported_sql="select * from analytics.fct_revenue_daily_as_of where replaced_by_restatement = 7",
    )


def live_settings(tmp_path: Path, slack_api: Any, smtp_port: int, **extra: Any) -> Any:
    return make_settings(
        tmp_path,
        slack_token=SLACK_TOKEN,
        slack_base_url=slack_api.api_url,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_timeout_s=5,
        **extra,
    )


def outbox_status(engine: Any) -> dict[str, str]:
    return dict(engine.query("select recipient, status from restate_meta.notification_outbox"))


def sent_entries(engine: Any) -> list[dict[str, Any]]:
    return [e for e in changelog.entries(engine, "restate_meta") if e["event"] == "notice_sent"]


def test_promotion_notice_reaches_exactly_the_affected_audience(
    tmp_path, engine, manifest, slack_api, smtp_server
):
    box, port = smtp_server
    settings = live_settings(tmp_path, slack_api, port)

    report = notify(engine, settings, manifest, promotion())

    # Slack: Block Kit posts to the channels of the two affected dashboards + platform.
    assert slack_api.posted_channels() == AFFECTED_CHANNELS
    net_change = sum(r["delta"] for r in monthly_rows())  # -4,075.75
    for call in slack_api.of("chat.postMessage"):
        blocks = (
            json.loads(call.params["blocks"])
            if isinstance(call.params["blocks"], str)
            else call.params["blocks"]
        )
        assert blocks[0]["type"] == "header"
        assert "Restatement #7" in blocks[0]["text"]["text"]
        wire = json.dumps(blocks)
        assert f"{net_change:+,.2f}" in wire  # the period total, as computed here
        assert "Finance revenue dashboard" in wire and "Account health dashboard" in wire
        assert "Subscriptions operations" not in wire
    # The chart: one upload per post, PNG bytes, shared into the thread of that post.
    uploads = slack_api.of("upload")
    assert len(uploads) == 3 and all(u.body.startswith(PNG_MAGIC) for u in uploads)
    completes = slack_api.of("files.completeUploadExternal")
    assert sorted(c.params["channel_id"] for c in completes) == sorted(
        channel_id(c) for c in AFFECTED_CHANNELS
    )
    assert all(c.params.get("thread_ts") for c in completes)

    # Email: exactly the owners, multipart text + HTML with the chart attached.
    assert box.recipients() == AFFECTED_OWNERS
    for mail_from, _, msg in box.messages:
        assert mail_from == "restate@finance.example.com"
        assert msg["Subject"].startswith("[restate] Restatement #7")
        plain = msg.get_body(("plain",)).get_content()
        htm = msg.get_body(("html",)).get_content()
        assert "Refunds were not subtracted" in plain and "FIN-1234" in plain
        assert f"{net_change:+,.2f}" in plain and f"{net_change:+,.2f}" in htm
        assert "fct_revenue_daily_as_of" in plain
        pngs = [p for p in msg.iter_attachments() if p.get_content_type() == "image/png"]
        assert len(pngs) == 1 and pngs[0].get_content().startswith(PNG_MAGIC)

    # Nobody else, and the bookkeeping matches what went out.
    everyone = {f"slack:{c}" for c in AFFECTED_CHANNELS} | {f"email:{o}" for o in AFFECTED_OWNERS}
    assert set(report.sent) == everyone and report.complete
    assert outbox_status(engine) == dict.fromkeys(everyone, "sent")
    assert sorted(e["payload"]["recipient"] for e in sent_entries(engine)) == sorted(everyone)
    assert changelog.verify(engine, "restate_meta") is None

    # Running it again sends nothing.
    again = notify(engine, settings, manifest, promotion())
    assert again.sent == [] and sorted(again.already_sent) == sorted(everyone)
    assert len(slack_api.of("chat.postMessage")) == 3 and len(box.messages) == 2
    assert len(sent_entries(engine)) == 5


def test_refused_sends_are_retried_and_nothing_is_sent_twice(
    tmp_path, engine, manifest, slack_api, smtp_server
):
    box, port = smtp_server
    settings = live_settings(tmp_path, slack_api, port)
    slack_api.refuse_posts_after = 1  # Slack rate-limits after the first post

    first = notify(engine, settings, manifest, promotion())
    assert len(first.sent) == 3  # one channel + two emails
    assert sorted(first.failed) == [f"slack:{c}" for c in AFFECTED_CHANNELS[1:]]
    assert all("ratelimited" in why for why in first.failed.values())
    assert len(slack_api.of("chat.postMessage", ok=False)) == 2

    slack_api.refuse_posts_after = None
    second = notify(engine, settings, manifest, promotion())
    assert sorted(second.sent) == sorted(first.failed) and second.complete

    # Each channel got exactly one successful post; each owner exactly one email.
    assert slack_api.posted_channels() == AFFECTED_CHANNELS
    assert box.recipients() == AFFECTED_OWNERS
    assert len(sent_entries(engine)) == 5
    attempts = dict(engine.query("select recipient, attempts from restate_meta.notification_outbox"))
    assert attempts["slack:#finance-reporting"] == 2 and attempts["slack:#cs-analytics"] == 1


class SimulatedCrash(BaseException):
    """Stands for the process dying (kill -9, OOM): nothing after it runs."""


class CrashingTarget(Target):
    """Delegates to a real target, and 'dies' on its Nth call, before or after delivering."""

    def __init__(self, inner: Target, crash_on_call: int, after_delivery: bool) -> None:
        self.inner = inner
        self.channel = inner.channel
        self.crash_on_call = crash_on_call
        self.after_delivery = after_delivery
        self.calls = 0

    def send(self, recipient: str, message: Message) -> str | None:
        self.calls += 1
        if self.calls == self.crash_on_call and not self.after_delivery:
            raise SimulatedCrash(recipient)
        ref = self.inner.send(recipient, message)
        if self.calls == self.crash_on_call:
            raise SimulatedCrash(recipient)
        return ref

    def was_delivered(self, recipient: str, message: Message) -> bool | None:
        return self.inner.was_delivered(recipient, message)


@pytest.mark.parametrize("after_delivery", [True, False], ids=["after-send", "before-send"])
def test_killed_notify_then_rerun_sends_each_notice_once_to_the_outbox(
    tmp_path, engine, manifest, after_delivery
):
    settings = make_settings(tmp_path)  # no Slack token, no SMTP host: local outbox
    targets = build_targets(settings)
    assert list(targets) == ["outbox"]
    crashing = {"outbox": CrashingTarget(targets["outbox"], 3, after_delivery)}

    with pytest.raises(SimulatedCrash):
        notify(engine, settings, manifest, promotion(), targets=crashing)
    assert list(outbox_status(engine).values()).count("sending") == 1

    rerun = notify(engine, settings, manifest, promotion(), targets=targets)
    assert rerun.complete and rerun.in_doubt == []
    everyone = {f"slack:{c}" for c in AFFECTED_CHANNELS} | {f"email:{o}" for o in AFFECTED_OWNERS}
    assert outbox_status(engine) == dict.fromkeys(everyone, "sent")
    # One folder per recipient, each written once; one audit entry each.
    folders = sorted(p.parent for p in settings.outbox_dir.glob("*/*/notice.json"))
    assert len(folders) == 5
    assert sorted(json.loads((f / "notice.json").read_text())["recipient"] for f in folders) == sorted(
        everyone
    )
    assert all((f / "restatement-7-promoted.png").read_bytes().startswith(PNG_MAGIC) for f in folders)
    assert sorted(e["payload"]["recipient"] for e in sent_entries(engine)) == sorted(everyone)


def test_killed_slack_send_is_never_repeated_and_is_reported_in_doubt(
    tmp_path, engine, manifest, slack_api, smtp_server
):
    box, port = smtp_server
    settings = live_settings(tmp_path, slack_api, port)
    real = build_targets(settings)
    # Dies right after Slack accepted the 2nd post (#data-platform), before recording it.
    crashing = {**real, "slack": CrashingTarget(real["slack"], 2, after_delivery=True)}

    with pytest.raises(SimulatedCrash):
        notify(engine, settings, manifest, promotion(), targets=crashing)
    rerun = notify(engine, settings, manifest, promotion(), targets=real)

    # The interrupted notice is not sent again; it is surfaced instead of guessed.
    assert rerun.in_doubt == ["slack:#data-platform"]
    assert slack_api.posted_channels() == AFFECTED_CHANNELS  # each exactly once
    assert box.recipients() == AFFECTED_OWNERS
    assert outbox_status(engine)["slack:#data-platform"] == "sending"

    # Someone checked the channel: it is there. Recorded, and nothing more is sent.
    resolve_in_doubt(engine, settings, 7, "promoted", "slack:#data-platform", delivered=True, actor="bob")
    final = notify(engine, settings, manifest, promotion(), targets=real)
    assert final.complete and final.sent == []
    assert slack_api.posted_channels() == AFFECTED_CHANNELS
    resolved = [e for e in changelog.entries(engine, "restate_meta") if e["event"] == "notice_resolved"]
    assert [(e["actor"], e["payload"]["delivered"]) for e in resolved] == [("bob", True)]


def test_slack_send_killed_before_delivery_is_released_and_sent_once(
    tmp_path, engine, manifest, slack_api, smtp_server
):
    box, port = smtp_server
    settings = live_settings(tmp_path, slack_api, port)
    real = build_targets(settings)
    crashing = {**real, "slack": CrashingTarget(real["slack"], 1, after_delivery=False)}

    with pytest.raises(SimulatedCrash):
        notify(engine, settings, manifest, promotion(), targets=crashing)
    rerun = notify(engine, settings, manifest, promotion(), targets=real)
    assert rerun.in_doubt == ["slack:#cs-analytics"]
    assert slack_api.posted_channels() == AFFECTED_CHANNELS[1:]

    resolve_in_doubt(
        engine, settings, 7, NoticeEvent.PROMOTED, "slack:#cs-analytics", delivered=False, actor="bob"
    )
    final = notify(engine, settings, manifest, promotion(), targets=real)
    assert final.sent == ["slack:#cs-analytics"] and final.complete
    assert slack_api.posted_channels() == AFFECTED_CHANNELS
    assert box.recipients() == AFFECTED_OWNERS


def test_notify_restatement_builds_the_notice_from_the_stored_restatement(tmp_path, engine, manifest):
    from notifications.lifecycle import notify_restatement
    from restate.state import status

    seed_restatement(engine)
    settings = make_settings(tmp_path)  # embedded default: local outbox
    # A promotion notice needs a promotion: without its changelog entry nothing is sent.
    with pytest.raises(ValueError, match="no 'promoted' entry"):
        notify_restatement(settings, 1, "promoted", manifest=manifest)
    assert outbox_status(engine) == {}
    changelog.append(engine, "restate_meta", "promoted", {"models": ["fct_revenue_daily"]}, restatement_id=1)
    report = notify_restatement(settings, 1, "promoted", manifest=manifest)
    assert report.complete and len(report.sent) == 5

    monthly = status.diff_by_month(engine, settings, 1)
    total = sum(m["delta"] for m in monthly)
    for folder in sorted(p.parent for p in settings.outbox_dir.glob("restatement-1-promoted/*/notice.json")):
        text = (folder / "message.txt").read_text()
        assert "Refunds not netted" in text and "FIN-1234" in text
        assert f"{total:+,.2f}" in text
        assert "replaced_by_restatement = 1" in text
    # The same call again is a no-op.
    again = notify_restatement(settings, 1, "promoted", manifest=manifest)
    assert again.sent == [] and len(again.already_sent) == 5


@pytest.mark.parametrize("published", [True, False])
def test_approval_and_promotion_notices_link_and_attach_the_evidence_pack(
    tmp_path, engine, manifest, slack_api, smtp_server, published
):
    from notifications.lifecycle import notify_restatement
    from restate.evidence import verify_pack

    box, port = smtp_server
    seed_restatement(engine)
    extra = {"evidence_url": "https://evidence.finance.example.com/packs/"} if published else {}
    settings = live_settings(tmp_path, slack_api, port, **extra)
    changelog.append(engine, "restate_meta", "validated", {"validation_id": "v1"}, restatement_id=1)
    report = notify_restatement(settings, 1, "approval_needed", manifest=manifest)
    assert report.complete and report.sent

    page = tmp_path / "evidence" / "restatement-1-approval_needed" / "evidence.html"
    assert verify_pack(page.parent)[0] == []
    where = (
        "https://evidence.finance.example.com/packs/restatement-1-approval_needed/evidence.html"
        if published
        else f"{page} (on the tool's host; `restate evidence 1` writes it again)"
    )
    assert box.messages
    for _, _, msg in box.messages:
        assert f"Evidence: {where}" in msg.get_body(("plain",)).get_content()
        pages = [p for p in msg.iter_attachments() if p.get_content_type() == "text/html"]
        assert [p.get_filename() for p in pages] == ["restatement-1-evidence.html"]
        assert pages[0].get_payload(decode=True) == page.read_bytes()  # byte for byte: its sum holds
        assert pages[0].get_content() == page.read_text()
    for call in slack_api.of("chat.postMessage"):
        assert where.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in json.dumps(
            call.params["blocks"]
            if isinstance(call.params["blocks"], list)
            else json.loads(call.params["blocks"])
        )
    exported = [e for e in changelog.entries(engine, "restate_meta", 1) if e["event"] == "evidence_exported"]
    assert len(exported) == 1
    # a validation-failed notice carries no pack
    box.messages.clear()
    changelog.append(engine, "restate_meta", "validation_failed", {"validation_id": "v0"}, restatement_id=1)
    notify_restatement(settings, 1, "validation_failed", manifest=manifest)
    assert box.messages
    for _, _, msg in box.messages:
        assert "Evidence:" not in msg.get_body(("plain",)).get_content()
        assert not [p for p in msg.iter_attachments() if p.get_content_type() == "text/html"]
