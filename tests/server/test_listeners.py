"""The interpreter settings a serving process applies (sidecar.server.listeners.tune_runtime)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest

from sidecar.server import listeners as server


@pytest.fixture
def restore_runtime() -> Iterator[None]:
    threshold, interval = gc.get_threshold(), sys.getswitchinterval()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("restore_runtime")
def test_tune_runtime_freezes_start_up_objects_and_relaxes_gc_and_thread_switching() -> None:
    gc.unfreeze()
    survivor = [{"built": "at start-up"}]  # tracked containers alive when serving starts
    _, gen1, gen2 = gc.get_threshold()
    server.tune_runtime()
    assert gc.get_freeze_count() > 0
    assert gc.is_tracked(survivor)
    assert all(obj is not survivor for obj in gc.get_objects())  # frozen: in no collectable generation
    assert gc.get_threshold() == (server.GC_GEN0_THRESHOLD, gen1, gen2)
    assert server.GC_GEN0_THRESHOLD > 700  # above CPython's default: fewer young collections
    assert sys.getswitchinterval() == pytest.approx(server.SWITCH_INTERVAL_S)
    assert server.SWITCH_INTERVAL_S < 0.005
