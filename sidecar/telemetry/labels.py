"""The label vocabulary of the exported series: closed value sets, and caps on client-given values.

Values that come from clients (app, tool, fleet names) pass through a :class:`LabelCap`, so a client
cannot grow the number of series without bound.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from sidecar.core.events import CallEvent

# ``gen_ai_provider_name`` (OpenTelemetry GenAI conventions) of each provider; an unknown one is ``other``.
GEN_AI_PROVIDERS = {"anthropic": "anthropic", "bedrock": "aws.bedrock", "vertex": "gcp.vertex_ai"}
PROVIDERS = tuple(GEN_AI_PROVIDERS)
OTHER = "other"
TOKEN_TYPES = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h")
BUDGET_LIMITS = (
    "session_usd",
    "session_tokens",
    "session_model_calls",
    "session_tool_calls",
    "app_daily_usd",
    "blocked",
)
DISCONNECT_REASONS = ("ping_timeout", "client_close", "abnormal", "replaced", "shutdown")
RECEIVERS = ("alertmanager", "webhook")
OUTCOMES = ("sent", "retried", "failed", "dropped")
RESPONSE_CACHE_RESULTS = ("hit", "miss", "bypass", "store_error")


class LabelCap:
    """Admits at most ``limit`` distinct values; later ones map to ``other`` (bounded cardinality)."""

    def __init__(self, limit: int, initial: Sequence[str] = ()) -> None:
        self._limit = limit
        self._seen: set[str] = set(initial)
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self._limit:
                self._seen.add(value)
                return value
        return OTHER


def gen_ai_provider(event: CallEvent) -> str:
    return GEN_AI_PROVIDERS.get(event.provider, OTHER)


def provider_label(event: CallEvent) -> str:
    return event.provider if event.provider in GEN_AI_PROVIDERS else OTHER


def status_class(event: CallEvent) -> str:
    if event.status <= 0:
        return "error"
    return f"{event.status // 100}xx" if 200 <= event.status < 600 else "error"
