"""Wasted cache writes (SPEC R-PC-2): cache writes that no later call read within their TTL.

A write premium (1.25x or 2x input) pays off only if a later call reads the entry. ``WasteTracker``
remembers each call's writes under ``(app, model, system_hash)`` — cache entries are shared by every
caller with the same prefix, so a write of one session read by another of the same app is not wasted —
and marks a write *read* when a later call with the same key reads past the point where the write
began (its ``cache_read_input_tokens`` is greater than the writer's): the read then reached into the
written span. A write whose TTL runs out unread is *wasted*; ``expire(now)`` returns those with their
session, app and model so the caller can count them per (model, app) and per session.

Within one call the 1h part of a write comes first in the prefix (longer TTLs before shorter), so the
1h span begins at the call's read and the 5m span after it. Approximations, on purpose: a read that
reaches into a span counts the whole span as read; a write evicted early by Anthropic is not seen.
Pure: the caller passes times (unix seconds); bounded memory; not thread-safe.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from sidecar.core.usage import Usage

TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
_Key = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class WastedWrite:
    """Tokens written to the cache by one call and never read before the entry expired."""

    session_id: str
    app: str
    model: str
    ttl: str
    tokens: int
    written_at: float


@dataclass(slots=True)
class _Write:
    key: _Key
    session_id: str
    start: int  # prefix position (tokens) where this write began
    tokens: int
    ttl: str
    written_at: float
    expires_at: float
    read: bool = False
    done: bool = False


class WasteTracker:
    """Tracks pending cache writes until they are read or expire; at most ``max_pending`` at a time.

    Feed every finished chat call to :meth:`observe` in time order, and call :meth:`expire` now and
    then (e.g. every 30 s). When full, the oldest pending writes are forgotten (``dropped`` counts them)
    rather than reported as wasted.
    """

    def __init__(self, max_pending: int = 100_000) -> None:
        self._max_pending = max_pending
        self._queues: dict[str, deque[_Write]] = {ttl: deque() for ttl in TTL_SECONDS}
        self._by_key: dict[_Key, list[_Write]] = {}
        self._pending = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        return self._pending

    def observe(
        self, *, session_id: str, app: str, model: str, system_hash: str | None, at: float, usage: Usage
    ) -> None:
        """Record one call made at ``at``: first what it read, then what it wrote."""
        key = (app, model, system_hash or "")
        read = max(0, usage.cache_read_input_tokens)
        writes = self._by_key.get(key)
        if read and writes:
            for write in writes:
                if write.expires_at > at and read > write.start:
                    write.read = True
            self._prune(key)  # read writes stay queued (to leave quietly) but need no lookup
        w5, w1h = (max(0, n) for n in usage.write_buckets())
        start = read
        for ttl, tokens in (("1h", w1h), ("5m", w5)):
            if tokens:
                self._add(_Write(key, session_id, start, tokens, ttl, at, at + TTL_SECONDS[ttl]))
                start += tokens

    def _add(self, write: _Write) -> None:
        while self._pending >= self._max_pending and self._drop_oldest():
            self.dropped += 1
        self._queues[write.ttl].append(write)
        self._by_key.setdefault(write.key, []).append(write)
        self._pending += 1

    def _drop_oldest(self) -> bool:
        heads = [q[0] for q in self._queues.values() if q]
        if not heads:
            return False
        oldest = min(heads, key=lambda w: w.written_at)
        self._queues[oldest.ttl].popleft()
        oldest.done = True
        self._pending -= 1
        self._prune(oldest.key)
        return True

    def _prune(self, key: _Key) -> None:
        kept = [w for w in self._by_key.get(key, ()) if not (w.done or w.read)]
        if kept:
            self._by_key[key] = kept
        else:
            self._by_key.pop(key, None)

    def expire(self, now: float) -> list[WastedWrite]:
        """Forget writes whose TTL has run out by ``now``; return those that were never read."""
        wasted: list[WastedWrite] = []
        touched: set[_Key] = set()
        for queue in self._queues.values():
            while queue and queue[0].expires_at <= now:
                write = queue.popleft()
                write.done = True
                self._pending -= 1
                touched.add(write.key)
                if not write.read:
                    app, model, _ = write.key
                    wasted.append(
                        WastedWrite(write.session_id, app, model, write.ttl, write.tokens, write.written_at)
                    )
        for key in touched:
            self._prune(key)
        return wasted


def totals(wasted: Iterable[WastedWrite]) -> dict[tuple[str, str], int]:
    """Wasted tokens per ``(model, app)``, e.g. for ``sidecar_cache_wasted_write_tokens_total``."""
    out: dict[tuple[str, str], int] = {}
    for w in wasted:
        out[(w.model, w.app)] = out.get((w.model, w.app), 0) + w.tokens
    return out
