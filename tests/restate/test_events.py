"""The core publishes lifecycle events; the notifier in use hears them, and a notifier
that fails never fails the step that published."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from restate.events import Event, LogOnly, installed_notifier, publish, use_notifier
from tests.conftest import make_settings


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.heard: list[tuple[int, Event, str | None]] = []
        self.fail = fail

    def publish(self, settings: Any, restatement_id: int, event: Event, *, detail: str | None = None,
                manifest: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
        if self.fail:
            raise ConnectionError("smtp down")
        self.heard.append((restatement_id, event, detail))
        return {"sent": 1}


def test_events_reach_the_notifier_in_use_and_failures_stay_inside(tmp_path: Path, caplog) -> None:
    s = make_settings(tmp_path)
    recorder = Recorder()
    with use_notifier(recorder):
        assert publish(s, 7, "promoted", detail="x") == {"sent": 1}
    assert recorder.heard == [(7, Event.PROMOTED, "x")]
    with use_notifier(Recorder(fail=True)):
        out = publish(s, 7, Event.ROLLED_BACK)
    assert out == {"error": "smtp down"}
    assert "retry: restate notify 7 --event rolled_back" in caplog.text
    with pytest.raises(ValueError):
        publish(s, 7, "no_such_event")  # a caller's mistake is not swallowed


def test_the_installed_notifier_is_the_notices_package_and_none_is_said_loudly(
    tmp_path: Path, caplog
) -> None:
    from notifications.notifier import OutboxNotifier

    assert isinstance(installed_notifier(), OutboxNotifier)  # the entry point of this install
    assert LogOnly().publish(make_settings(tmp_path), 3, Event.PROMOTED) == {"error": "no notifier installed"}
    assert "not announced" in caplog.text
