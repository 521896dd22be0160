"""Per-call state on the hot path, and the dependencies the proxy handler is built with.

A call's state comes in parts, each written by one stage: ``CallRequest`` (whole before the body is
read), ``Caller`` (once the body is inspected), ``Timings`` (the clock along the way), ``ResponseState``
(what the client was answered) and ``PolicyState`` (what the policies decided). ``CallContext`` holds
them with the call's flow flags and makes the call's one ``CallEvent``.

The handler makes one of each per call, so they are slotted and not frozen: a frozen dataclass sets
each field through ``object.__setattr__``: about 3% more instructions per call through the handler.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Protocol

from sidecar.core import events as outcomes
from sidecar.core.events import CallEvent, ToolResult
from sidecar.core.usage import Usage
from sidecar.errors import SidecarError, error_response_parts
from sidecar.proxy.provider import CloudCall, ErrorParts, StreamReader
from sidecar.proxy.upstream import Upstream
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
        """Extra headers for a buffered answer (``ctx.policy.buffer_answer``), its summary parsed."""
        ...

    async def after_call(self, ctx: CallContext, event: CallEvent) -> None:
        """Observe the finished, priced call (reconcile reservations, track sessions and tools)."""
        ...


class CachedAnswer(Protocol):
    """A stored answer the response cache sends instead of forwarding (SPEC R-RC-3)."""

    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> list[tuple[bytes, bytes]]: ...
    @property
    def body(self) -> bytes: ...
    @property
    def summary(self) -> MessageSummary: ...


class CachedCall(Protocol):
    """The response cache's part in a call, set by the policies: an ``answer`` to send instead of
    forwarding, or else a copy of the relayed answer to ``feed`` (decoded) and a ``response_header`` to
    add. ``close`` once the call is over, whatever happened."""

    @property
    def answer(self) -> CachedAnswer | None: ...
    @property
    def response_header(self) -> tuple[bytes, bytes] | None: ...
    def feed(self, piece: bytes) -> None: ...
    def close(self) -> None: ...


class NoPolicies:
    async def before_forward(self, ctx: CallContext, body: bytes, headers: Headers) -> bytes:
        return body

    async def response_headers(self, ctx: CallContext) -> list[tuple[bytes, bytes]]:
        return []

    async def after_call(self, ctx: CallContext, event: CallEvent) -> None:
        return None


def sse_parser(content_type: bytes) -> StreamParser | None:
    """The first-party API streams Anthropic SSE."""
    return StreamParser() if content_type.startswith(b"text/event-stream") else None


@dataclass(frozen=True)
class ProxyDeps:
    settings: Settings
    upstream: Upstream
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
    # How the sidecar's own errors look, and which parser reads a streamed answer (a cloud route's differ).
    error_parts: Callable[[SidecarError], ErrorParts] = error_response_parts
    stream_parser: Callable[[bytes], StreamReader | None] = sse_parser


@dataclass(slots=True)
class CallRequest:
    """The request as it arrived: what its line and headers say, known before the body is read.

    Built whole when the call starts and never changed after.
    """

    op: str
    method: str
    path: str
    app: str
    started_at: float  # wall clock, for the event
    local_origin: str = ""  # how this client reached the sidecar (the listening socket's address)
    query: bytes = b""  # the raw query string
    cloud: CloudCall | None = None  # a call on a cloud route (/bedrock/…, /vertex/…)


@dataclass(slots=True)
class Caller:
    """Who calls: the session (header, harness, metadata or fingerprint), the API key's fingerprint and
    the SDK's retry count. Filled in once the body is read; left empty for a request refused before."""

    session_id: str = ""
    session_source: str = "none"
    key_fingerprint: str | None = None
    retry_count: int = 0
    agent_id: str | None = None  # Claude Code's subagent headers
    parent_agent_id: str | None = None


UNPARSED = RequestInfo()  # frozen: shared by every call whose body is not inspected


