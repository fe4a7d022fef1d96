"""Routing from lineage, message content and limits, email over STARTTLS + AUTH."""

from __future__ import annotations

import datetime as dt
import io
import ipaddress
import json
import re
import ssl
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from PIL import Image
from pydantic import SecretStr

from notifications import NoticeContext, NoticeEvent, compose, downstream_exposures, recipients
from notifications.composer import as_reported_query
from notifications.email import EmailTarget
from notifications.events import DeliveryError, label
from notifications.routing import RoutingError
from tests.notifications.conftest import Mailbox, free_port, make_settings


def context(event: NoticeEvent = NoticeEvent.PROMOTED, months: int = 3, **kw: Any) -> NoticeContext:
    monthly = []
    for i in range(months):
        for currency in ("USD", "EUR", "GBP"):
            for metric in ("gross_revenue", "refunds", "net_revenue"):
                before = Decimal(10_000 + 137 * i)
                after = before - Decimal("12.34") * (i % 4)
                monthly.append(
                    {
                        "month": f"{2024 + i // 12}-{i % 12 + 1:02d}",
                        "dimensions": f"currency={currency}",
                        "metric": metric,
                        "as_reported": before,
                        "restated": after,
                        "delta": after - before,
                        "pct": float((after - before) * 100 / before),
                    }
                )
    values: dict[str, Any] = {
        "restatement_id": 12,
        "event": event,
        "models": ["fct_revenue_daily"],
        "period_start": dt.date(2024, 1, 1),
        "period_end": dt.date(2024, 1, 1) + dt.timedelta(days=31 * months - 1),
        "reason": "Refunds <b>&</b> credits",
        "ticket": "FIN-9",
        "requested_by": "alice",
        "monthly": monthly,
    }
    values.update(kw)
    return NoticeContext(**values)


def check_block_kit_limits(blocks: list[dict[str, Any]]) -> None:
    assert 0 < len(blocks) <= 50
    for b in blocks:
        if b["type"] == "header":
            assert len(b["text"]["text"]) <= 150
        if b["type"] == "section":
            if "text" in b:
                assert len(b["text"]["text"]) <= 3000
            for f in b.get("fields", []):
                assert len(f["text"]) <= 2000
            assert len(b.get("fields", [])) <= 10


@pytest.mark.parametrize("event", list(NoticeEvent))
def test_every_event_renders_within_slack_limits(event):
    msg = compose(context(event))
    assert msg.key == f"restatement-12-{event.value}"
    assert label(event) in msg.subject and "#12" in msg.subject
    check_block_kit_limits(msg.blocks)
    assert "Refunds <b>&</b> credits" in msg.text
    assert "Refunds &lt;b&gt;&amp;&lt;/b&gt; credits" in msg.html  # escaped, not markup
    assert "Refunds &lt;b&gt;&amp;&lt;/b&gt; credits" in json.dumps(msg.blocks)


def test_totals_are_the_sums_of_the_months_per_metric_and_currency():
    ctx = context(months=5)
    usd_net = [r for r in ctx.monthly if r["metric"] == "net_revenue" and r["dimensions"] == "currency=USD"]
    before = sum(r["as_reported"] for r in usd_net)
    after = sum(r["restated"] for r in usd_net)
    total = next(
        t for t in ctx.totals or [] if t["metric"] == "net_revenue" and t["dimensions"] == "currency=USD"
    )
    assert (total["as_reported"], total["restated"], total["delta"]) == (before, after, after - before)
    msg = compose(ctx)
    line = next(x for x in msg.text.splitlines() if re.match(r"Net revenue +USD ", x))
    assert f"{before:,.2f}" in line and f"{after - before:+,.2f}" in line


def test_long_restatements_are_truncated_in_slack_but_complete_in_email():
    msg = compose(context(months=36))
    check_block_kit_limits(msg.blocks)
    assert "the email has all of them" in json.dumps(msg.blocks)
    assert msg.text.count("\n2026-12  ") == 9  # every month x metric x currency row is there


def test_chart_is_a_real_png_and_absent_without_figures():
    msg = compose(context())
    assert msg.chart_png is not None
    img = Image.open(io.BytesIO(msg.chart_png))
    assert img.format == "PNG" and img.size[0] >= 800
    empty = compose(context(NoticeEvent.RESTATEMENT_PLANNED, months=0))
    assert empty.chart_png is None
    assert "No restated figures have been computed yet." in empty.text


