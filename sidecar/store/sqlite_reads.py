"""The read side (:class:`sidecar.store.queries.ReadStore`) on the embedded SQLite store.

Reads one read-only connection (under WAL a reader never waits for the writer); every query is served by
an index of the rollups (:mod:`sidecar.store.sqlite_rollup`) or of ``events``, so none reads the history.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from sidecar.core.cache_report import MissGroup
from sidecar.core.events import CallEvent
from sidecar.store import sqlite_report
from sidecar.store.paging import calls_start, session_with_calls, sessions_page
from sidecar.store.queries import (
    DEFAULT_CALLS_LIMIT,
    ORDER_FIELDS,
    SessionCounters,
    SessionPage,
    SessionQuery,
    decode_cursor,
    prefix_bound,
)
from sidecar.store.session_view import (
    SESSION_AMOUNTS,
    SESSION_COUNTS,
    tools_by_session,
)
from sidecar.store.sqlite_hist import MODEL_CALL
from sidecar.store.sqlite_rollup import SORT_INDEX
from sidecar.store.sqlite_schema import SELECT_COLUMNS, row_to_event
from sidecar.store.sqlite_summary import summary as _summary
from sidecar.store.sqlite_summary import tool_summary as _tool_summary

_ROLLUP_COLUMNS = (
    "session_id", "app", "session_source", "first_seen", "last_seen", "duration_s",
    *SESSION_COUNTS, *SESSION_AMOUNTS, "models", "agent_ids", "providers",
)  # fmt: skip
# A session's cache misses by reason (SPEC R-CD-3), through the (session_id, started_at) index.
_MISSES_OF_SESSION = (
    "SELECT cache_miss_reason, count(*) FROM events WHERE session_id = ? AND cache_miss_reason IS NOT NULL "
    "AND operation = 'chat' AND outcome != 'refused' GROUP BY cache_miss_reason ORDER BY cache_miss_reason"
)
_SELECT_ROLLUP = f"SELECT {', '.join(_ROLLUP_COLUMNS)} FROM sessions_rollup AS r"
_IN_JSON = "(SELECT value FROM json_each(?))"
# The models set's JSON text with its brackets turned into commas: ,"a","b", (see sqlite_rollup).
_ITEMS = "(',' || substr(r.models, 2, length(r.models) - 2) || ',')"
_TOOLS_SQL = (
    f"SELECT session_id, {MODEL_CALL.format(e='')}, tool_uses, tool_results FROM events "
    f"WHERE session_id IN {_IN_JSON} AND (tool_uses != '[]' OR tool_results != '[]')"
)


def _rollup(row: Sequence[Any]) -> dict[str, Any]:
    r = dict(zip(_ROLLUP_COLUMNS, row, strict=True))
    r["models"] = orjson.loads(r["models"])
    r["agent_ids"] = orjson.loads(r["agent_ids"])
    r["providers"] = orjson.loads(r["providers"])
    return r


def _where(query: SessionQuery) -> tuple[list[str], list[Any]]:
    f = query.filters
    clauses: list[str] = []
    params: list[Any] = []
    for clause, value in (
        ("r.last_seen >= ?", f.since),
        ("r.first_seen < ?", f.until),
        ("r.app = ?", f.app),
        (f"instr({_ITEMS}, ',' || json_quote(?) || ',') > 0", f.model),
        ("r.cost_usd >= ?", f.min_cost_usd),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    if f.q:
        clauses.append("r.session_id >= ? AND r.session_id < ?")
        params += [f.q, prefix_bound(f.q)]
    if f.state is not None:
        # The same float expression as ``open`` in the answer, so filter and field always agree.
        clauses.append(f"(? - r.last_seen <= ?) = {1 if f.state == 'open' else 0}")
        params += [query.now, query.idle_timeout_s]
    return clauses, params


class SQLiteReads:
    """Read-side queries on the SQLite file at ``path`` (created and migrated by ``SQLiteStore.open``).

    Thread-safe: each thread queries through its own read-only connection (kept for its next query, so
    its page cache stays warm), so a long summary never holds up a sessions page.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._connection().execute(sql, params).fetchall()

    def _tools(self, session_ids: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
        rows = self._fetch(_TOOLS_SQL, (orjson.dumps(list(session_ids)),)) if session_ids else []
        return tools_by_session(
            (sid, model_call, orjson.loads(uses), orjson.loads(results))
            for sid, model_call, uses, results in rows
        )

    def list_sessions(self, query: SessionQuery) -> SessionPage:
        column = ORDER_FIELDS[query.order]
        clauses, params = _where(query)
        if query.cursor is not None:
            key, sid = decode_cursor(query.cursor, query.order)
            clauses.append(f"r.{column} <= ? AND (r.{column} < ? OR r.session_id > ?)")
            params += [key, key, sid]
        # The page's ids come from the covering index alone; only their rows are read.
        ids = f"SELECT r.session_id FROM sessions_rollup AS r INDEXED BY {SORT_INDEX}"
        if clauses:
            ids += " WHERE " + " AND ".join(clauses)
        order = f" ORDER BY r.{column} DESC, r.session_id"
        sql = f"{_SELECT_ROLLUP} WHERE r.session_id IN ({ids}{order} LIMIT ?){order}"
        rows = [_rollup(row) for row in self._fetch(sql, [*params, query.limit + 1])]
        return sessions_page(rows, query, self._tools)

    def session_detail(
        self,
        session_id: str,
        *,
        now: float,
        idle_timeout_s: float,
        calls_limit: int = DEFAULT_CALLS_LIMIT,
        calls_after: str | None = None,
    ) -> dict[str, Any] | None:
        after = calls_start(calls_limit, calls_after)
        found = self._fetch(_SELECT_ROLLUP + " WHERE r.session_id = ?", (session_id,))
        if not found:
            return None
        sql = f"SELECT {SELECT_COLUMNS} FROM events WHERE session_id = ?"
        params: list[Any] = [session_id]
        if after is not None:
            sql += " AND started_at >= ? AND (started_at > ? OR event_id > ?)"
            params += [after[0], after[0], after[1]]
        sql += " ORDER BY started_at, event_id LIMIT ?"
        events = [row_to_event(row) for row in self._fetch(sql, [*params, calls_limit + 1])]
        tools = self._tools([session_id]).get(session_id, {})
        out = session_with_calls(
            _rollup(found[0]), tools, events, calls_limit, now=now, idle_timeout_s=idle_timeout_s
        )
        misses = self._fetch(_MISSES_OF_SESSION, (session_id,))
        out["cache_misses_by_reason"] = {str(reason): int(n) for reason, n in misses}
        return out

    def summary(self, since: float, until: float, group_by: str) -> dict[str, Any]:
        return _summary(self._connection(), since, until, group_by)

    def tool_summary(self, since: float, until: float) -> dict[str, dict[str, Any]]:
        return _tool_summary(self._connection(), since, until)

    def cache_miss_groups(self, since: float, until: float) -> list[MissGroup]:
        return sqlite_report.cache_miss_groups(self._connection(), since, until)

    def response_cache_hits(self, since: float, until: float) -> tuple[int, float]:
        return sqlite_report.response_cache_hits(self._connection(), since, until)

    def session_counters(self, active_since: float) -> list[SessionCounters]:
        rows = self._fetch(
            "SELECT session_id, app, first_seen, last_seen, cost_usd, unpriced_calls, tokens, model_calls, "
            "tool_calls, model_time_s, tool_time_s FROM sessions_rollup WHERE last_seen >= ? "
            "ORDER BY last_seen",
            (active_since,),
        )
        return [SessionCounters(*row) for row in rows]

    def unpriced_calls(self, since: float, until: float | None = None) -> list[CallEvent]:
        sql = (
            f"SELECT {SELECT_COLUMNS} FROM events WHERE cost_usd IS NULL AND operation = 'chat' "
            "AND outcome != 'refused' AND started_at >= ?"
        )
        params: list[Any] = [since]
        if until is not None:
            sql += " AND started_at < ?"
            params.append(until)
        return [row_to_event(row) for row in self._fetch(sql + " ORDER BY started_at, event_id", params)]

    def close(self) -> None:
        """Close every thread's connection (call it when no query runs). A later query reopens one."""
        with self._lock:
            conns, self._conns = self._conns, []
            self._local = threading.local()
        for conn in conns:
            conn.close()
