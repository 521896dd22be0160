from __future__ import annotations

import math
from typing import Any

import pytest

from sidecar.core.events import REFUSED, CallEvent, ToolResult
from sidecar.core.sessions import list_sessions, percentile, session_summary
from sidecar.core.usage import Usage

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def make_event(event_id: str, started_at: float, **kw: Any) -> CallEvent:
    """A model call unless overridden: POST /v1/messages, 200, one session."""
    base: dict[str, Any] = {
        "event_id": event_id,
        "started_at": started_at,
        "app": "support-bot",
        "session_id": "sess-1",
        "session_source": "header",
        "method": "POST",
        "path": "/v1/messages",
        "operation": "chat",
        "stream": True,
        "model": "claude-sonnet-4-5",
        "model_canonical": "claude-sonnet-4-5",
        "status": 200,
        "duration_s": 1.0,
    }
    base.update(kw)
    return CallEvent(**base)


def session_events() -> list[CallEvent]:
    """Five events of one session: three model calls, a count_tokens call and a refused call."""
    return [
        make_event(
            "e1",
            T0,
            request_id="req_1",
            usage=Usage(100, 50, 1000, 200),
            cost_usd=0.0123,
            cache_savings_usd=0.0027,
            ttft_s=0.5,
            duration_s=2.0,
            stop_reason="tool_use",
            tool_use_ids=("t1", "t2"),
            tool_uses=("search", "search"),
        ),
        make_event("e2", T0 + 3, operation="count_tokens", path="/v1/messages/count_tokens", duration_s=0.1),
        make_event(
            "e3",
            T0 + 10,
            usage=Usage(10, 20, 1200, 0),
            cost_usd=0.0042,
            cache_savings_usd=0.0032,
            duration_s=3.0,
            stop_reason="tool_use",
            tool_use_ids=("t3",),
            tool_uses=("read_file",),
            tool_results=(ToolResult("t1", "search", 8.0, False), ToolResult("t2", "search", 8.0, True)),
        ),
        make_event(
            "e4", T0 + 20, status=429, outcome=REFUSED, error_type="budget_exceeded_error", duration_s=0.0
        ),
        make_event(
            "e5",
            T0 + 30,
            model="claude-mystery-9",
            model_canonical=None,
            status=529,
            error_type="overloaded_error",
            retry_count=1,
            cost_usd=None,
            duration_s=1.5,
            tool_results=(ToolResult("t3", "read_file", 12.5, False),),
        ),
    ]


def test_percentile_is_nearest_rank() -> None:
    values = [40.0, 15.0, 50.0, 35.0, 20.0]  # sorted: 15 20 35 40 50
    assert percentile(values, 30) == 20.0  # ceil(1.5) = 2nd
    assert percentile(values, 40) == 20.0  # ceil(2.0) = 2nd
    assert percentile(values, 50) == 35.0  # ceil(2.5) = 3rd
    assert percentile(values, 100) == 50.0
    assert percentile([float(i) for i in range(1, 21)], 95) == 19.0  # ceil(19.0) = 19th
    assert percentile([float(i) for i in range(1, 11)], 95) == 10.0  # ceil(9.5) = 10th
    assert percentile([7.0], 50) == 7.0
    assert percentile([], 50) is None


def test_session_summary_totals_by_hand() -> None:
    last_end = T0 + 30 + 1.5
    s = session_summary(session_events(), now=last_end + 900, idle_timeout_s=900, with_calls=False)
    assert s["session_id"] == "sess-1"
    assert s["session_source"] == "header"
    assert s["app"] == "support-bot"
    assert s["started_at"] == "2026-01-01T00:00:00.000Z"
    assert s["last_seen_at"] == "2026-01-01T00:00:31.500Z"
    assert s["started_at_ts"] == T0
    assert s["last_seen_at_ts"] == last_end
    assert s["duration_s"] == 31.5
    assert s["open"] is True
    # e1, e3, e5 are model calls; count_tokens and the refused call are not.
    assert s["model_calls"] == 3
    assert s["error_calls"] == 1
    assert s["retries"] == 1
    assert s["tool_calls"] == 3
    assert (s["input_tokens"], s["output_tokens"]) == (110, 70)
    assert (s["cache_read_input_tokens"], s["cache_creation_input_tokens"]) == (2200, 200)
    assert s["cost_usd"] == pytest.approx(0.0165, abs=1e-12)
    assert s["unpriced_calls"] == 1
    assert s["cache_hit_ratio"] == pytest.approx(2200 / 2510)
    assert s["cache_savings_usd"] == pytest.approx(0.0059, abs=1e-12)
    assert s["model_time_s"] == pytest.approx(6.5)
    assert s["tool_time_s"] == pytest.approx(28.5)
    assert s["tools"] == {
        "read_file": {"count": 1, "measured": 1, "errors": 0, "p50_s": 12.5, "p95_s": 12.5, "total_s": 12.5},
        "search": {"count": 2, "measured": 2, "errors": 1, "p50_s": 8.0, "p95_s": 8.0, "total_s": 16.0},
    }
    assert "calls" not in s
    later = session_summary(session_events(), now=last_end + 900.1, idle_timeout_s=900, with_calls=False)
    assert later["open"] is False


