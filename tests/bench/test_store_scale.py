"""Smoke test of ``bench/store_scale.py`` at a tiny size: it fills, reads, purges and reports.

Asserts the structure and the counts, nothing about timings (a shared test machine)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="the bench reads /proc")


def test_history_is_in_start_order_with_about_fifty_calls_a_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH_DIR))
    data = importlib.import_module("store_scale_data")
    now = 1_767_225_600.0
    events = list(data.history(5000, now))
    assert len(events) == 5000 and len({e.event_id for e in events}) == 5000
    assert [e.started_at for e in events] == sorted(e.started_at for e in events)
    assert now - 7 * data.DAY <= events[0].started_at and events[-1].started_at < now
    sessions = {e.session_id for e in events}
    assert 5000 / 90 < len(sessions) < 5000 / 40
    assert sum(1 for e in events if e.session_id == data.long_session_id(5000)) == data.LONG_SESSION_CALLS


def test_a_small_run_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "store_scale.md"
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH_DIR / "store_scale.py"),
            "--events",
            "3000",
            "--no-serve",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-2])
    for order in ("recent", "cost", "tokens", "calls", "duration", "tool_time"):
        assert figures[f"sessions_{order}"]["p95_ms"] > 0
    assert figures["events"] == 3000 and figures["sessions_7d"] > 30
    assert figures["purge_day_events"] > 0 and figures["purge_writer_batches"] > 0
    live = 32 * figures["purge_writer_batches"]  # the writer's events during the purge
    assert figures["migration_events"] == 3000 - figures["purge_day_events"] + live
    assert (
        figures["write_cpu_us_per_event_with_rollup"] > 0 < figures["write_cpu_us_per_event_without_rollup"]
    )
    text = out.read_text()
    assert text.startswith("# Read side at scale") and "| sessions list, order=tool_time" in text
