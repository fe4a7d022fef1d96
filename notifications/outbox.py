"""Local-folder delivery: the embedded default when no Slack token / SMTP host is set.

Each notice for each recipient becomes one folder, settings.outbox_dir/<notice key>/
<recipient>/, holding notice.json (subject, blocks, ...), message.txt, message.html and
the chart PNG. The folder is written under a temporary name and renamed into place, so
it either exists complete or not at all, and writing it twice is a no-op.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from notifications.events import Message, Target
from restate.settings import Settings


def _safe(recipient: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9._@-]+", "_", recipient).strip("_")[:80]
    return f"{readable}-{hashlib.sha256(recipient.encode()).hexdigest()[:8]}"


class OutboxTarget(Target):
    channel = "outbox"

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboxTarget:
        return cls(settings.outbox_dir)

    def folder(self, recipient: str, message: Message) -> Path:
        return self.root / message.key / _safe(recipient)

    def was_delivered(self, recipient: str, message: Message) -> bool | None:
        return (self.folder(recipient, message) / "notice.json").is_file()

    def send(self, recipient: str, message: Message) -> str | None:
        final = self.folder(recipient, message)
        if (final / "notice.json").is_file():
            return str(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
        try:
            (tmp / "message.txt").write_text(message.text)
            (tmp / "message.html").write_text(message.html)
            if message.chart_png:
                (tmp / message.chart_filename).write_bytes(message.chart_png)
            notice = {
                "key": message.key,
                "recipient": recipient,
                "subject": message.subject,
                "blocks": message.blocks,
                "chart": message.chart_filename if message.chart_png else None,
            }
            (tmp / "notice.json").write_text(json.dumps(notice, indent=2))
            try:
                os.replace(tmp, final)
            except OSError:
                if not (final / "notice.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return str(final)
