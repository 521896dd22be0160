"""Retention purge of the SQLite store in short chunks, each leaving the rollups exact.

Each chunk is one short transaction. First, whole sessions last seen before the cutoff go, a few at a
time: their events and their rollup rows together. Then what is left before the cutoff — calls of
sessions that straddle it, and calls without a session — goes oldest first, and the few sessions it
touches are rebuilt from their remaining events. Delete triggers take every deleted call out of
``hourly_rollup`` and the latency histograms; rows left empty are dropped. :class:`PurgePacer` keeps
each chunk short and leaves the writer the lock between chunks, so recording waits for one short chunk
at most (SPEC R-RS-6).
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import orjson

from sidecar.store.sqlite_rollup import SESSION_SETS, recompute_sessions_sql

ALL_SETS = tuple(column for column, _, _ in SESSION_SETS)

CHUNK_ROWS = 2000
CHUNK_TARGET_S = 0.05
_IN_JSON = "(SELECT value FROM json_each(?))"
_RECOMPUTE = recompute_sessions_sql(f"e.session_id IN {_IN_JSON}", sets=ALL_SETS)


def hour_of(ts: float) -> int:
    """The UTC hour (unix seconds) the rollups file an event under; the same arithmetic as the SQL."""
    return int(ts) // 3600 * 3600


def _drop_empty(conn: sqlite3.Connection, first: float, last: float) -> None:
    """Drop the hourly and histogram rows left empty between ``first`` and ``last``."""
    hours, days = (hour_of(first), hour_of(last)), (hour_of(first) // 86400 * 86400, hour_of(last))
    conn.execute("DELETE FROM hourly_rollup WHERE hour BETWEEN ? AND ? AND requests <= 0", hours)
    conn.execute("DELETE FROM latency_hist WHERE hour BETWEEN ? AND ? AND n <= 0", hours)
    conn.execute("DELETE FROM latency_hist_daily WHERE day BETWEEN ? AND ? AND n <= 0", days)


def _whole_sessions(conn: sqlite3.Connection, older_than: float, limit: int) -> int:
    rows = conn.execute(
        "SELECT session_id, events, first_seen, last_seen FROM sessions_rollup WHERE last_seen < ? "
        "ORDER BY last_seen LIMIT ?",
        (older_than, limit),
    ).fetchall()
    taken: list[tuple[Any, ...]] = []
    events = 0
    for row in rows:  # at least one session, then as many as fit in the chunk
        if taken and events + row[1] > limit:
            break
        taken.append(row)
        events += row[1]
    if not taken:
        return 0
    ids = orjson.dumps([r[0] for r in taken])
    deleted = conn.execute(f"DELETE FROM events WHERE session_id IN {_IN_JSON}", (ids,)).rowcount
    conn.execute(f"DELETE FROM sessions_rollup WHERE session_id IN {_IN_JSON}", (ids,))
    _drop_empty(conn, min(r[2] for r in taken), max(r[3] for r in taken))
    return int(deleted)


def _oldest_calls(conn: sqlite3.Connection, older_than: float, limit: int) -> int:
    rows = conn.execute(
        "SELECT rowid, session_id, started_at FROM events WHERE started_at < ? ORDER BY started_at LIMIT ?",
        (older_than, limit),
    ).fetchall()
    if not rows:
        return 0
    sessions = orjson.dumps(sorted({r[1] for r in rows if r[1]}))
    conn.execute(f"DELETE FROM events WHERE rowid IN {_IN_JSON}", (orjson.dumps([r[0] for r in rows]),))
    conn.execute(f"DELETE FROM sessions_rollup WHERE session_id IN {_IN_JSON}", (sessions,))
    conn.execute(_RECOMPUTE, (sessions,))
    _drop_empty(conn, rows[0][2], rows[-1][2])
    return len(rows)


def purge_chunk(conn: sqlite3.Connection, older_than: float, limit: int = CHUNK_ROWS) -> int:
    """Delete about ``limit`` events that started before ``older_than`` (whole past sessions first, a
    session is never split; then the oldest calls) and bring the rollups in line; return how many were
    deleted, 0 when none is left. The caller holds the write transaction."""
    return _whole_sessions(conn, older_than, limit) or _oldest_calls(conn, older_than, limit)


class PurgePacer:
    """Sizes purge chunks to about ``target_s`` each (never above ``max_rows``) and rests after each one
    as long as it took, so a purge holds the writer at most half the time and one chunk at a time."""

    def __init__(self, max_rows: int, target_s: float = CHUNK_TARGET_S) -> None:
        self.rows = max(1, min(max_rows, 256))
        self.max_rows = max(1, max_rows)
        self.target_s = target_s

    def after(self, took_s: float) -> None:
        if took_s > self.target_s:
            self.rows = max(1, self.rows // 2)
        elif took_s < self.target_s / 4:
            self.rows = min(self.max_rows, self.rows * 2)
        time.sleep(min(took_s, 1.0))  # the lock is free meanwhile: a waiting writer gets it
