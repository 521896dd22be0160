"""What ``report`` and ``check`` ask the store's query layer for a window; the numbers are shaped by
:mod:`sidecar.core.report`. Every read costs what its answer costs (SPEC R-RS-1): summaries from the
rollups and latency histograms, top sessions from the per-session rollup, never the window's events."""

from __future__ import annotations

import math
from typing import Any

from sidecar.core.cache_report import cache_miss_section
from sidecar.core.report import ReportParts, measure, model_table
from sidecar.store.queries import MAX_LIMIT, ReadStore, SessionFilters, SessionQuery


def window_of(now: float, window_s: float) -> tuple[float, float]:
    """``[since, until)`` of the window ending at ``now``; ``until`` is just past ``now`` so that a call
    started at ``now`` itself is in it, as the report defines its window."""
    return now - window_s, math.nextafter(now, math.inf)


def top_sessions(
    reads: ReadStore, *, now: float, window_s: float, idle_timeout_s: float, limit: int
) -> list[dict[str, Any]]:
    """The ``limit`` most expensive sessions seen in the window (whole sessions), page by page."""
    since, until = window_of(now, window_s)
    filters = SessionFilters(since=since, until=until)
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    while len(out) < limit:
        size = min(MAX_LIMIT, limit - len(out))
        page = reads.list_sessions(SessionQuery(now, idle_timeout_s, filters, "cost", size, cursor))
        out += page.sessions
        cursor = page.next_cursor
        if cursor is None:
            break
    return out


def report_parts(
    reads: ReadStore, *, now: float, window_s: float, idle_timeout_s: float, limit: int
) -> ReportParts:
    """Everything ``report`` shows for the window ending at ``now``."""
    since, until = window_of(now, window_s)
    return ReportParts(
        summary=reads.summary(since, until, "model"),
        top_sessions=top_sessions(
            reads, now=now, window_s=window_s, idle_timeout_s=idle_timeout_s, limit=limit
        ),
        tools=reads.tool_summary(since, until),
        response_cache=reads.response_cache_hits(since, until),
        cache_misses=cache_miss_section(reads.cache_miss_groups(since, until), limit=limit),
    )


def check_measurements(
    reads: ReadStore, *, now: float, window_s: float, idle_timeout_s: float
) -> dict[str, Any]:
    """What ``check`` compares (:func:`sidecar.core.report.measure`): per-model p95 latency from the
    window's histograms, and the costs of the sessions last seen in it (whole sessions, from the rollup)."""
    since, until = window_of(now, window_s)
    models = model_table(reads.summary(since, until, "model")["rows"])
    sessions = [(s.last_seen, s.cost_usd) for s in reads.session_counters(since)]
    return measure(models, sessions, now=now, window_s=window_s, idle_timeout_s=idle_timeout_s)
