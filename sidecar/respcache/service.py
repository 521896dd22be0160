"""The response cache the policies call around each ``POST /v1/messages`` (SPEC §19).

Contract for the caller: :meth:`ResponseCache.begin` once the request is read (before the sidecar edits
its body); when the returned call has an ``answer``, send it instead of forwarding; otherwise feed the
relayed answer to ``call.feed``. Then :meth:`ResponseCache.finish` with what the call came to, and in every
case ``call.close()``. Nothing here raises into the call: a failing backend is counted
(``store_error``), logged and bypassed. Results are counted per request, once: ``hit``, ``miss`` (looked
up, not found), ``bypass`` (asked not to look up: ``off`` or ``refresh``, or a body without a canonical
form); ``store_error`` counts failed lookups and writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.core.events import OK
from sidecar.respcache.backend import Backend, StoreError
from sidecar.respcache.call import CacheCall
from sidecar.respcache.config import HEADER, TTL_HEADER, CacheConfig
from sidecar.respcache.entry import CACHE_HEADER, EVENTSTREAM, JSON, SSE, Entry, answer_for
from sidecar.respcache.flight import Flight, Flights
from sidecar.respcache.key import request_key
from sidecar.sansio.messages import MessageSummary
from sidecar.telemetry.labels import RESPONSE_CACHE_RESULTS

Headers = Sequence[tuple[bytes, bytes]]
HIT, MISS, BYPASS, STORE_ERROR = RESULTS = RESPONSE_CACHE_RESULTS  # the metric's label values
MAX_ENTRY_BYTES = 32_000_000  # a larger answer is relayed but not copied for the cache
_LOG_EVERY_S = 60.0
log = logging.getLogger("sidecar.respcache")


def _ignore(app: str, result: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class CacheRequest:
    app: str
    route: bytes  # the raw path and query string
    headers: Headers  # the client's, before any are dropped for the upstream
    doc: Mapping[str, Any] | None  # the client's parsed body (None: not a JSON object)
    stream: bool
    now: float
    # A cloud route's caller (SPEC §18: a SigV4 signature's access key id, not the signature); None:
    # the credential header's value.
    tenant: bytes | None = None
    render: bool = True  # False: a stored answer is only replayed in the form it was stored


@dataclass(frozen=True, slots=True)
class Completed:
    """What a call that went upstream came to, for the decision to keep it."""

    status: int
    outcome: str
    summary: MessageSummary | None
    content_type: bytes
    cost_usd: float | None
    model: str | None  # the price table's id
    now: float


class ResponseCache:
    def __init__(
        self,
        config: CacheConfig,
        backend: Backend,
        *,
        shared: bool = False,
        max_entry_bytes: int = MAX_ENTRY_BYTES,
        on_result: Callable[[str, str], None] = _ignore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.backend = backend
        self.shared = shared
        self.max_entry_bytes = max_entry_bytes
        self._on_result = on_result
        self._clock = clock
        self.flights = Flights()
        self._writes: set[asyncio.Task[None]] = set()
        self._logged_at = -_LOG_EVERY_S

    # -- the call ----------------------------------------------------------------------------------

    async def begin(self, req: CacheRequest) -> CacheCall | None:
        """The cache's part in a call, ``None`` when it has none. Waits while an identical call leads."""
        header, ttl_header = _controls(req.headers)
        decision = self.config.decide(req.app, header, ttl_header)
        if decision is None:
            return None
        key = None
        if req.doc is not None and (decision.lookup or decision.store):
            key = request_key(
                route=req.route, headers=req.headers, doc=req.doc, shared=self.shared, tenant=req.tenant
            )
        if key is None:
            self._on_result(req.app, BYPASS)
            return None
        call = CacheCall(key, decision, req.app, self.max_entry_bytes)
        if not decision.lookup:
            self._on_result(req.app, BYPASS)  # refresh: straight upstream, the answer replaces the entry
            return call
        flight, leads = self.flights.lead_or_join(key)
        if leads:
            call.flight = flight
            call.release = lambda: self.flights.clear(key, flight)
            entry = await self._lookup(req.app, key, req.now)
        else:
            entry = await Flights.wait(flight)
        answer = answer_for(entry, req.stream, req.now, req.render) if entry is not None else None
        if answer is not None:
            call.answer = answer
            call.response_header = None  # the answer carries its own
            if leads:
                Flights.land(flight, entry)  # the waiters have it at once
            call.close()
        self._on_result(req.app, HIT if answer is not None else MISS)
        return call

    async def _lookup(self, app: str, key: bytes, now: float) -> Entry | None:
        try:
            return await self.backend.get(key, now)
        except StoreError as exc:
            self._store_failed(app, "lookup", exc)
            return None

    def finish(self, call: CacheCall, done: Completed) -> float | None:
        """Keep the answer when it may be kept, and land the call's flight. For a hit, returns what the
        stored call cost (the hit's savings); ``None`` otherwise."""
        if call.answer is not None:
            return call.answer.entry.cost_usd
        entry = self._entry(call, done) if call.decision.store else None
        flight, call.release = call.flight, None
        if flight is not None:
            Flights.land(flight, entry)  # waiters answer from it now, or make their own calls
        if entry is None:
            if flight is not None:
                self.flights.clear(call.key, flight)
            return None
        task = asyncio.ensure_future(self._write(call, entry, flight))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return None

    def _entry(self, call: CacheCall, done: Completed) -> Entry | None:
        summary = done.summary
        if done.status != 200 or done.outcome != OK or summary is None or not summary.complete:
            return None
        if summary.error_type is not None or summary.stop_reason == "refusal":
            return None  # an in-band error, or a refusal: an answer worth asking again
        body = call.body()
        if body is None:
            return None
        return Entry(
            kind=_kind(done.content_type),
            status=done.status,
            content_type=done.content_type,
            body=body,
            app=call.app,
            created_at=done.now,
            expires_at=done.now + call.decision.ttl_s,
            cost_usd=done.cost_usd,
            model=done.model,
            stop_reason=summary.stop_reason,
            tool_use_ids=tuple(summary.tool_use_ids),
            tool_uses=tuple(summary.tool_uses),
        )

    async def _write(self, call: CacheCall, entry: Entry, flight: Flight | None) -> None:
        try:
            await self.backend.put(call.key, entry)
        except StoreError as exc:
            self._store_failed(call.app, "write", exc)
        finally:
            if flight is not None:
                self.flights.clear(call.key, flight)

    def _store_failed(self, app: str, what: str, exc: StoreError) -> None:
        self._on_result(app, STORE_ERROR)
        now = time.monotonic()
        if now - self._logged_at >= _LOG_EVERY_S:  # a dead store fails every call: one line a minute
            self._logged_at = now
            log.warning(
                "response cache %s failed; calls go on without it: %s",
                what,
                exc,
                extra={"fields": {"backend": self.backend.name}},
            )

    # -- operations -------------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            await self.backend.open()
        except StoreError as exc:
            self._store_failed("default", "open", exc)

    async def purge(self, app: str | None) -> int:
        """Empty the cache (``app``: only the entries it stored). Raises ``StoreError``."""
        await self.drain(5.0)  # an entry being written now would outlive the purge
        return await self.backend.purge(app)

    async def expire(self, now: float) -> None:
        """Housekeeping chore: drop expired entries (the embedded store; Redis expires its own)."""
        try:
            await self.backend.expire(now)
        except StoreError as exc:
            self._store_failed("default", "expiry", exc)

    def stored_bytes(self) -> float:
        return self.backend.stored_bytes()

    async def drain(self, timeout_s: float) -> None:
        if self._writes:
            await asyncio.wait(list(self._writes), timeout=timeout_s)

    async def close(self, timeout_s: float = 5.0) -> None:
        await self.drain(timeout_s)
        await self.backend.close()


def _kind(content_type: bytes) -> str:
    lowered = content_type.lower()
    if lowered.startswith(b"text/event-stream"):
        return SSE
    return EVENTSTREAM if lowered.startswith(b"application/vnd.amazon.eventstream") else JSON


def _controls(headers: Headers) -> tuple[bytes | None, bytes | None]:
    header = ttl = None
    for name, value in headers:
        if name == HEADER:
            header = value
        elif name == TTL_HEADER:
            ttl = value
    return header, ttl


__all__ = [
    "BYPASS",
    "CACHE_HEADER",
    "HIT",
    "MISS",
    "RESULTS",
    "STORE_ERROR",
    "CacheRequest",
    "Completed",
    "ResponseCache",
]
