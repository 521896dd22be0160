"""The read side (:class:`sidecar.store.queries.ReadStore`) on ClickHouse: the same answers as SQLite.

Sessions come from ``sessions_rollup`` (grouped by session id: the table is keyed by app and session),
a session's calls and tools from ``events FINAL``, and summaries straight from ``events FINAL`` (a
column store reads a day of calls quickly), bucketed into the same latency histograms as SQLite.
Arrays are sent as JSON text in a ``String`` parameter, which every client binds the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from sidecar.core.cache_report import MissGroup
from sidecar.core.events import CallEvent
from sidecar.store import clickhouse_report
from sidecar.store.clickhouse import ClickHouseClient
from sidecar.store.clickhouse_rows import EVENT_COLUMNS, row_to_event
from sidecar.store.clickhouse_schema import SchemaOptions
from sidecar.store.clickhouse_summary import summary as _summary
from sidecar.store.clickhouse_summary import tool_summary as _tool_summary
from sidecar.store.paging import calls_start, session_with_calls, sessions_page
from sidecar.store.queries import (
    DEFAULT_CALLS_LIMIT,
    ORDER_FIELDS,
    SessionCounters,
    SessionPage,
    SessionQuery,
    decode_cursor,
)
from sidecar.store.session_view import (
    SESSION_AMOUNTS,
    SESSION_COUNTS,
    tools_by_session,
)

# Output alias of each rollup field (aliases must not reuse column names: ClickHouse aliases are global).
_SUMS = SESSION_COUNTS + SESSION_AMOUNTS
_ROLLUP = (
    "SELECT session_id, if(argMinMerge(first_app) = '', argMin(app, started_at_unix), "
    "argMinMerge(first_app)) AS r_app, argMinMerge(session_source) AS r_source, "
    "min(started_at_unix) AS r_first_seen, max(last_seen_unix) AS r_last_seen, "
    "r_last_seen - r_first_seen AS r_duration_s, "
    + ", ".join(f"sum({name}) AS r_{name}" for name in _SUMS)
    + ", groupUniqArrayArray(models) AS r_models, groupUniqArrayArray(agent_ids) AS r_agent_ids"
    + ", groupUniqArrayArray(providers) AS r_providers"
    + " FROM {table}{where} GROUP BY session_id"
)
_NAMES = ("session_id", "app", "session_source", "first_seen", "last_seen", "duration_s", *_SUMS)
_IDS = "JSONExtract({ids:String}, 'Array(String)')"


def _rollup(row: Sequence[Any]) -> dict[str, Any]:
    r = dict(zip((*_NAMES, "models", "agent_ids", "providers"), row, strict=True))
    for key in ("models", "agent_ids", "providers"):
        r[key] = list(r[key])
    return r


NOT_CALLS = ("refused", "cache_hit")  # as sidecar.core.sessions.is_model_call


class ClickHouseReads:
    """Read-side queries on the ClickHouse database of ``schema`` through ``client`` (not closed here)."""

    def __init__(self, client: ClickHouseClient, schema: SchemaOptions) -> None:
        self._client = client
        self._o = schema
        self._events = f"{schema.table('events')} FINAL"

    def _rollup_sql(self, where: str = "") -> str:
        return _ROLLUP.format(table=self._o.table("sessions_rollup"), where=where)

    def _tools(self, session_ids: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
        if not session_ids:
            return {}
        rows = self._client.query(
            "SELECT session_id, operation, outcome, tool_uses, tool_result_ids, tool_result_names, "
            f"tool_result_latency_s, tool_result_is_error FROM {self._events} WHERE session_id IN {_IDS} "
            "AND (notEmpty(tool_uses) OR notEmpty(tool_result_ids))",
            {"ids": orjson.dumps(list(session_ids)).decode()},
        )
        return tools_by_session(
            (sid, op == "chat" and outcome not in NOT_CALLS, uses, zip(ids, names, lat, err, strict=True))
            for sid, op, outcome, uses, ids, names, lat, err in rows
        )

    def list_sessions(self, query: SessionQuery) -> SessionPage:
        f = query.filters
        params: dict[str, Any] = {"limit": query.limit + 1, "now": query.now, "idle": query.idle_timeout_s}
        having: list[str] = []
        for clause, key, value in (
            ("r_last_seen >= {since:Float64}", "since", f.since),
            ("r_first_seen < {until:Float64}", "until", f.until),
            ("r_app = {app:String}", "app", f.app),
            ("has(r_models, {model:String})", "model", f.model),
            ("r_cost_usd >= {min_cost:Float64}", "min_cost", f.min_cost_usd),
        ):
            if value is not None:
                having.append(clause)
                params[key] = value
        if f.state is not None:
            having.append(f"({{now:Float64}} - r_last_seen <= {{idle:Float64}}) = {int(f.state == 'open')}")
        key = f"r_{ORDER_FIELDS[query.order]}"
        if query.cursor is not None:
            params["key"], params["sid"] = decode_cursor(query.cursor, query.order)
            having.append(
                f"({key} < {{key:Float64}} OR ({key} = {{key:Float64}} AND session_id > {{sid:String}}))"
            )
        where = ""
        if f.q:
            where, params["q"] = " WHERE startsWith(session_id, {q:String})", f.q
        sql = self._rollup_sql(where)
        if having:
            sql += " HAVING " + " AND ".join(having)
        sql += f" ORDER BY {key} DESC, session_id LIMIT {{limit:UInt64}}"
        rows = [_rollup(row) for row in self._client.query(sql, params)]
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
        found = self._client.query(self._rollup_sql(" WHERE session_id = {sid:String}"), {"sid": session_id})
        if not found:
            return None
        params: dict[str, Any] = {"sid": session_id, "limit": calls_limit + 1}
        sql = f"SELECT {', '.join(EVENT_COLUMNS)} FROM {self._events} WHERE session_id = {{sid:String}}"
        if after is not None:
            sql += " AND (started_at_unix, event_id) > ({at:Float64}, {id:String})"
            params["at"], params["id"] = after
        sql += " ORDER BY started_at_unix, event_id LIMIT {limit:UInt64}"
        events = [row_to_event(row) for row in self._client.query(sql, params)]
        tools = self._tools([session_id]).get(session_id, {})
        out = session_with_calls(
            _rollup(found[0]), tools, events, calls_limit, now=now, idle_timeout_s=idle_timeout_s
        )
        misses = self._client.query(
            f"SELECT assumeNotNull(cache_miss_reason) AS r, count() FROM {self._events} "
            "WHERE session_id = {sid:String} AND cache_miss_reason IS NOT NULL "
            "AND operation = 'chat' AND outcome != 'refused' GROUP BY r ORDER BY r",
            {"sid": session_id},
        )
        out["cache_misses_by_reason"] = {str(reason): int(n) for reason, n in misses}
        return out

    def summary(self, since: float, until: float, group_by: str) -> dict[str, Any]:
        return _summary(self._client, self._o, (since, until), group_by)

    def tool_summary(self, since: float, until: float) -> dict[str, dict[str, Any]]:
        return _tool_summary(self._client, self._o, (since, until))

    def cache_miss_groups(self, since: float, until: float) -> list[MissGroup]:
        return clickhouse_report.cache_miss_groups(self._client, self._o, (since, until))

    def response_cache_hits(self, since: float, until: float) -> tuple[int, float]:
        return clickhouse_report.response_cache_hits(self._client, self._o, (since, until))

    def session_counters(self, active_since: float) -> list[SessionCounters]:
        sql = (
            f"SELECT session_id, r_app, r_first_seen, r_last_seen, r_cost_usd, r_unpriced_calls, r_tokens, "
            f"r_model_calls, r_tool_calls, r_model_time_s, r_tool_time_s FROM ({self._rollup_sql()}) "
            "WHERE r_last_seen >= {since:Float64} ORDER BY r_last_seen, session_id"
        )
        return [SessionCounters(*row) for row in self._client.query(sql, {"since": active_since})]

    def unpriced_calls(self, since: float, until: float | None = None) -> list[CallEvent]:
        sql = (
            f"SELECT {', '.join(EVENT_COLUMNS)} FROM {self._events} WHERE cost_usd IS NULL "
            "AND operation = 'chat' AND outcome != 'refused' AND started_at_unix >= {since:Float64}"
        )
        params: dict[str, Any] = {"since": since}
        if until is not None:
            sql += " AND started_at_unix < {until:Float64}"
            params["until"] = until
        rows = self._client.query(sql + " ORDER BY started_at_unix, event_id", params)
        return [row_to_event(row) for row in rows]

    def close(self) -> None:
        """Nothing to release: the client belongs to the caller."""
