"""Per-call state on the hot path, and the dependencies the proxy handler is built with."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sidecar.core import events as outcomes
from sidecar.core.events import CallEvent, ToolResult
from sidecar.core.usage import Usage
from sidecar.errors import SidecarError
from sidecar.proxy.upstream import UpstreamClient
from sidecar.sansio.headers import get_ci
from sidecar.sansio.messages import MessageSummary, StreamParser
from sidecar.sansio.request import CHAT, RequestInfo
from sidecar.sansio.traceparent import TraceRef
from sidecar.settings import Settings

Headers = Sequence[tuple[bytes, bytes]]


class Policies(Protocol):
    """Decisions around a call (budgets, prompt cache, sessions). Both hooks must be fast and total."""

    async def before_forward(self, ctx: CallContext, body: bytes, headers: Headers) -> bytes:
        """Return the body to forward (the same object when unchanged); raise SidecarError to refuse."""
        ...

    async def response_headers(self, ctx: CallContext) -> list[tuple[bytes, bytes]]:
        """Extra headers for a buffered answer (``ctx.buffer_answer``), its summary already parsed."""
        ...

    async def after_call(self, ctx: CallContext, event: CallEvent) -> None:
        """Observe the finished, priced call (reconcile reservations, track sessions and tools)."""
        ...


class NoPolicies:
    async def before_forward(self, ctx: CallContext, body: bytes, headers: Headers) -> bytes:
        return body

    async def response_headers(self, ctx: CallContext) -> list[tuple[bytes, bytes]]:
        return []

    async def after_call(self, ctx: CallContext, event: CallEvent) -> None:
        return None


@dataclass(frozen=True)
class ProxyDeps:
    settings: Settings
    upstream: UpstreamClient
    submit: Callable[[CallEvent], None]
    price: Callable[[CallEvent], None]
    fingerprint_key: Callable[[Headers], str | None]
    count_internal_error: Callable[[str], None]
    observe_response_headers: Callable[[str, Headers], None] = lambda app, headers: None
    tracing: bool = False  # give each call a span id and send it upstream in traceparent
    policies: Policies = field(default_factory=NoPolicies)
    # For the batch ``results_url`` rewrite: the upstream origin, and how clients reach the sidecar
    # (SIDECAR_PUBLIC_URL; when unset, the local address of the listening socket — never the Host header).
    upstream_origin: str = ""
    public_url: str | None = None


@dataclass(slots=True)
class CallContext:
    t0: float
    started_at: float
    op: str
    method: str
    path: str
    app: str = "default"
    local_origin: str = ""
    session_id: str = ""
    session_source: str = "none"
    model: str | None = None
    stream: bool = False
    info: RequestInfo = field(default_factory=RequestInfo)
    doc: dict[str, Any] | None = None  # the parsed body, until the prompt-cache planner has used it
    retry_count: int = 0
    key_fingerprint: str | None = None
    request_bytes: int = 0
    response_bytes: int = 0
    body_done: bool = False
    done: bool = False
    client_gone: bool = False
    recordable: bool = True
    complete: bool = False
    status: int = 0
    outcome: str = outcomes.OK
    error_type: str | None = None
    refusal: SidecarError | None = None
    refusal_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    cache_breakpoint_injected: bool = False
    tool_results: tuple[ToolResult, ...] = ()
    response_headers: Headers = ()
    parser: StreamParser | None = None
    summary: MessageSummary | None = None
    t_sent: float | None = None
    t_headers: float | None = None
    t_first_byte_out: float | None = None
    t_first_token: float | None = None
    t_last_byte: float | None = None
    parse_s: float = 0.0
    trace: TraceRef | None = None
    on_body_done: Callable[[], None] | None = None
    admission: object | None = None  # the budget reservation held for this call
    buffer_answer: bool = False  # read a JSON answer whole before relaying (remaining-budget header)
    cache_probe: object | None = None  # the cache diagnosis's side of this call (policies)
    # Headers the policies set on the upstream request, replacing the client's of the same name.
    upstream_header_overrides: list[tuple[bytes, bytes]] = field(default_factory=list)

    def refuse(self, exc: SidecarError) -> None:
        """The sidecar answered itself; nothing reached the upstream."""
        self.refusal = exc
        self.status = exc.status
        self.outcome = outcomes.REFUSED
        self.error_type = exc.error_type

    def fail(self, exc: SidecarError, relayed: bool = False) -> None:
        """The upstream failed (unreachable, timeout, reset); ``relayed``: after headers were sent."""
        self.outcome = outcomes.UPSTREAM_ERROR
        self.error_type = exc.error_type if not relayed else "stream_interrupted"
        if not relayed:
            self.status = exc.status

    def final_summary(self) -> MessageSummary | None:
        if self.summary is None and self.parser is not None:
            self.summary = self.parser.close()
        return self.summary

    def overhead(self, now: float) -> float:
        """Time spent in the sidecar itself: before forwarding, parsing, and the bookkeeping after."""
        if self.t_sent is None:
            return now - self.t0
        after = now - self.t_last_byte if self.t_last_byte is not None else 0.0
        return (self.t_sent - self.t0) + self.parse_s + after

    def to_event(self, event_id: str) -> CallEvent:
        summary = self.final_summary()
        end = self.t_last_byte or self.t_first_byte_out or self.t_headers
        if end is None:
            from time import perf_counter

            end = perf_counter()
        event = CallEvent(
            event_id=event_id,
            started_at=self.started_at,
            app=self.app,
            session_id=self.session_id,
            session_source=self.session_source,
            method=self.method,
            path=self.path,
            operation=self.op,
            stream=self.stream,
            model=self.model,
            status=self.status,
            outcome=self.outcome,
            error_type=self.error_type,
            duration_s=end - self.t0,
            retry_count=self.retry_count,
            key_fingerprint=self.key_fingerprint,
            request_bytes=self.request_bytes,
            response_bytes=self.response_bytes,
            cache_breakpoint_injected=self.cache_breakpoint_injected,
            system_hash=self.info.system_hash,
        )
        if self.t_sent is not None and self.t_headers is not None:
            event.ttfb_s = self.t_headers - self.t_sent
        if self.t_sent is not None and self.t_first_token is not None:
            event.ttft_s = self.t_first_token - self.t_sent
        request_id = get_ci(self.response_headers, b"request-id")
        event.request_id = request_id.decode("latin-1") if request_id else None
        if self.trace is not None:
            event.trace_id, event.span_id = self.trace.trace_id, self.trace.span_id
            event.parent_span_id = self.trace.parent_span_id
        if summary is not None:
            _apply_summary(event, summary)
        if self.status >= 400 and event.error_type is None and self.op == CHAT:
            event.error_type = _status_error_type(self.status)
        return event


def _apply_summary(event: CallEvent, summary: MessageSummary) -> None:
    event.usage = summary.usage if isinstance(summary.usage, Usage) else Usage()
    event.stop_reason = summary.stop_reason
    event.tool_use_ids = tuple(summary.tool_use_ids)
    event.tool_uses = tuple(summary.tool_uses)
    if event.model is None:
        event.model = summary.model
    if summary.error_type is not None:
        event.error_type = summary.error_type
        if event.status < 400:
            event.outcome = outcomes.UPSTREAM_ERROR


_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _status_error_type(status: int) -> str:
    return _STATUS_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
