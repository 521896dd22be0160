"""Follows finished events to observe tool latencies and per-session histograms when sessions close."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from sidecar.core.events import CallEvent
from sidecar.core.session_lifecycle import ClosedSession, SessionLifecycle, StoredSession
from sidecar.telemetry.metrics import Metrics


class SessionsSink:
    """A recorder sink (worker thread); ``expire`` is called by the housekeeping chore (event loop)."""

    name = "sessions"

    def __init__(self, metrics: Metrics, lifecycle: SessionLifecycle) -> None:
        self.m = metrics
        self.lifecycle = lifecycle
        self._lock = threading.Lock()

    def write(self, events: Sequence[CallEvent]) -> None:
        closed: list[ClosedSession] = []
        with self._lock:
            for event in events:
                for result in event.tool_results:
                    self.m.tool_latency.labels(
                        tool=self.m.tool_label(result.name), app=self.m.app_label(event.app)
                    ).observe(result.latency_s)
                closed.extend(self.lifecycle.observe(event, event.ended_at))
            self.m.active_sessions.set(self.lifecycle.open_count)
        self._observe_closed(closed)

    def restore(self, sessions: Sequence[StoredSession]) -> int:
        """At start-up: follow again the sessions open when the process last stopped (see
        :meth:`SessionLifecycle.restore`)."""
        with self._lock:
            added = self.lifecycle.restore(sessions)
            self.m.active_sessions.set(self.lifecycle.open_count)
        return added

    def expire(self, now: float) -> list[ClosedSession]:
        with self._lock:
            closed = self.lifecycle.expire(now)
            self.m.active_sessions.set(self.lifecycle.open_count)
        self._observe_closed(closed)
        return closed

    def _observe_closed(self, closed: Sequence[ClosedSession]) -> None:
        m = self.m
        for s in closed:
            app = m.app_label(s.app)
            m.session_cost.labels(app=app).observe(s.cost_usd)
            m.session_tokens.labels(app=app).observe(s.tokens)
            m.session_model_calls.labels(app=app).observe(s.model_calls)
            m.session_tool_calls.labels(app=app).observe(s.tool_calls)
            m.session_duration.labels(app=app).observe(s.duration_s)
            m.session_model_time.labels(app=app).observe(s.model_time_s)
            m.session_tool_time.labels(app=app).observe(s.tool_time_s)

    def close(self) -> None:
        return None
