"""What ``report`` reads on SQLite besides ``summary``, sessions and tools: the window's cache misses
per session and reason, and its response-cache hits.

Misses go through the partial index of the calls that missed (migration 3), so they cost what the
window's misses cost. Response-cache hits have no rollup column: they are counted over the window's
rows through the ``started_at`` index (a column in ``hourly_rollup`` would need a migration).
"""

from __future__ import annotations

import sqlite3

from sidecar.core.cache_report import MissGroup
from sidecar.store.queries import check_window

# ``app`` is a bare column beside one min(): SQLite takes it from the row holding that minimum.
_MISS_GROUPS = (
    "SELECT session_id, cache_miss_reason, count(*), total(coalesce(cache_missed_tokens, 0)), "
    "total(coalesce(cache_miss_cost_usd, 0.0)), min(started_at), app FROM events "
    "WHERE started_at >= ? AND started_at < ? AND cache_miss_reason IS NOT NULL "
    "GROUP BY session_id, cache_miss_reason"
)
_HITS = (
    "SELECT count(*), total(response_cache_savings_usd) FROM events "
    "WHERE started_at >= ? AND started_at < ? AND outcome = 'cache_hit'"
)


def cache_miss_groups(conn: sqlite3.Connection, since: float, until: float) -> list[MissGroup]:
    check_window(since, until, "app")
    rows = conn.execute(_MISS_GROUPS, (since, until)).fetchall()
    return [
        MissGroup(str(sid), str(reason), int(n), int(tokens), float(cost), float(first), str(app))
        for sid, reason, n, tokens, cost, first, app in rows
    ]


def response_cache_hits(conn: sqlite3.Connection, since: float, until: float) -> tuple[int, float]:
    check_window(since, until, "app")
    n, saved = conn.execute(_HITS, (since, until)).fetchone()
    return int(n), float(saved)
