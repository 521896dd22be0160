"""The reads of ``store_scale.py``, run in a fresh process (as a server would run them) through the
query layer: timings in milliseconds (p50/p95 over repeated runs) and the process's RSS after them."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from store_scale_data import DAY, long_session_id

from sidecar.report.reading import report_parts
from sidecar.store.queries import ORDERS, SessionFilters, SessionQuery
from sidecar.store.sqlite_reads import SQLiteReads

IDLE = 900.0


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _timed(fn: Callable[[], Any], runs: int) -> dict[str, float]:
    fn()  # the first run warms the page cache, as the second request to a server would find it
    took, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        took.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    took.sort()
    cpu.sort()
    # CPU time too: on a shared machine the wall clock also counts the time others held the cores.
    return {
        "p50_ms": took[len(took) // 2],
        "p95_ms": took[max(0, int(0.95 * len(took)) - 1)],
        "cpu_p50_ms": cpu[len(cpu) // 2],
        "cpu_p95_ms": cpu[max(0, int(0.95 * len(cpu)) - 1)],
    }


def run_reads(path: Path, now: float) -> dict[str, Any]:
    import sidecar.app  # noqa: F401  (the serving process has the whole app loaded)

    out: dict[str, Any] = {"rss_before_reads_mb": _rss_mb()}
    reads = SQLiteReads(path)
    week = SessionFilters(since=now - 7 * DAY)
    start = time.perf_counter()
    for order in ORDERS:
        q = SessionQuery(now, IDLE, week, order, 50)
        out[f"sessions_{order}"] = _timed(lambda q=q: reads.list_sessions(q), 30)
        cursor = reads.list_sessions(q).next_cursor
        q2 = SessionQuery(now, IDLE, week, order, 50, cursor)
        out[f"sessions_{order}_page2"] = _timed(lambda q2=q2: reads.list_sessions(q2), 10)
    for name, f in (
        ("app", SessionFilters(since=now - 7 * DAY, app="app-3")),
        ("model", SessionFilters(since=now - 7 * DAY, model="claude-opus-4-1-20250805")),
        ("open", SessionFilters(since=now - 7 * DAY, state="open")),
        ("min_cost", SessionFilters(since=now - 7 * DAY, min_cost_usd=5.0)),
    ):
        q = SessionQuery(now, IDLE, f, "cost", 50)
        out[f"sessions_cost_filter_{name}"] = _timed(lambda q=q: reads.list_sessions(q), 10)
    sid = long_session_id(10**9)
    if sid and reads.session_detail(sid, now=now, idle_timeout_s=IDLE):
        out["session_500_calls"] = _timed(lambda: reads.session_detail(sid, now=now, idle_timeout_s=IDLE), 30)
    for group_by in ("app", "model", "hour"):
        out[f"summary_24h_{group_by}"] = _timed(lambda g=group_by: reads.summary(now - DAY, now, g), 10)
    out["summary_7d_day"] = _timed(lambda: reads.summary(now - 7 * DAY, now, "day"), 5)
    out["summary_7d_model"] = _timed(lambda: reads.summary(now - 7 * DAY, now, "model"), 5)

    def report() -> None:  # what ``claude-sidecar report`` reads for 24 h
        report_parts(reads, now=now, window_s=DAY, idle_timeout_s=IDLE, limit=10)

    out["report_query_layer"] = _timed(report, 5)
    out["tool_summary_24h"] = _timed(lambda: reads.tool_summary(now - DAY, now), 5)
    day = now - now % DAY

    def start_up() -> None:  # what ``serve`` reads at start: budget counters, then the session tracker
        sessions = reads.session_counters(now - 7 * DAY)
        reads.unpriced_calls(min([s.first_seen for s in sessions], default=day))
        reads.summary(day, now + 1, "app")
        reads.session_counters(now - IDLE)

    out["start_up_reads"] = _timed(start_up, 3)
    out["open_sessions"] = len(reads.session_counters(now - IDLE))
    out["sessions_7d"] = len(reads.session_counters(now - 7 * DAY))
    out["reads_total_s"] = time.perf_counter() - start
    out["load_during_reads"] = os.getloadavg()[0]
    out["rss_after_reads_mb"] = _rss_mb()
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    reads.close()
    return out
