"""Cooperative scheduling for background threads that share a core with the event loop."""

from __future__ import annotations

import os
import threading
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


BACKGROUND_NICE = 5  # CFS weight 335 to the event loop's 1024: ~25 % of a contended core, enough to keep up


def lower_this_thread(by: int = BACKGROUND_NICE) -> bool:
    """Run the calling thread at a lower scheduling priority than the process (Linux: per-thread nice),
    so that on a shared core the event loop, when it wakes with a request, preempts the background work
    rather than waiting out its time slice. Returns whether it could; the thread runs either way."""
    native = getattr(threading, "get_native_id", None)
    if native is None or not hasattr(os, "setpriority"):  # pragma: no cover - non-Linux
        return False
    try:
        tid = native()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + by)
    except OSError:  # pragma: no cover - a sandbox that refuses it
        return False
    return True
