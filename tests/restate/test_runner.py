"""Whether the process recorded as running a chunk is still alive."""

from __future__ import annotations

import socket
import subprocess
import sys

from restate.state.runner import is_alive, this_process


def test_this_process_is_alive_and_a_finished_one_is_not() -> None:
    assert is_alive(this_process()) is True
    child = subprocess.run(
        [sys.executable, "-c", "from restate.state.runner import this_process; print(this_process())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert is_alive(child.stdout.strip()) is False  # it exited


def test_a_recycled_pid_is_not_the_same_process() -> None:
    host, pid, _ = this_process().rsplit(":", 2)
    assert is_alive(f"{host}:{pid}:1") is False  # same pid, another start time


def test_what_cannot_be_told_from_here_is_unknown() -> None:
    assert is_alive(None) is None
    assert is_alive(f"not-{socket.gethostname()}:1:1") is None
    assert is_alive("garbage") is None
