"""The CallEvent <-> ClickHouse ``events`` row mapping, in the column order of the schema's migrations
(:mod:`sidecar.store.clickhouse_schema`). A round trip gives back an equal event."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sidecar.core.events import CallEvent, ToolResult
from sidecar.core.usage import Usage

# Insert/select column order; must match ``event_to_row`` / ``row_to_event``.
EVENT_COLUMNS: tuple[str, ...] = (
    "event_id", "started_at_unix", "app", "session_id", "session_source", "method", "path", "operation",
    "stream", "model", "model_canonical", "request_id", "status", "outcome", "error_type", "stop_reason",
    "input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
    "cache_creation_5m", "cache_creation_1h", "web_search_requests", "web_fetch_requests", "service_tier",
    "inference_geo", "speed", "cost_usd", "cache_savings_usd", "ttfb_s", "ttft_s", "duration_s",
    "overhead_s", "tool_use_ids", "tool_uses", "tool_result_ids", "tool_result_names",
    "tool_result_latency_s", "tool_result_is_error", "cache_breakpoint_injected", "system_hash",
    "retry_count", "key_fingerprint", "request_bytes", "response_bytes", "trace_id", "span_id",
    "parent_span_id", "provider", "cloud_region", "response_cache_savings_usd", "cache_outcome",
    "cache_miss_reason", "cache_miss_detail", "cache_missed_tokens", "cache_miss_cost_usd",
    "api_cache_miss_reason", "agent_id", "parent_agent_id",
)  # fmt: skip
_PLAIN = (
    "event_id", "app", "session_id", "session_source", "method", "path", "operation",
    "model", "model_canonical", "request_id", "status", "outcome", "error_type", "stop_reason", "cost_usd",
    "cache_savings_usd", "ttfb_s", "ttft_s", "duration_s", "overhead_s", "system_hash", "retry_count",
    "key_fingerprint", "request_bytes", "response_bytes", "trace_id", "span_id", "parent_span_id",
    "provider", "cloud_region",
    "cache_outcome", "cache_miss_reason", "cache_miss_detail", "cache_missed_tokens", "cache_miss_cost_usd",
    "api_cache_miss_reason", "agent_id", "parent_agent_id",
)  # fmt: skip
_USAGE = (
    "input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
    "cache_creation_5m", "cache_creation_1h", "web_search_requests", "web_fetch_requests", "service_tier",
    "inference_geo", "speed",
)  # fmt: skip


def event_to_row(e: CallEvent) -> tuple[Any, ...]:
    """The values of ``e`` in ``EVENT_COLUMNS`` order (Python natives the clients know how to send)."""
    values: dict[str, Any] = {name: getattr(e, name) for name in _PLAIN}
    values["started_at_unix"] = e.started_at
    values["response_cache_savings_usd"] = e.response_cache_savings_usd
    values.update({name: getattr(e.usage, name) for name in _USAGE})
    values.update(
        stream=e.stream,
        cache_breakpoint_injected=e.cache_breakpoint_injected,
        tool_use_ids=list(e.tool_use_ids),
        tool_uses=list(e.tool_uses),
        tool_result_ids=[r.tool_use_id for r in e.tool_results],
        tool_result_names=[r.name for r in e.tool_results],
        tool_result_latency_s=[r.latency_s for r in e.tool_results],
        tool_result_is_error=[r.is_error for r in e.tool_results],
    )
    return tuple(values[name] for name in EVENT_COLUMNS)


def row_to_event(row: Sequence[Any]) -> CallEvent:
    """Rebuild the :class:`CallEvent` that ``event_to_row`` produced (equal to the original)."""
    r = dict(zip(EVENT_COLUMNS, row, strict=True))
    results = zip(
        r["tool_result_ids"],
        r["tool_result_names"],
        r["tool_result_latency_s"],
        r["tool_result_is_error"],
        strict=True,
    )
    return CallEvent(
        **{name: r[name] for name in _PLAIN},
        # Read as NULL from a database still on a schema older than the column.
        response_cache_savings_usd=r["response_cache_savings_usd"] or 0.0,
        started_at=r["started_at_unix"],
        stream=bool(r["stream"]),
        usage=Usage(**{name: r[name] for name in _USAGE}),
        tool_use_ids=tuple(r["tool_use_ids"]),
        tool_uses=tuple(r["tool_uses"]),
        tool_results=tuple(ToolResult(str(i), str(n), float(t), bool(x)) for i, n, t, x in results),
        cache_breakpoint_injected=bool(r["cache_breakpoint_injected"]),
    )
