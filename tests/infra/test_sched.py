"""Background threads run below the event loop's priority on a shared core."""

from __future__ import annotations

import os
import threading

import pytest

from sidecar.infra.sched import BACKGROUND_NICE, lower_this_thread

pytestmark = pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread nice is Linux's")


def test_a_lowered_thread_runs_at_a_higher_nice_than_the_process() -> None:
    seen: dict[str, int | bool] = {}

    def work() -> None:
        tid = threading.get_native_id()
        before = os.getpriority(os.PRIO_PROCESS, tid)
        seen["lowered"] = lower_this_thread()
        seen["delta"] = os.getpriority(os.PRIO_PROCESS, tid) - before

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    process = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen["lowered"] is True
    assert seen["delta"] == min(BACKGROUND_NICE, 19 - process)  # nice tops out at 19
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == process  # the caller is untouched
