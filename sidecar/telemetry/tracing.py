"""Traces (SPEC R-TM-3): one CLIENT span per upstream call and synthesized ``execute_tool`` spans.

Spans are built from finished events on the recorder's worker thread — never on the request path —
with the ids the proxy chose before forwarding (so the upstream's ``traceparent`` names the sidecar's
span). Attributes follow the OpenTelemetry GenAI semantic conventions; for Anthropic,
``gen_ai.usage.input_tokens`` includes cache reads and writes.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from sidecar.core.events import CallEvent
from sidecar.telemetry.labels import gen_ai_provider

NS = 1_000_000_000


class _PresetIds(IdGenerator):
    """Hands out the span id the proxy already put in ``traceparent``; random ids otherwise."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self._next = threading.local()

    def preset(self, span_id: int | None, trace_id: int | None = None) -> None:
        self._next.value = span_id
        self._next.trace = trace_id

    def generate_span_id(self) -> int:
        value = getattr(self._next, "value", None)
        if value is not None:
            self._next.value = None
            return int(value)
        return self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        value = getattr(self._next, "trace", None)
        if value is not None:
            self._next.trace = None
            return int(value)
        return self._random.generate_trace_id()


def _attributes(e: CallEvent) -> dict[str, str | int | float | bool | Sequence[str]]:
    u = e.usage
    attrs: dict[str, str | int | float | bool | Sequence[str]] = {
        "gen_ai.operation.name": "chat" if e.operation == "chat" else e.operation,
        "gen_ai.provider.name": gen_ai_provider(e),
        "gen_ai.request.model": e.model or "unknown",
        "gen_ai.usage.input_tokens": u.total_input,
        "gen_ai.usage.output_tokens": u.output_tokens,
        "gen_ai.usage.cache_read.input_tokens": u.cache_read_input_tokens,
        "gen_ai.usage.cache_creation.input_tokens": u.cache_creation_input_tokens,
        "http.response.status_code": e.status,
        "sidecar.app": e.app,
        "sidecar.outcome": e.outcome,
        "sidecar.stream": e.stream,
        "sidecar.overhead_s": e.overhead_s,
    }
    if e.session_id:
        attrs["gen_ai.conversation.id"] = e.session_id
    if e.agent_id:  # Claude Code's subagents (R-RS-4)
        attrs["gen_ai.agent.id"] = e.agent_id
    if e.parent_agent_id:
        attrs["sidecar.parent_agent_id"] = e.parent_agent_id
    if e.request_id:
        attrs["gen_ai.response.id"] = e.request_id
    if e.stop_reason:
        attrs["gen_ai.response.finish_reasons"] = [e.stop_reason]
    if e.cost_usd is not None:
        attrs["sidecar.cost_usd"] = e.cost_usd
    if e.ttft_s is not None:
        attrs["gen_ai.response.time_to_first_chunk"] = e.ttft_s
    if e.error_type:
        attrs["error.type"] = e.error_type
    return attrs


class TracingSink:
    """A recorder sink that turns events into spans and hands them to a batch span processor."""

    name = "tracing"

    def __init__(self, exporter: SpanExporter, *, service_name: str = "claude-sidecar") -> None:
        self._ids = _PresetIds()
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": service_name}), id_generator=self._ids
        )
        self.provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
        self._tracer = self.provider.get_tracer("sidecar")

    def write(self, events: Sequence[CallEvent]) -> None:
        for event in events:
            if event.trace_id and event.span_id:
                self._emit(event)

    def _parent(self, e: CallEvent) -> Context:
        if not e.parent_span_id or not e.trace_id:
            return Context()  # a root span: the preset trace id applies
        ctx = SpanContext(
            int(e.trace_id, 16),
            int(e.parent_span_id, 16),
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
        return trace.set_span_in_context(NonRecordingSpan(ctx))

    def _emit(self, e: CallEvent) -> None:
        assert e.trace_id and e.span_id
        parent = self._parent(e)
        name = f"chat {e.model}" if e.operation == "chat" else f"{e.operation} {e.path}"
        start = int(e.started_at * NS)
        self._ids.preset(int(e.span_id, 16), int(e.trace_id, 16))
        span = self._tracer.start_span(
            name, context=parent, kind=SpanKind.CLIENT, start_time=start, attributes=_attributes(e)
        )
        if e.status >= 400 or e.outcome not in ("ok", "cache_hit"):
            span.set_status(Status(StatusCode.ERROR, e.error_type or e.outcome))
        span.end(end_time=start + int(e.duration_s * NS))
        for result in e.tool_results:
            tool = self._tracer.start_span(
                f"execute_tool {result.name}",
                context=parent if e.parent_span_id else trace.set_span_in_context(span),
                kind=SpanKind.INTERNAL,
                start_time=start - int(result.latency_s * NS),
                attributes={
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": result.name,
                    "gen_ai.tool.call.id": result.tool_use_id,
                    "gen_ai.conversation.id": e.session_id,
                    "gen_ai.provider.name": gen_ai_provider(e),
                },
            )
            if result.is_error:
                tool.set_status(Status(StatusCode.ERROR, "tool_error"))
            tool.end(end_time=start)

    def close(self) -> None:
        self.provider.shutdown()
