"""Open sessions of live traffic (SPEC §13): which session just closed, so the per-session histograms are
observed once per session. Pure: the caller passes ``now``.

A session closes when it has been idle past the timeout. Model calls, tokens and times are counted as
:mod:`sidecar.core.sessions` defines them for stored events.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from sidecar.core.events import CallEvent
from sidecar.core.sessions import is_model_call

DEFAULT_MAX_OPEN = 100_000


@dataclass(frozen=True, slots=True)
class ClosedSession:
    """A session that went idle: what the per-session histograms observe (``tokens``: all four buckets)."""

    session_id: str
    app: str
    cost_usd: float
    tokens: int
    model_calls: int
    tool_calls: int
    duration_s: float  # first call start to last call end
    model_time_s: float
    tool_time_s: float


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A session's totals as the store keeps them (its per-session rollup), to follow it again after a
    restart: first call start, last call end, and the sums :class:`ClosedSession` reports."""

    session_id: str
    app: str
    first_start: float
    last_end: float
    cost_usd: float
    tokens: int
    model_calls: int
    tool_calls: int
    model_time_s: float
    tool_time_s: float


@dataclass(slots=True)
class _Open:
    app: str
    first_start: float
    last_end: float
    last_activity: float
    cost_usd: float = 0.0
    tokens: int = 0
    model_calls: int = 0
    tool_calls: int = 0
    model_time_s: float = 0.0
    tool_time_s: float = 0.0

    def close(self, session_id: str) -> ClosedSession:
        return ClosedSession(
            session_id,
            self.app,
            self.cost_usd,
            self.tokens,
            self.model_calls,
            self.tool_calls,
            max(0.0, self.last_end - self.first_start),
            self.model_time_s,
            self.tool_time_s,
        )


class SessionLifecycle:
    """Open sessions of live traffic, closed after ``idle_timeout_s`` without activity.

    Not thread-safe: feed it from one thread. Bounded: past ``max_open`` sessions the least recently
    active one is closed early and returned by :meth:`observe`, so it is still observed once.
    """

    def __init__(self, idle_timeout_s: float, max_open: int = DEFAULT_MAX_OPEN) -> None:
        if max_open < 1:
            raise ValueError("max_open must be >= 1")
        self.idle_timeout_s = idle_timeout_s
        self.max_open = max_open
        # Ordered by last activity (moved to the end on each event): expiry and eviction pop the front.
        self._open: OrderedDict[str, _Open] = OrderedDict()

    @property
    def open_count(self) -> int:
        """Sessions currently open (the ``sidecar_active_sessions`` gauge)."""
        return len(self._open)

    def observe(self, event: CallEvent, now: float) -> list[ClosedSession]:
        """Account a finished ``event`` observed at ``now`` (the idle clock restarts at ``now``; pass a
        non-decreasing ``now``, as expiry scans sessions in observation order).

        Returns sessions closed early because the cap was reached (normally none). Events without a
        session are ignored; every session event is activity, but only model calls add to the totals.
        """
        sid = event.session_id
        if not sid:
            return []
        s = self._open.pop(sid, None)
        if s is None:
            s = _Open(event.app, event.started_at, event.ended_at, now)
        s.first_start = min(s.first_start, event.started_at)
        s.last_end = max(s.last_end, event.ended_at)
        s.last_activity = max(s.last_activity, now)
        if is_model_call(event):
            u = event.usage
            s.cost_usd += event.cost_usd or 0.0
            s.tokens += u.input_tokens + u.output_tokens + u.cache_read_input_tokens
            s.tokens += u.cache_creation_input_tokens
            s.model_calls += 1
            s.tool_calls += len(event.tool_uses)
            s.model_time_s += event.duration_s
        s.tool_time_s += sum(r.latency_s for r in event.tool_results)
        self._open[sid] = s
        evicted: list[ClosedSession] = []
        while len(self._open) > self.max_open:
            old_id, old = self._open.popitem(last=False)
            evicted.append(old.close(old_id))
        return evicted

    def restore(self, sessions: Iterable[StoredSession]) -> int:
        """Follow again sessions that were open when the process stopped, with their stored totals, so
        each closes whole and once; each is idle since its ``last_end``. Sessions already followed are
        left as they are, and the cap is kept (the most recently active win). Returns how many were added.
        """
        merged = dict(self._open)
        added: list[str] = []
        for s in sessions:
            if s.session_id and s.session_id not in merged:
                merged[s.session_id] = _Open(
                    s.app, s.first_start, s.last_end, s.last_end, s.cost_usd, s.tokens, s.model_calls,
                    s.tool_calls, s.model_time_s, s.tool_time_s,
                )  # fmt: skip
                added.append(s.session_id)
        # Expiry and eviction rely on the order by last activity.
        ordered = sorted(merged.items(), key=lambda item: item[1].last_activity)[-self.max_open :]
        self._open = OrderedDict(ordered)
        return sum(1 for sid in added if sid in self._open)

    def expire(self, now: float) -> list[ClosedSession]:
        """Close and return the sessions idle for more than ``idle_timeout_s`` at ``now``."""
        closed: list[ClosedSession] = []
        cutoff = now - self.idle_timeout_s
        while self._open:
            sid = next(iter(self._open))
            s = self._open[sid]
            if s.last_activity >= cutoff:
                break
            del self._open[sid]
            closed.append(s.close(sid))
        return closed
