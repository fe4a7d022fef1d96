"""Slack delivery: chat.postMessage with Block Kit, then the chart uploaded into its thread."""

from __future__ import annotations

import logging
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from notifications.events import DeliveryError, Message, Target, split_recipient
from restate.settings import Settings

log = logging.getLogger(__name__)


def _refused_connection(exc: BaseException) -> bool:
    reason = exc.reason if isinstance(exc, URLError) else exc
    return isinstance(reason, ConnectionRefusedError)


class SlackTarget(Target):
    """Posts to channels with a bot token (needs chat:write and files:write scopes).

    The client is built with no automatic retries: whether and when to try again is the
    dispatcher's decision, so a lost response cannot silently turn into a second post.
    """

    channel = "slack"

    def __init__(
        self,
        token: str,
        base_url: str = "https://slack.com/api/",
        timeout_s: float = 10.0,
        client: WebClient | None = None,
    ) -> None:
        self.client = client or WebClient(
            token=token,
            base_url=base_url,
            timeout=max(1, round(timeout_s)),
            retry_handlers=[],
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackTarget:
        if settings.slack_token is None:
            raise ValueError("RESTATE_SLACK_TOKEN is not set")
        return cls(settings.slack_token.get_secret_value(), settings.slack_base_url)

    def send(self, recipient: str, message: Message) -> str | None:
        scheme, channel = split_recipient(recipient)
        if scheme != "slack":
            raise DeliveryError(f"{recipient!r} is not a Slack recipient")
        try:
            resp = self.client.chat_postMessage(
                channel=channel,
                text=message.subject,  # notification / screen-reader fallback
                blocks=message.blocks,
                unfurl_links=False,
                unfurl_media=False,
            )
        except SlackApiError as exc:
            # Slack answered with ok=false (not_in_channel, ratelimited, ...): not posted.
            error = exc.response.get("error") if exc.response is not None else None
            raise DeliveryError(f"Slack refused the message to {channel}: {error}") from exc
        except (URLError, OSError) as exc:
            if _refused_connection(exc):
                raise DeliveryError(f"cannot reach Slack: {exc}") from exc
            raise  # e.g. a timeout after the request went out: outcome unknown
        channel_id = str(resp.get("channel") or channel)
        ts = str(resp.get("ts") or "")
        reference = f"{channel_id}/{ts}"
        if message.chart_png:
            # The message is already posted: a failed upload must not cause a re-post.
            try:
                self.client.files_upload_v2(
                    channel=channel_id,
                    thread_ts=ts or None,
                    content=message.chart_png,
                    filename=message.chart_filename,
                    title=message.chart_title,
                    alt_txt=message.chart_title,
                )
            except (SlackApiError, SlackRequestError, OSError) as exc:
                log.warning("chart upload to %s failed after the message was posted: %s", channel, exc)
                reference += f" (chart upload failed: {exc})"
        return reference
