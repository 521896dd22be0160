"""``summary`` on SQLite: whole hours from the hourly rollup, partial hours from their raw events.

A window ``[since, until)`` splits into the whole UTC hours inside it (read from ``hourly_rollup`` and
``latency_hist``) and at most two partial hours at its edges (read from ``events`` through the
``started_at`` index and aggregated by the same expressions as the triggers). The answer is the same as
aggregating every event of the window, at the cost of about two hours of events plus one row per hour,
app and model.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sidecar.store.latency_buckets import DURATION, TTFT
from sidecar.store.queries import check_window
from sidecar.store.session_view import SUMMARY_FIELDS, summary_doc, tool_summary_doc
from sidecar.store.sqlite_hist import BUCKET, HOUR, MODEL_CALL, MODEL_KEY, OK_CALL
from sidecar.store.sqlite_purge import hour_of
from sidecar.store.sqlite_rollup import HOURLY_SUMS, MISS_SUMS

_EVENT_SUMS = dict(HOURLY_SUMS) | dict(MISS_SUMS)
# The window's cache misses by reason, through the partial index of the calls that missed (migration 3).
_MISSES = (
    "SELECT cache_miss_reason, count(*), total(cache_miss_cost_usd) FROM events "
    "WHERE started_at >= ? AND started_at < ? AND cache_miss_reason IS NOT NULL "
    f"AND {MODEL_CALL.format(e='')} GROUP BY cache_miss_reason"
)
_HOURLY_KEYS = {"app": "app", "model": "model", "hour": "hour", "day": "hour / 86400 * 86400"}
_DAILY_KEYS = {"app": "app", "model": "model", "day": "day"}
_EVENT_KEYS = {
    "app": "e.app",
    "model": MODEL_KEY.format(e="e."),
    "hour": HOUR.format(e="e."),
    "day": f"{HOUR.format(e='e.')} / 86400 * 86400",
}


def _edges(since: float, until: float) -> tuple[tuple[int, int], list[tuple[float, float]]]:
    """Whole hours ``[first, end)`` inside the window, and the partial ranges left at its edges."""
    first = hour_of(since)
    if since > first:
        first += 3600
    end = hour_of(until)
    if first >= end:
        return (0, 0), [(since, until)] if since < until else []
    ranges = [(since, float(first))] if since < first else []
    if until > end:
        ranges.append((float(end), until))
    return (first, end), ranges


def _sums_sql(group_by: str, n_ranges: int) -> str:
    hourly = ", ".join(f"sum({name})" for name in SUMMARY_FIELDS)
    parts = [
        f"SELECT {_HOURLY_KEYS[group_by]} AS k, {hourly} FROM hourly_rollup "
        "WHERE hour >= ? AND hour < ? GROUP BY k"
    ]
    if n_ranges:
        events = ", ".join(f"sum({_EVENT_SUMS[name].format(e='e.')})" for name in SUMMARY_FIELDS)
        where = " OR ".join("(e.started_at >= ? AND e.started_at < ?)" for _ in range(n_ranges))
        key = _EVENT_KEYS[group_by]
        parts.append(f"SELECT {key} AS k, {events} FROM events AS e WHERE {where} GROUP BY k")
    return " UNION ALL ".join(parts)


def _hist_query(
    group_by: str, hours: tuple[int, int], ranges: list[tuple[float, float]]
) -> tuple[str, list[float]]:
    """Histogram rows of the window: whole days from the daily level (except by hour), the other whole
    hours from the hourly one, the partial hours from their events."""
    first, end = hours
    day_first, day_end = -(-first // 86400) * 86400, end // 86400 * 86400
    hour_ranges = [(first, end)]
    parts: list[str] = []
    params: list[float] = []
    if group_by != "hour" and day_first < day_end:
        parts.append(
            f"SELECT {_DAILY_KEYS[group_by]} AS k, metric, bucket, sum(n) FROM latency_hist_daily "
            "WHERE day >= ? AND day < ? GROUP BY k, metric, bucket"
        )
        params += [day_first, day_end]
        hour_ranges = [(first, day_first), (day_end, end)]
    hour_ranges = [(a, b) for a, b in hour_ranges if a < b]
    if hour_ranges:
        where = " OR ".join("(hour >= ? AND hour < ?)" for _ in hour_ranges)
        parts.append(
            f"SELECT {_HOURLY_KEYS[group_by]} AS k, metric, bucket, sum(n) FROM latency_hist "
            f"WHERE {where} GROUP BY k, metric, bucket"
        )
        params += [bound for r in hour_ranges for bound in r]
    if ranges:
        where = " OR ".join("(e.started_at >= ? AND e.started_at < ?)" for _ in ranges)
        success = f"{MODEL_CALL} AND {OK_CALL}".format(e="e.")
        for metric, column in ((DURATION, "duration_s"), (TTFT, "ttft_s")):
            parts.append(
                f"SELECT {_EVENT_KEYS[group_by]} AS k, {metric}, {BUCKET.format(x='e.' + column)} AS b, "
                f"count(*) FROM events AS e WHERE ({where}) AND {success} AND e.{column} IS NOT NULL "
                "GROUP BY k, b"
            )
            params += [bound for r in ranges for bound in r]
    return " UNION ALL ".join(parts), params


def summary(conn: sqlite3.Connection, since: float, until: float, group_by: str) -> dict[str, Any]:
    """The summary document (:func:`sidecar.store.session_view.summary_doc`) of ``[since, until)``."""
    check_window(since, until, group_by)
    (first, end), ranges = _edges(since, until)
    flat: list[float] = [bound for r in ranges for bound in r]
    sums = conn.execute(_sums_sql(group_by, len(ranges)), [first, end, *flat]).fetchall()
    hist_sql, hist_params = _hist_query(group_by, (first, end), ranges)
    hist = conn.execute(hist_sql, hist_params).fetchall() if hist_sql else []
    (sessions,) = conn.execute(
        "SELECT count(*) FROM sessions_rollup WHERE last_seen >= ? AND first_seen < ?", (since, until)
    ).fetchone()
    misses = conn.execute(_MISSES, (since, until)).fetchall()
    return summary_doc((since, until), group_by, sums, hist, int(sessions), misses)


_TOOL_WINDOW = "e.started_at >= ? AND e.started_at < ? AND (e.tool_uses != '[]' OR e.tool_results != '[]')"
_TOOL_USES = (
    f"SELECT u.value, count(*) FROM events AS e, json_each(e.tool_uses) AS u WHERE {_TOOL_WINDOW} "
    f"AND {MODEL_CALL.format(e='e.')} GROUP BY u.value"
)
_LATENCY = "json_extract(r.value, '$[2]')"
_TOOL_RESULTS = (
    f"SELECT json_extract(r.value, '$[1]') AS name, {BUCKET.format(x=_LATENCY)} AS b, count(*), "
    f"total({_LATENCY}), sum(json_extract(r.value, '$[3]')) FROM events AS e, json_each(e.tool_results) AS r "
    f"WHERE {_TOOL_WINDOW} GROUP BY name, b"
)


def tool_summary(conn: sqlite3.Connection, since: float, until: float) -> dict[str, dict[str, Any]]:
    """Per-tool statistics of the calls started in ``[since, until)``, through the index of calls with
    tool blocks (:func:`sidecar.store.session_view.tool_summary_doc`)."""
    check_window(since, until, "app")
    uses = conn.execute(_TOOL_USES, (since, until)).fetchall()
    results = conn.execute(_TOOL_RESULTS, (since, until)).fetchall()
    return tool_summary_doc(uses, results)
