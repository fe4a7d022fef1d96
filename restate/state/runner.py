"""Which process runs a piece of work, and whether it still does.

A chunk being recomputed records its runner ("host:pid:start"), so `restate status`
can tell a chunk that is running from one whose process died (a crash, a kill, a reboot):
the first says "running", the second "interrupted", with the way to resume. The process
start time (Linux: /proc/<pid>/stat) guards against a recycled pid.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path


def _stat_field(pid: int, index: int) -> str:
    """A field of /proc/<pid>/stat counted after the command name (which may itself hold
    spaces): 0 is the state letter, 19 the start time; "?" where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[index]
    except (OSError, IndexError):
        return "?"


def _start_ticks(pid: int) -> str:
    return _stat_field(pid, 19)


@cache
def this_process() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid)}"


def is_alive(runner: str | None) -> bool | None:
    """True/False for a runner on this host; None when it cannot be told from here
    (another host, or no runner recorded)."""
    if not runner:
        return None
    parts = runner.rsplit(":", 2)
    if len(parts) != 3:
        return None
    host, pid_text, ticks = parts
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if _stat_field(pid, 0) == "Z":
        return False  # killed, not yet reaped by its parent: it runs nothing any more
    return ticks == "?" or _start_ticks(pid) == ticks


@contextmanager
def running_here(marker: Path) -> Iterator[None]:
    """While the block runs, `marker` names this process (runner_in tells whether it is
    still alive); it is removed after, unless another process has taken it over."""
    marker.parent.mkdir(parents=True, exist_ok=True)
    staged = marker.with_name(f"{marker.name}.{os.getpid()}.{threading.get_ident()}")
    staged.write_text(this_process())
    os.replace(staged, marker)
    try:
        yield
    finally:
        if runner_in(marker) == this_process():
            marker.unlink(missing_ok=True)


def decide(ticket: Path, verdict: str) -> str:
    """The first verdict written to `ticket` wins, across processes (an exclusive create):
    returns the winning one. A queued run's worker says "taken", its CLI "withdrawn"."""
    ticket.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(ticket, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        for _ in range(200):  # the winner created it and is writing its verdict now
            text = ticket.read_text().strip()
            if text:
                return text
            time.sleep(0.01)
        return ticket.read_text().strip() or "undecided"
    with os.fdopen(fd, "w") as f:
        f.write(verdict)
    return verdict


def runner_in(marker: Path) -> str | None:
    """The process a `running_here` marker names, or None when there is none."""
    try:
        return marker.read_text().strip() or None
    except OSError:
        return None
