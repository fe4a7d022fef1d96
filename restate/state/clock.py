"""The one clock: naive UTC timestamps, as stored in the meta schema."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
