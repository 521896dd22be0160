"""The read side of the stores (SPEC §14): what the sessions API, ``summary``, ``report`` and start-up ask.

Every query costs what its answer costs: sessions come from the per-session rollup, summaries from the
hourly rollup and latency histograms (plus the raw events of at most two partial hours), start-up state
from aggregates. Implementations: :class:`sidecar.store.sqlite_reads.SQLiteReads` (embedded store) and
:class:`sidecar.store.clickhouse_reads.ClickHouseReads` (fleet store); they give the same answers.

Paging is by keyset: a page ends with an opaque cursor holding the last row's sort key and session id.
Under concurrent inserts a session's sort key only grows (cost, tokens, calls, duration, tool time and
last-seen never decrease), so a session already listed can never come again on a later page, and every
session left unchanged since the first page is listed exactly once; a session that changed in between
may move above the cursor (it shows on a fresh first page).
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from sidecar.core.cache_report import MissGroup
from sidecar.core.events import CallEvent

ORDERS = ("recent", "cost", "tokens", "calls", "duration", "tool_time")
# The rollup field each order sorts by (descending, ties by session id ascending).
ORDER_FIELDS = {
    "recent": "last_seen",
    "cost": "cost_usd",
    "tokens": "tokens",
    "calls": "model_calls",
    "duration": "duration_s",
    "tool_time": "tool_time_s",
}
STATES = ("open", "closed")
GROUP_BYS = ("app", "model", "hour", "day")
MAX_LIMIT = 1000
DEFAULT_CALLS_LIMIT = 2000


class InvalidQuery(ValueError):
    """A parameter the read side cannot use; ``param`` names it (the API answers 400 naming it)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


@dataclass(frozen=True, slots=True)
class SessionFilters:
    """Which sessions to list. ``since``/``until``: sessions with activity in ``[since, until)`` (last
    seen at or after ``since``, first seen before ``until``). ``state``: ``open`` = last seen within the
    idle timeout. ``q``: session-id prefix. ``model``: sessions with a model call to that model."""

    since: float | None = None
    until: float | None = None
    app: str | None = None
    model: str | None = None
    min_cost_usd: float | None = None
    state: str | None = None
    q: str | None = None


@dataclass(frozen=True, slots=True)
class SessionQuery:
    """One page of the sessions list. ``now`` and ``idle_timeout_s`` decide ``open``."""

    now: float
    idle_timeout_s: float
    filters: SessionFilters = SessionFilters()
    order: str = "recent"
    limit: int = 50
    cursor: str | None = None

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise InvalidQuery("order", f"must be one of {', '.join(ORDERS)}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidQuery("limit", f"must be between 1 and {MAX_LIMIT}")
        if self.filters.state is not None and self.filters.state not in STATES:
            raise InvalidQuery("state", "must be open or closed")


@dataclass(frozen=True, slots=True)
class SessionPage:
    sessions: list[dict[str, Any]]  # SPEC §13 session objects, without calls
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class SessionCounters:
    """A session's totals as the budget counters and the session tracker restore them at start-up.
    ``tokens``: all four buckets; ``cost_usd`` sums priced model calls (``unpriced_calls`` are not in it)."""

    session_id: str
    app: str
    first_seen: float
    last_seen: float
    cost_usd: float
    unpriced_calls: int
    tokens: int
    model_calls: int
    tool_calls: int
    model_time_s: float
    tool_time_s: float


class ReadStore(Protocol):
    """Queries of the read side; synchronous (run them in a worker thread). ``InvalidQuery`` for bad
    parameters."""

    def list_sessions(self, query: SessionQuery) -> SessionPage: ...

    def session_detail(
        self,
        session_id: str,
        *,
        now: float,
        idle_timeout_s: float,
        calls_limit: int = DEFAULT_CALLS_LIMIT,
        calls_after: str | None = None,
    ) -> dict[str, Any] | None:
        """The §13 session object with one page of ``calls`` (oldest first) and ``next_calls_after``;
        ``None`` for an unknown session."""
        ...

    def summary(self, since: float, until: float, group_by: str) -> dict[str, Any]:
        """Totals and one row per group over calls started in ``[since, until)``."""
        ...

    def tool_summary(self, since: float, until: float) -> dict[str, dict[str, Any]]:
        """Per tool name, over calls started in ``[since, until)``: ``count`` (tool_use blocks in model
        calls), ``measured``, ``errors``, ``p50_s`` / ``p95_s`` (bucket edges), ``total_s``."""
        ...

    def cache_miss_groups(self, since: float, until: float) -> list[MissGroup]:
        """The cache misses of the calls started in ``[since, until)``, per session and reason."""
        ...

    def response_cache_hits(self, since: float, until: float) -> tuple[int, float]:
        """Calls started in ``[since, until)`` answered from the response cache, and the sum of what
        their answers had cost (``response_cache_savings_usd``)."""
        ...

    def session_counters(self, active_since: float) -> list[SessionCounters]:
        """Sessions last seen at or after ``active_since``."""
        ...

    def unpriced_calls(self, since: float, until: float | None = None) -> list[CallEvent]:
        """Model calls without a price that started in ``[since, until)`` (budgets charge them)."""
        ...

    def close(self) -> None: ...


def _b64(doc: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(doc)).decode().rstrip("=")


def _unb64(param: str, text: str) -> Any:
    try:
        return orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise InvalidQuery(param, "not a cursor from a previous page") from exc


def encode_cursor(order: str, key: float, session_id: str) -> str:
    return _b64(["s1", order, key, session_id])


def decode_cursor(text: str, order: str) -> tuple[float, str]:
    """``(key, session_id)`` of a list cursor made for ``order``."""
    doc = _unb64("cursor", text)
    if not (isinstance(doc, list) and len(doc) == 4 and doc[0] == "s1"):
        raise InvalidQuery("cursor", "not a cursor from a previous page")
    _, made_for, key, session_id = doc
    if made_for != order:
        raise InvalidQuery("cursor", f"was made for order={made_for}, not order={order}")
    if not isinstance(key, int | float) or isinstance(key, bool) or not math.isfinite(key):
        raise InvalidQuery("cursor", "not a cursor from a previous page")
    if not isinstance(session_id, str):
        raise InvalidQuery("cursor", "not a cursor from a previous page")
    return float(key), session_id


def encode_calls_cursor(started_at: float, event_id: str) -> str:
    return _b64(["c1", started_at, event_id])


def decode_calls_cursor(text: str) -> tuple[float, str]:
    doc = _unb64("calls_after", text)
    ok = isinstance(doc, list) and len(doc) == 3 and doc[0] == "c1"
    if not ok or not isinstance(doc[1], int | float) or not isinstance(doc[2], str):
        raise InvalidQuery("calls_after", "not a cursor from a previous answer")
    return float(doc[1]), doc[2]


def check_calls_limit(calls_limit: int) -> None:
    if not 1 <= calls_limit <= 100_000:
        raise InvalidQuery("calls_limit", "must be between 1 and 100000")


def check_window(since: float, until: float, group_by: str) -> None:
    if group_by not in GROUP_BYS:
        raise InvalidQuery("group_by", f"must be one of {', '.join(GROUP_BYS)}")
    if not (math.isfinite(since) and math.isfinite(until)) or since < 0:
        raise InvalidQuery("since", "must be a time after 1970")
    if until < since:
        raise InvalidQuery("until", "must not be before since")


def prefix_bound(q: str) -> str:
    """The smallest string above every string that starts with ``q`` (for a primary-key range)."""
    return q + "\U0010ffff"
