"""The record of one upstream call, and the :class:`Sink` protocol of what receives it (store, logs,
metrics, traces)."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sidecar.core.cloud import ANTHROPIC, GLOBAL
from sidecar.core.ratelimits import RateLimits
from sidecar.core.usage import Usage

# ``outcome`` values.
OK = "ok"  # an HTTP answer (any status) was relayed to the client in full
UPSTREAM_ERROR = "upstream_error"  # upstream unreachable, timed out, reset, or sent an in-band error
CLIENT_DISCONNECTED = "client_disconnected"
REFUSED = "refused"  # the sidecar answered itself (budget, size limit, auth) without calling upstream
CACHE_HIT = "cache_hit"  # answered from the response cache: no upstream call, no model call (SPEC R-RC-5)
SIDECAR_ERROR = "sidecar_error"  # an unexpected error in the sidecar: a 500 api_error, or a cut stream


_RAND_B = (1 << 62) - 1


def new_event_id() -> str:
    """A UUIDv7 string (RFC 9562): 48 bits of unix milliseconds, then 74 random bits.

    Time-ordered ids land at the end of the stores' primary-key indexes instead of at random pages, which
    keeps inserts cheap as the tables grow; within one millisecond, 74 random bits keep ids unique.
    Uniqueness, not secrecy, is needed: the PRNG avoids a syscall per call.
    """
    rand = random.getrandbits(74)
    n = (
        (time.time_ns() // 1_000_000) << 80
        | 0x7 << 76  # version
        | (rand >> 62) << 64  # rand_a, 12 bits
        | 0b10 << 62  # variant
        | (rand & _RAND_B)
    )
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class PartialWrite(Exception):
    """Raised by a sink that kept every event of a batch but ``failed`` (each logged by the sink)."""

    def __init__(self, failed: int, total: int) -> None:
        super().__init__(f"{failed} of {total} events could not be written")
        self.failed = failed


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A tool's measured latency: from the last byte of the response that asked for it (``tool_use``)
    to the arrival of the first request carrying its ``tool_result``."""

    tool_use_id: str
    name: str
    latency_s: float
    is_error: bool


@dataclass(slots=True)
class CallEvent:
    event_id: str
    started_at: float  # unix seconds, wall clock
    app: str
    session_id: str
    session_source: str
    method: str
    path: str
    operation: str  # chat | count_tokens | batches | models | files | other
    stream: bool
    model: str | None = None  # requested model id as sent
    model_canonical: str | None = None  # price-table id, None when unknown
    request_id: str | None = None  # upstream ``request-id``
    status: int = 0  # HTTP status relayed to the client; 0 when none reached it
    outcome: str = OK
    error_type: str | None = None
    stop_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None  # None = unpriced (unknown model) or nothing to price
    cache_savings_usd: float = 0.0
    response_cache_savings_usd: float = 0.0  # a cache_hit: what the call whose answer it replayed cost
    ttfb_s: float | None = None  # first response byte from upstream
    ttft_s: float | None = None  # first content delta (streams) / == ttfb for JSON
    duration_s: float = 0.0
    overhead_s: float = 0.0  # time spent in the sidecar itself, excluding upstream
    tool_use_ids: tuple[str, ...] = ()
    tool_uses: tuple[str, ...] = ()  # names, in order
    tool_results: tuple[ToolResult, ...] = ()  # tools whose results this request delivered
    cache_breakpoint_injected: bool = False
    system_hash: str | None = None
    retry_count: int = 0
    key_fingerprint: str | None = None
    request_bytes: int = 0
    response_bytes: int = 0
    # W3C trace context of the sidecar's span for this call (hex), when tracing is on.
    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None  # the client's span (from its traceparent), if it sent one
    # Where the call went (SPEC §18): ``anthropic`` | ``bedrock`` | ``vertex``; for a cloud, the location
    # that served it (Bedrock: the profile's geography ``global``/``us``/``eu``/``jp``/``apac`` or the
    # region of an in-region id; Vertex: the location). Anything but ``global`` is a regional endpoint.
    provider: str = ANTHROPIC
    cloud_region: str | None = None
    # Why the prompt cache missed (SPEC R-CD): the sidecar's verdict on a successful messages call —
    # ``cache_outcome`` hit | write | miss | none; the ``cache_miss_*`` fields only for a miss — and the
    # API's own ``diagnostics.cache_miss_reason.type`` when a response carried one.
    cache_outcome: str | None = None
    cache_miss_reason: str | None = None
    cache_miss_detail: str | None = None
    cache_missed_tokens: int | None = None
    cache_miss_cost_usd: float | None = None
    api_cache_miss_reason: str | None = None
    # Claude Code's subagents (``x-claude-code-agent-id`` / ``x-claude-code-parent-agent-id``), when sent.
    agent_id: str | None = None
    parent_agent_id: str | None = None
    # Anthropic's rate-limit headers of the answer, for the metrics (not stored).
    ratelimits: RateLimits | None = field(default=None, compare=False, repr=False)

    @property
    def ended_at(self) -> float:
        return self.started_at + self.duration_s

    @property
    def regional(self) -> bool:
        """Served at a cloud's regional endpoint (priced with the provider's regional premium)."""
        return self.cloud_region is not None and self.cloud_region != GLOBAL


class Sink(Protocol):
    """Where batches of events go (the recorder's fan-out). ``write`` and ``close`` are called from the
    recorder's worker thread only.

    A sink may set ``whole_batches = True`` to get each batch in one call (a transaction per call);
    others get it in slices. A sink that kept all but some events raises :class:`PartialWrite`.
    """

    name: str

    def write(self, events: Sequence[CallEvent]) -> None: ...

    def close(self) -> None: ...
