"""The payment webhook receiver (Stripe): verified, journaled, acknowledged."""

from interfaces.webhooks.app import create_app, serve

__all__ = ["create_app", "serve"]
