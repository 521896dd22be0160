"""Keyset pages of the read side, cut the same way by every store (SPEC §13, §14).

A store asks its query for one row more than the page holds: that row's presence is what says a next
page exists, and the page's last row makes the cursor (:mod:`sidecar.store.queries` encodes it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sidecar.core.events import CallEvent
from sidecar.store.queries import (
    ORDER_FIELDS,
    SessionPage,
    SessionQuery,
    check_calls_limit,
    decode_calls_cursor,
    encode_calls_cursor,
    encode_cursor,
)
from sidecar.store.session_view import calls_json, session_json

ToolsOf = Callable[[Sequence[str]], dict[str, dict[str, dict[str, Any]]]]


def sessions_page(rows: Sequence[Mapping[str, Any]], query: SessionQuery, tools_of: ToolsOf) -> SessionPage:
    """The page of rollup ``rows`` (in the query's order, ``query.limit + 1`` asked for) as §13 session
    objects with their tool statistics (``tools_of`` the page's session ids), and the next cursor."""
    page, more = rows[: query.limit], len(rows) > query.limit
    tools = tools_of([r["session_id"] for r in page])
    now, idle = query.now, query.idle_timeout_s
    sessions = [session_json(r, tools.get(r["session_id"], {}), now=now, idle_timeout_s=idle) for r in page]
    field = ORDER_FIELDS[query.order]
    cursor = encode_cursor(query.order, page[-1][field], page[-1]["session_id"]) if more else None
    return SessionPage(sessions, cursor)


def calls_start(calls_limit: int, calls_after: str | None) -> tuple[float, str] | None:
    """Where a session's page of calls starts: after ``(started_at, event_id)``, or at its first call.
    ``InvalidQuery`` for a bad ``calls_limit`` or a ``calls_after`` that is not a cursor."""
    check_calls_limit(calls_limit)
    return decode_calls_cursor(calls_after) if calls_after is not None else None


def session_with_calls(
    rollup: Mapping[str, Any],
    tools: dict[str, dict[str, Any]],
    events: Sequence[CallEvent],
    calls_limit: int,
    *,
    now: float,
    idle_timeout_s: float,
) -> dict[str, Any]:
    """The §13 session object of ``rollup`` with the first ``calls_limit`` of ``events`` (oldest first,
    ``calls_limit + 1`` asked for) as ``calls``, and ``next_calls_after`` (``None`` on the last page)."""
    page = events[:calls_limit]
    out = session_json(rollup, tools, now=now, idle_timeout_s=idle_timeout_s)
    out["calls"] = calls_json(page, now=now, idle_timeout_s=idle_timeout_s)
    last = page[-1] if len(events) > calls_limit else None
    out["next_calls_after"] = encode_calls_cursor(last.started_at, last.event_id) if last else None
    return out
