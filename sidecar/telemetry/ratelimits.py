"""The latest rate-limit headroom per app and key fingerprint (SPEC R-RL-1), for the summary endpoint and
the console: fed from finished events on the recorder's thread, read from the admin API's."""

from __future__ import annotations

import threading
from typing import Any

from sidecar.core.ratelimits import RateLimits

_MAX_SOURCES = 2500  # (app, key) pairs kept; app and key labels are capped to 50 each anyway


class RateLimitBoard:
    """What the latest answer of each (app, key) said; thread-safe, bounded (oldest source forgotten)."""

    def __init__(self, max_sources: int = _MAX_SOURCES) -> None:
        self._max = max_sources
        self._lock = threading.Lock()
        self._latest: dict[tuple[str, str], tuple[float, RateLimits]] = {}

    def observe(self, app: str, key: str | None, limits: RateLimits, at: float) -> None:
        source = (app, key or "none")
        with self._lock:
            self._latest.pop(source, None)  # re-inserted last: dicts keep insertion order
            self._latest[source] = (at, limits)
            if len(self._latest) > self._max:
                del self._latest[next(iter(self._latest))]

    def rows(self) -> list[dict[str, Any]]:
        """One row per limit or window: ``app``, ``key``, ``type`` (API-key limits) or ``window``
        (subscriptions, with their ``status``), ``remaining``, ``limit``, ``utilization``, ``reset``,
        ``seen_at`` (unix seconds of the answer). Most recently seen source first."""
        with self._lock:
            latest = list(self._latest.items())
        out: list[dict[str, Any]] = []
        for (app, key), (at, limits) in reversed(latest):
            base = {"app": app, "key": key, "seen_at": at}
            for s in limits.standard:
                used = 1 - s.remaining / s.limit if s.limit and s.remaining is not None else None
                out.append({**base, "type": s.kind, "remaining": s.remaining, "limit": s.limit,
                            "utilization": used, "reset": s.reset})  # fmt: skip
            for w in limits.windows:
                out.append({**base, "window": w.name, "utilization": w.utilization, "reset": w.reset,
                            "status": limits.status})  # fmt: skip
        return out
