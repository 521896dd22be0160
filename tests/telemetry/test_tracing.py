"""Traces for a tool-using session, checked with OpenTelemetry's in-memory exporter."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import anthropic
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from sidecar.core.events import CallEvent
from sidecar.sansio.traceparent import new_ref, parse
from sidecar.server.inprocess import RunningSidecar
from sidecar.settings import Settings
from sidecar.telemetry.tracing import TracingSink
from sidecar.testing.fake_upstream import FakeUpstream
from tests.conftest import API_KEY
from tests.waiting import SLACK_S, wait_until

USAGE = {
    "input_tokens": 50,
    "output_tokens": 20,
    "cache_read_input_tokens": 300,
    "cache_creation": {"ephemeral_5m_input_tokens": 30, "ephemeral_1h_input_tokens": 0},
}
TOOLS: list[Any] = [
    {"name": "search", "description": "s", "input_schema": {"type": "object", "properties": {}}}
]
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TOOL_S = 0.1


def test_traceparent_parsing() -> None:
    assert parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") == (
        CLIENT_TRACE,
        CLIENT_SPAN,
        "01",
    )
    assert parse(b"00-00000000000000000000000000000000-00f067aa0ba902b7-01") is None
    assert parse(b"garbage") is None and parse(None) is None
    ref = new_ref(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    assert ref.trace_id == CLIENT_TRACE and ref.parent_span_id == CLIENT_SPAN and ref.span_id != CLIENT_SPAN
    assert new_ref(None).parent_span_id is None


def _wait_spans(exporter: InMemorySpanExporter, n: int) -> list[Any]:
    wait_until(lambda: len(exporter.get_finished_spans()) >= n)
    return list(exporter.get_finished_spans())


def test_spans_for_a_tool_using_session(fake: FakeUpstream, tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    settings = Settings(upstream_url=fake.url, store=f"sqlite:///{tmp_path}/t.db", port=0)
    with RunningSidecar(settings, span_exporter=exporter) as sidecar:
        client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
        headers = {
            "x-session-id": "trace-1",
            "x-fake-usage": json.dumps(USAGE),
            "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01",
        }
        messages: list[Any] = [{"role": "user", "content": "find it"}]
        first = client.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=50,
            messages=messages,
            tools=TOOLS,
            tool_choice={"type": "any"},
            extra_headers=headers,
        )
        tool = next(b for b in first.content if b.type == "tool_use")
        time.sleep(TOOL_S)  # the tool runs
        messages += [
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "x"}]},
        ]
        client.messages.create(
            model="claude-sonnet-4-5", max_tokens=50, messages=messages, tools=TOOLS, extra_headers=headers
        )
        events = sidecar.wait_events(2, session_id="trace-1")
        spans = _wait_spans(exporter, 3)
    chats = [s for s in spans if s.name == "chat claude-sonnet-4-5"]
    tools = [s for s in spans if s.name == "execute_tool search"]
    assert len(chats) == 2 and len(tools) == 1
    for span, event in zip(chats, events, strict=True):
        assert span.kind == SpanKind.CLIENT
        assert format(span.context.trace_id, "032x") == CLIENT_TRACE  # joined to the client's trace
        assert span.parent is not None and format(span.parent.span_id, "016x") == CLIENT_SPAN
        assert format(span.context.span_id, "016x") == event.span_id
        attrs = span.attributes
        assert attrs["gen_ai.conversation.id"] == "trace-1"
        assert attrs["gen_ai.provider.name"] == "anthropic"
        assert attrs["gen_ai.usage.input_tokens"] == 50 + 300 + 30  # includes cache reads and writes
        assert attrs["gen_ai.usage.output_tokens"] == 20
        assert abs(attrs["sidecar.cost_usd"] - event.cost_usd) < 1e-12
    # The upstream saw the sidecar's span as the parent of its call.
    sent = [r.header("traceparent") for r in fake.requests]
    assert sent == [f"00-{CLIENT_TRACE}-{e.span_id}-01" for e in events]
    (tool_span,) = tools
    assert tool_span.kind == SpanKind.INTERNAL
    assert tool_span.attributes["gen_ai.tool.name"] == "search"
    duration = (tool_span.end_time - tool_span.start_time) / 1e9
    assert abs(duration - events[1].tool_results[0].latency_s) < 1e-6
    assert TOOL_S <= duration < TOOL_S + SLACK_S  # a loaded machine adds to the sleep, never takes away
    assert tool_span.end_time == chats[1].start_time
    assert tool_span.status.status_code != StatusCode.ERROR


def test_no_exporter_no_traceparent_rewrite(fake: FakeUpstream, sidecar: RunningSidecar) -> None:
    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
    given = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
    client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=5,
        messages=[{"role": "user", "content": "x"}],
        extra_headers={"traceparent": given},
    )
    assert fake.requests[-1].header("traceparent") == given
    (event,) = sidecar.wait_events(1)
    assert event.trace_id is None


def test_a_subagents_span_names_its_agent_and_parent() -> None:
    exporter = InMemorySpanExporter()
    sink = TracingSink(exporter)
    base = CallEvent(
        event_id="e1", started_at=1_767_225_600.0, app="a", session_id="s", session_source="header",
        method="POST", path="/v1/messages", operation="chat", stream=False, model="claude-haiku-4-5",
        status=200, trace_id="0af7651916cd43dd8448eb211c80319c", span_id="00000000000000a1",
    )  # fmt: skip
    sub = replace(base, event_id="e2", span_id="00000000000000a2", agent_id="sub-7", parent_agent_id="main-1")
    sink.write([base, sub])
    sink.close()
    attrs = {format(s.context.span_id, "016x"): s.attributes for s in exporter.get_finished_spans()}
    assert "gen_ai.agent.id" not in attrs["00000000000000a1"]  # no headers, no attribute
    assert "sidecar.parent_agent_id" not in attrs["00000000000000a1"]
    assert attrs["00000000000000a2"]["gen_ai.agent.id"] == "sub-7"
    assert attrs["00000000000000a2"]["sidecar.parent_agent_id"] == "main-1"
