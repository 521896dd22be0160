"""The keyset pages every store cuts the same way: the extra row that says a next page exists, the
cursor made from the page's last row, a session's page of calls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from sidecar.core.events import CallEvent
from sidecar.store.paging import calls_start, session_with_calls, sessions_page
from sidecar.store.queries import (
    InvalidQuery,
    SessionQuery,
    decode_calls_cursor,
    decode_cursor,
    encode_calls_cursor,
)
from sidecar.store.session_view import SESSION_AMOUNTS, SESSION_COUNTS

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _row(sid: str, cost: float, last_seen: float) -> dict[str, Any]:
    row: dict[str, Any] = {name: 0 for name in SESSION_COUNTS}
    row.update({name: 0.0 for name in SESSION_AMOUNTS})
    row.update(
        session_id=sid,
        app="app-1",
        session_source="header",
        first_seen=T0,
        last_seen=last_seen,
        duration_s=last_seen - T0,
        models=["claude-a"],
        agent_ids=[],
        providers=["anthropic"],
        cost_usd=cost,
    )
    return row


def _event(i: int) -> CallEvent:
    return CallEvent(f"ev-{i}", T0 + i, "app-1", "s-1", "header", "POST", "/v1/messages", "chat", False)


class _Tools:
    """The tool statistics of the sessions asked for; records what was asked."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    def __call__(self, session_ids: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
        self.asked.append(list(session_ids))
        return {sid: {"grep": {"count": 1}} for sid in session_ids if sid == "s-b"}


def test_an_extra_row_makes_a_cursor_from_the_last_row_of_the_page() -> None:
    rows = [_row("s-a", 3.0, T0 + 30), _row("s-b", 2.0, T0 + 20), _row("s-c", 1.0, T0 + 10)]
    tools = _Tools()
    page = sessions_page(rows, SessionQuery(now=T0 + 30, idle_timeout_s=60, order="cost", limit=2), tools)
    assert [s["session_id"] for s in page.sessions] == ["s-a", "s-b"]
    assert tools.asked == [["s-a", "s-b"]]  # the extra row's tools are not read
    assert [s["tools"] for s in page.sessions] == [{}, {"grep": {"count": 1}}]
    assert page.next_cursor is not None
    assert decode_cursor(page.next_cursor, "cost") == (2.0, "s-b")


def test_no_extra_row_is_the_last_page() -> None:
    rows = [_row("s-a", 3.0, T0 + 30), _row("s-b", 2.0, T0 + 20)]
    page = sessions_page(rows, SessionQuery(now=T0 + 30, idle_timeout_s=60, limit=2), _Tools())
    assert len(page.sessions) == 2 and page.next_cursor is None
    empty = sessions_page([], SessionQuery(now=T0, idle_timeout_s=60), _Tools())
    assert empty.sessions == [] and empty.next_cursor is None


def test_the_cursor_holds_the_key_of_the_order() -> None:
    rows = [_row("s-a", 3.0, T0 + 30), _row("s-b", 2.0, T0 + 20)]
    page = sessions_page(rows, SessionQuery(now=T0 + 30, idle_timeout_s=60, limit=1), _Tools())
    assert page.next_cursor is not None
    assert decode_cursor(page.next_cursor, "recent") == (T0 + 30, "s-a")
    with pytest.raises(InvalidQuery, match="order=recent"):
        decode_cursor(page.next_cursor, "cost")


def test_a_session_with_a_page_of_calls() -> None:
    events = [_event(i) for i in range(3)]
    out = session_with_calls(_row("s-1", 1.0, T0 + 2), {}, events, 2, now=T0 + 2, idle_timeout_s=60)
    assert out["session_id"] == "s-1" and out["open"] is True
    assert len(out["calls"]) == 2
    assert out["next_calls_after"] is not None
    assert decode_calls_cursor(out["next_calls_after"]) == (T0 + 1, "ev-1")
    last = session_with_calls(_row("s-1", 1.0, T0 + 2), {}, events, 3, now=T0 + 2, idle_timeout_s=60)
    assert len(last["calls"]) == 3 and last["next_calls_after"] is None


def test_calls_start() -> None:
    assert calls_start(10, None) is None
    assert calls_start(10, encode_calls_cursor(T0, "ev-1")) == (T0, "ev-1")
    with pytest.raises(InvalidQuery, match="calls_limit"):
        calls_start(0, None)
    with pytest.raises(InvalidQuery, match="calls_after"):
        calls_start(10, "!!")