def test_session_summary_calls_oldest_first() -> None:
    events = session_events()
    s = session_summary(list(reversed(events)), now=T0, idle_timeout_s=900, with_calls=True)
    calls = s["calls"]
    assert [c["operation"] for c in calls] == ["chat", "count_tokens", "chat", "chat", "chat"]
    assert [c["outcome"] for c in calls] == ["ok", "ok", "ok", "refused", "ok"]
    first = calls[0]
    assert first["request_id"] == "req_1"
    assert first["model"] == "claude-sonnet-4-5"
    assert first["stream"] is True
    assert first["status"] == 200
    assert first["stop_reason"] == "tool_use"
    assert (first["input_tokens"], first["output_tokens"]) == (100, 50)
    assert (first["cache_read_input_tokens"], first["cache_creation_input_tokens"]) == (1000, 200)
    assert first["cost_usd"] == 0.0123
    assert first["ttft_s"] == 0.5
    assert first["duration_s"] == 2.0
    assert first["tool_uses"] == ["search", "search"]
    assert first["started_at"] == "2026-01-01T00:00:00.000Z"
    assert calls[2]["tool_results"][1] == {
        "tool_use_id": "t2",
        "name": "search",
        "latency_s": 8.0,
        "is_error": True,
    }
    assert calls[4]["retry_count"] == 1
    assert calls[4]["error_type"] == "overloaded_error"
    assert calls[4]["cost_usd"] is None


def test_cost_sum_is_exact() -> None:
    # 0.1 ten times: a naive float sum gives 0.9999999999999999; the correctly rounded sum is 1.0.
    events = [make_event(f"e{i}", T0 + i, cost_usd=0.1) for i in range(10)]
    s = session_summary(events, now=T0, idle_timeout_s=900, with_calls=False)
    assert s["cost_usd"] == 1.0
    assert s["cost_usd"] == math.fsum([0.1] * 10)


def test_session_summary_requires_events() -> None:
    with pytest.raises(ValueError):
        session_summary([], now=T0, idle_timeout_s=900, with_calls=False)


def test_list_sessions_orders_and_limits() -> None:
    events = [
        make_event("a1", T0, session_id="cheap-recent", cost_usd=0.01),
        make_event("a2", T0 + 500, session_id="cheap-recent", cost_usd=0.02),
        make_event("b1", T0 + 100, session_id="pricey-old", cost_usd=0.50),
        make_event("c1", T0 + 200, session_id="middle", cost_usd=0.10),
        make_event("n1", T0 + 300, session_id="", cost_usd=9.99),  # no session: skipped
    ]
    by_cost = list_sessions(events, now=T0 + 600, idle_timeout_s=900, limit=None, order="cost")
    assert [s["session_id"] for s in by_cost] == ["pricey-old", "middle", "cheap-recent"]
    assert by_cost[2]["cost_usd"] == pytest.approx(0.03)
    assert all("calls" not in s for s in by_cost)
    recent = list_sessions(events, now=T0 + 600, idle_timeout_s=900, limit=2, order="recent")
    assert [s["session_id"] for s in recent] == ["cheap-recent", "middle"]
    with pytest.raises(ValueError):
        list_sessions(events, now=T0, idle_timeout_s=900, limit=None, order="tokens")
