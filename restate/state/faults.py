"""Named step boundaries where a crash test can kill the process (RESTATE_CRASH_AT).

Every boundary the guarantees speak of calls `crash_point(settings, name)`. With
`crash_at` unset (always, outside tests) it does nothing. Set to a name, the process
SIGKILLs itself there: no cleanup, no finally blocks, exactly what a kill -9 or a lost
machine does, so tests can prove that rerunning the same command converges.
"""

from __future__ import annotations

import os
import signal

from restate.settings import Settings

# The boundaries, in lifecycle order (tests iterate over them).
CRASH_POINTS = (
    "plan_stored",
    "chunk_done",
    "recomputed",
    "validation_refreshed",
    "validated",
    "diffed",
    "promote_in_transaction",
    "promoted",
    "notice_sent",
    "rollback_in_transaction",
    "rolled_back",
)


def crash_point(settings: Settings, name: str) -> None:
    """SIGKILL this process when settings.crash_at names this boundary."""
    if settings.crash_at == name:
        os.kill(os.getpid(), signal.SIGKILL)
