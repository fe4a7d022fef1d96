"""The `/restatement` Slack slash command app (slack-bolt behind FastAPI)."""

from interfaces.slack.app import create_app, handle_command, serve

__all__ = ["create_app", "handle_command", "serve"]