def test_as_reported_query_names_the_as_of_view():
    sql = as_reported_query(
        "analytics", {"fct_revenue_daily": "event_date"}, dt.date(2024, 1, 1), dt.date(2024, 3, 31), 12
    )
    assert sql.startswith("select * from analytics.fct_revenue_daily_as_of")
    assert "replaced_by_restatement = 12" in sql and "'2024-03-31'" in sql


def test_email_message_id_is_stable_per_notice_and_recipient():
    target = EmailTarget("localhost", sender="restate@finance.example.com")
    msg = compose(context())
    a = target.build("maria@example.com", msg)
    b = target.build("maria@example.com", msg)
    c = target.build("sam@example.com", msg)
    assert a["Message-ID"] == b["Message-ID"] != c["Message-ID"]
    assert a["Message-ID"].endswith("@finance.example.com>")


@pytest.mark.slow
def test_routing_follows_lineage_to_exposures(tmp_path, manifest):
    names = [e.name for e in downstream_exposures(manifest, ["fct_revenue_daily"])]
    # finance dashboard reads fct_revenue_monthly, a view over fct_revenue_daily.
    assert names == ["account_health_dashboard", "finance_revenue_dashboard"]
    settings = make_settings(tmp_path)
    assert recipients(manifest, ["fct_revenue_daily"], settings) == [
        "email:maria.finance@example.com",
        "email:sam.success@example.com",
        "slack:#cs-analytics",
        "slack:#data-platform",
        "slack:#finance-reporting",
    ]
    assert [e.name for e in downstream_exposures(manifest, ["dim_accounts"])] == [
        "account_health_dashboard",
        "subscriptions_ops_dashboard",
    ]
    with pytest.raises(RoutingError, match="fct_nope"):
        recipients(manifest, ["fct_nope"], settings)


def tls_contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A throwaway self-signed certificate for 127.0.0.1: (server, client) contexts."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cafile=str(cert_path))
    return server, client


@pytest.mark.slow
def test_email_over_starttls_with_login(tmp_path):
    server_ctx, client_ctx = tls_contexts(tmp_path)
    logins: list[tuple[str, bool]] = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        assert isinstance(auth_data, LoginPassword)
        ok = auth_data.login == b"restate" and auth_data.password == b"s3cret"
        logins.append((auth_data.login.decode(), session.ssl is not None))
        return AuthResult(success=ok, handled=False)

    box, port = Mailbox(), free_port()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_ctx,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
        auth_required=True,
    )
    controller.start()
    try:
        settings = make_settings(
            tmp_path,
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_user="restate",
            smtp_password="s3cret",
            smtp_starttls=True,
            smtp_timeout_s=5,
        )
        target = EmailTarget.from_settings(settings, ssl_context=client_ctx)
        msg = compose(context())
        ref = target.send("email:maria@example.com", msg)
        assert logins == [("restate", True)]  # logged in, and only after STARTTLS
        assert box.recipients() == ["maria@example.com"]
        assert box.messages[0][2]["Message-ID"] == ref

        wrong = EmailTarget.from_settings(
            settings.model_copy(update={"smtp_password": SecretStr("nope")}), ssl_context=client_ctx
        )
        with pytest.raises(DeliveryError, match=r"setup failed.*535"):
            wrong.send("email:maria@example.com", msg)
        plain = EmailTarget.from_settings(settings.model_copy(update={"smtp_starttls": False}))
        with pytest.raises(DeliveryError):  # the server insists on STARTTLS
            plain.send("email:maria@example.com", msg)
        assert box.recipients() == ["maria@example.com"]
    finally:
        controller.stop()


def test_an_entity_scoped_restatement_says_so_everywhere() -> None:
    entities = [f"acct_{i:03d}" for i in range(15)]
    msg = compose(context(NoticeEvent.PROMOTED, entities=entities))
    said = "Scope: only 15 entities: acct_000, acct_001"
    assert said in msg.text and "and 5 more" in msg.text
    assert "only 15 entities" in msg.html and any("only 15 entities" in str(b) for b in msg.blocks)
    one = compose(context(NoticeEvent.PROMOTED, entities=["acct_007"]))
    assert "Scope: only 1 entity: acct_007" in one.text
    everyone = compose(context(NoticeEvent.PROMOTED))
    assert "Scope: every entity" in everyone.text and "Validation:" not in everyone.text
