"""Email delivery: smtplib with optional STARTTLS and login, HTML + plain text, chart PNG."""

from __future__ import annotations

import hashlib
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate

from notifications.events import DeliveryError, Message, Target, split_recipient
from restate.settings import Settings

# Server answers that prove the message was not accepted.
_REFUSED = (
    smtplib.SMTPRecipientsRefused,
    smtplib.SMTPSenderRefused,
    smtplib.SMTPDataError,
    smtplib.SMTPNotSupportedError,
)


class EmailTarget(Target):
    """One SMTP session per message (notices are few; no connection is kept open)."""

    channel = "email"

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        sender: str,
        user: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout_s: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.user = user
        self.password = password
        self.starttls = starttls
        self.timeout_s = timeout_s
        self.ssl_context = ssl_context

    @classmethod
    def from_settings(cls, settings: Settings, ssl_context: ssl.SSLContext | None = None) -> EmailTarget:
        if not settings.smtp_host:
            raise ValueError("RESTATE_SMTP_HOST is not set")
        return cls(
            settings.smtp_host,
            settings.smtp_port,
            sender=settings.email_from,
            user=settings.smtp_user,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            starttls=settings.smtp_starttls,
            timeout_s=settings.smtp_timeout_s,
            ssl_context=ssl_context,
        )

    def message_id(self, address: str, message: Message) -> str:
        """Stable per (notice, recipient), so a duplicate can be recognised downstream."""
        domain = self.sender.rpartition("@")[2] or "restate.invalid"
        digest = hashlib.sha256(address.lower().encode()).hexdigest()[:12]
        return f"<{message.key}.{digest}@{domain}>"

    def build(self, address: str, message: Message) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = message.subject
        msg["From"] = self.sender
        msg["To"] = address
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = self.message_id(address, message)
        msg["X-Restate-Notice"] = message.key
        if message.audit_head:
            msg["X-Restate-Audit-Head"] = message.audit_head
        msg.set_content(message.text)
        msg.add_alternative(message.html, subtype="html")
        if message.chart_png:
            msg.add_attachment(
                message.chart_png,
                maintype="image",
                subtype="png",
                filename=message.chart_filename,
            )
        for filename, content, mime in message.attachments:
            maintype, _, subtype = mime.partition("/")
            # base64 keeps the bytes exact (an evidence page must still match its pack's sum);
            # text gets its charset so every reader decodes it the same.
            params = {"charset": "utf-8"} if maintype == "text" else {}
            msg.add_attachment(
                content, maintype=maintype, subtype=subtype, filename=filename, cte="base64", params=params
            )
        return msg

    def send(self, recipient: str, message: Message) -> str | None:
        scheme, address = split_recipient(recipient)
        if scheme != "email":
            raise DeliveryError(f"{recipient!r} is not an email recipient")
        msg = self.build(address, message)
        try:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        try:
            try:
                smtp.ehlo()
                if self.starttls:
                    smtp.starttls(context=self.ssl_context or ssl.create_default_context())
                    smtp.ehlo()
                if self.user:
                    smtp.login(self.user, self.password or "")
            except (OSError, smtplib.SMTPException) as exc:
                # Nothing has been handed over yet.
                raise DeliveryError(f"SMTP session setup failed: {exc}") from exc
            try:
                smtp.send_message(msg, from_addr=self.sender, to_addrs=[address])
            except _REFUSED as exc:
                raise DeliveryError(f"the mail server refused the message: {exc}") from exc
            # Anything else (timeout, disconnect mid-DATA) propagates: outcome unknown.
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()
        return str(msg["Message-ID"])
