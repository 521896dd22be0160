"""Retention purge of the SQLite store in bounded chunks that keep the rollups exact.

Each chunk is one short transaction: it deletes the oldest events (the ``hourly_rollup`` and
``latency_hist*`` delete triggers subtract them), rebuilds the rollup rows of the sessions those events
belonged to from what is left of them, and drops hourly rows left empty. The writer waits for at most one
chunk, never for a whole day of history (SPEC R-RS-6).
"""

from __future__ import annotations

import sqlite3

import orjson

from sidecar.store.sqlite_rollup import recompute_sessions_sql

CHUNK_ROWS = 2000
_IN_JSON = "(SELECT value FROM json_each(?))"
_RECOMPUTE = recompute_sessions_sql(f"e.session_id IN {_IN_JSON}")


def hour_of(ts: float) -> int:
    """The UTC hour (unix seconds) the rollups file an event under; the same arithmetic as the SQL."""
    return int(ts) // 3600 * 3600


def purge_chunk(conn: sqlite3.Connection, older_than: float, limit: int = CHUNK_ROWS) -> int:
    """Delete up to ``limit`` of the oldest events that started before ``older_than`` and bring the rollups
    in line; return how many were deleted. The caller holds the write transaction."""
    rows = conn.execute(
        "SELECT rowid, session_id, started_at FROM events WHERE started_at < ? ORDER BY started_at LIMIT ?",
        (older_than, limit),
    ).fetchall()
    if not rows:
        return 0
    rowids = orjson.dumps([r[0] for r in rows])
    sessions = orjson.dumps(sorted({r[1] for r in rows if r[1]}))
    hours = orjson.dumps(sorted({hour_of(r[2]) for r in rows}))
    conn.execute(f"DELETE FROM events WHERE rowid IN {_IN_JSON}", (rowids,))
    conn.execute(f"DELETE FROM sessions_rollup WHERE session_id IN {_IN_JSON}", (sessions,))
    conn.execute(_RECOMPUTE, (sessions,))
    conn.execute(f"DELETE FROM hourly_rollup WHERE hour IN {_IN_JSON} AND requests <= 0", (hours,))
    conn.execute(f"DELETE FROM latency_hist WHERE hour IN {_IN_JSON} AND n <= 0", (hours,))
    days = orjson.dumps(sorted({hour_of(r[2]) // 86400 * 86400 for r in rows}))
    conn.execute(f"DELETE FROM latency_hist_daily WHERE day IN {_IN_JSON} AND n <= 0", (days,))
    return len(rows)