@dataclass(slots=True)
class Timings:
    """``perf_counter`` readings along the call; ``None`` for a stage the call never reached."""

    t0: float  # the request's headers are in
    sent: float | None = None  # handed to the upstream client
    headers: float | None = None  # the answer's headers are in
    first_byte_out: float | None = None
    first_token: float | None = None
    last_byte: float | None = None
    parse_s: float = 0.0  # spent in the stream parser

    def end(self) -> float:
        return self.last_byte or self.first_byte_out or self.headers or perf_counter()

    def overhead(self, now: float) -> float:
        """Time spent in the sidecar itself: before forwarding, parsing, and the bookkeeping after."""
        if self.sent is None:
            return now - self.t0
        after = now - self.last_byte if self.last_byte is not None else 0.0
        return (self.sent - self.t0) + self.parse_s + after


@dataclass(slots=True)
class ResponseState:
    """What the client was answered: the upstream's answer as relayed, or the sidecar's own."""

    status: int = 0
    outcome: str = outcomes.OK
    error_type: str | None = None
    refusal: SidecarError | None = None  # the sidecar answered itself
    headers: Headers = ()  # the upstream's raw headers
    body_bytes: int = 0
    complete: bool = False  # relayed to its last byte
    parser: StreamReader | None = None
    summary: MessageSummary | None = None

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


@dataclass(slots=True)
class PolicyState:
    """What the policies decided for the call (``Policies.before_forward``), read back after it."""

    admission: object | None = None  # the budget reservation held for this call
    buffer_answer: bool = False  # read a JSON answer whole before relaying (remaining-budget header)
    cache_breakpoint_injected: bool = False
    tool_results: tuple[ToolResult, ...] = ()
    cached: CachedCall | None = None  # the response cache's part in the call, when it has one
    cache_probe: object | None = None  # the cache diagnosis's side of this call
    # Headers the policies set on the upstream request, replacing the client's of the same name.
    upstream_header_overrides: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass(slots=True)
class CallContext:
    """One call's state: its parts, the inspected body, and where the call is in its flow."""

    request: CallRequest
    timings: Timings
    caller: Caller = field(default_factory=Caller)
    info: RequestInfo = UNPARSED
    doc: dict[str, Any] | None = None  # the parsed body, until the prompt-cache planner has used it
    trace: TraceRef | None = None
    request_bytes: int = 0
    body_done: bool = False  # the request body is read to its end
    done: bool = False  # forwarding is over (a disconnect no longer cancels anything)
    client_gone: bool = False
    recordable: bool = True
    on_body_done: Callable[[], None] | None = None
    response: ResponseState = field(default_factory=ResponseState)
    policy: PolicyState = field(default_factory=PolicyState)

    def to_event(self, event_id: str) -> CallEvent:
        request, caller, info, timings, response = (
            self.request,
            self.caller,
            self.info,
            self.timings,
            self.response,
        )
        summary = response.final_summary()
        event = CallEvent(
            event_id=event_id,
            started_at=request.started_at,
            app=request.app,
            session_id=caller.session_id,
            session_source=caller.session_source,
            method=request.method,
            path=request.path,
            operation=request.op,
            stream=info.stream,
            model=info.model,
            status=response.status,
            outcome=response.outcome,
            error_type=response.error_type,
            duration_s=timings.end() - timings.t0,
            retry_count=caller.retry_count,
            key_fingerprint=caller.key_fingerprint,
            agent_id=caller.agent_id,
            parent_agent_id=caller.parent_agent_id,
            request_bytes=self.request_bytes,
            response_bytes=response.body_bytes,
            cache_breakpoint_injected=self.policy.cache_breakpoint_injected,
            system_hash=info.system_hash,
        )
        if timings.sent is not None and timings.headers is not None:
            event.ttfb_s = timings.headers - timings.sent
        if timings.sent is not None and timings.first_token is not None:
            event.ttft_s = timings.first_token - timings.sent
        request_id = get_ci(response.headers, b"request-id")
        event.request_id = request_id.decode("latin-1") if request_id else None
        if self.trace is not None:
            event.trace_id, event.span_id = self.trace.trace_id, self.trace.span_id
            event.parent_span_id = self.trace.parent_span_id
        if summary is not None:
            _apply_summary(event, summary)
        if request.cloud is not None:
            request.cloud.annotate(event, response.headers, summary)
        if response.status >= 400 and event.error_type is None and request.op == CHAT:
            event.error_type = _status_error_type(response.status)
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
