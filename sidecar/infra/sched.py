"""Cooperative scheduling for background threads that share a core with the event loop."""

from __future__ import annotations

import os
import time


def yield_cpu() -> None:
    """Let another runnable thread or process have this core now; releases the GIL meanwhile.

    Background work (the recorder's sinks) calls this between chunks, so a request that arrives in the
    middle waits for one chunk instead of the rest of a scheduler time slice (several milliseconds).
    """
    if hasattr(os, "sched_yield"):
        os.sched_yield()
    else:  # pragma: no cover - platforms without sched_yield
        time.sleep(0)
