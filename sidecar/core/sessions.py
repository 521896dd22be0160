"""Sessions (SPEC R-AC-3/4/5, §13): pure aggregation of a session's events.

The store is the source of truth: :func:`session_summary` and :func:`list_sessions` rebuild sessions from
the events they are given (a window's events give that window's part of a session). Live traffic is
followed by :class:`sidecar.core.session_lifecycle.SessionLifecycle`, under the same definitions.

Definitions used everywhere (sessions API, ``report``, ``check``):

* a *model call* is a forwarded ``/v1/messages`` request (operation ``chat``, SDK retries included);
  ``count_tokens``, refused requests and answers from the response cache (outcome ``cache_hit``) are not
  model calls;
* token counts, cost, ``tool_calls`` (``tool_use`` blocks) and ``model_time_s`` (sum of durations) are
  summed over model calls; ``tool_time_s`` sums the measured tool latencies;
* percentiles are **nearest-rank**: the smallest observed value with at least ``q`` % of the values at or
  below it (``sorted(v)[ceil(q/100 * n) - 1]``), always an observed value;
* events whose ``session_id`` is empty belong to no session and are skipped.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sidecar.core.events import CACHE_HIT, REFUSED, CallEvent
from sidecar.core.timestamps import iso_utc

CHAT = "chat"


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank ``q``-th percentile (0 < q <= 100) of ``values``; ``None`` when there are none."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def is_model_call(event: CallEvent) -> bool:
    return event.operation == CHAT and event.outcome != REFUSED and event.outcome != CACHE_HIT


def model_name(event: CallEvent) -> str:
    """The name reports group by: the price table's canonical id, else the requested id, else ``unknown``."""
    return event.model_canonical or event.model or "unknown"


def cache_hit_ratio(input_tokens: int, cache_read: int, cache_creation: int) -> float | None:
    """``cache_read / (input + cache_read + cache_creation)``; ``None`` when no input was seen."""
    total = input_tokens + cache_read + cache_creation
    return cache_read / total if total else None


def tool_stats(events: Iterable[CallEvent]) -> dict[str, dict[str, Any]]:
    """Per tool name: ``count`` (``tool_use`` blocks in model calls), ``measured`` (latencies seen),
    ``errors`` (results with ``is_error``), ``p50_s``, ``p95_s``, ``total_s`` over the measured latencies.

    A tool whose result is measured but whose ``tool_use`` lies outside ``events`` has ``count`` 0.
    """
    counts: dict[str, int] = defaultdict(int)
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    for e in events:
        if is_model_call(e):
            for name in e.tool_uses:
                counts[name] += 1
        for r in e.tool_results:
            latencies[r.name].append(r.latency_s)
            errors[r.name] += int(r.is_error)
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(set(counts) | set(latencies)):
        lat = latencies.get(name, [])
        out[name] = {
            "count": counts.get(name, 0),
            "measured": len(lat),
            "errors": errors.get(name, 0),
            "p50_s": percentile(lat, 50),
            "p95_s": percentile(lat, 95),
            "total_s": math.fsum(lat),
        }
    return out


def _call(e: CallEvent) -> dict[str, Any]:
    u = e.usage
    return {
        "request_id": e.request_id,
        "started_at": iso_utc(e.started_at),
        "started_at_ts": e.started_at,
        "operation": e.operation,
        "model": e.model,
        "stream": e.stream,
        "status": e.status,
        "outcome": e.outcome,
        "error_type": e.error_type,
        "stop_reason": e.stop_reason,
        "retry_count": e.retry_count,
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cache_read_input_tokens": u.cache_read_input_tokens,
        "cache_creation_input_tokens": u.cache_creation_input_tokens,
        "cost_usd": e.cost_usd,
        "response_cache_savings_usd": e.response_cache_savings_usd,
        "ttft_s": e.ttft_s,
        "duration_s": e.duration_s,
        "tool_uses": list(e.tool_uses),
        "provider": e.provider,
        "agent_id": e.agent_id,
        "parent_agent_id": e.parent_agent_id,
        "tool_results": [
            {"tool_use_id": r.tool_use_id, "name": r.name, "latency_s": r.latency_s, "is_error": r.is_error}
            for r in e.tool_results
        ],
        "cache_outcome": e.cache_outcome,
        "cache_miss_reason": e.cache_miss_reason,
        "cache_miss_detail": e.cache_miss_detail,
        "cache_missed_tokens": e.cache_missed_tokens,
        "cache_miss_cost_usd": e.cache_miss_cost_usd,
        "api_cache_miss_reason": e.api_cache_miss_reason,
    }


def cache_misses(events: Iterable[CallEvent]) -> dict[str, int]:
    """Calls the cache diagnosis called a miss, per reason (SPEC R-CD-3)."""
    counts: dict[str, int] = defaultdict(int)
    for e in events:
        if e.cache_miss_reason is not None:
            counts[e.cache_miss_reason] += 1
    return dict(sorted(counts.items()))


def session_summary(
    events: Sequence[CallEvent], *, now: float, idle_timeout_s: float, with_calls: bool
) -> dict[str, Any]:
    """The sessions API object of SPEC §13 for one session's ``events`` (any order, at least one).

    ``started_at`` / ``last_seen_at`` are ISO 8601 UTC strings (``*_ts``: unix seconds); ``last_seen`` is
    the latest call end. ``open``: last seen at most ``idle_timeout_s`` before ``now``. ``cost_usd`` sums
    priced model calls exactly (``math.fsum``); ``unpriced_calls`` counts model calls without a price.
    ``calls`` (only ``with_calls``) lists every recorded call oldest first, model calls or not (told apart
    by ``operation`` / ``outcome``).
    """
    if not events:
        raise ValueError("a session needs at least one event")
    ordered = sorted(events, key=lambda e: (e.started_at, e.event_id))
    model = [e for e in ordered if is_model_call(e)]
    first, started, last_seen = ordered[0], ordered[0].started_at, max(e.ended_at for e in ordered)
    inp = sum(e.usage.input_tokens for e in model)
    read = sum(e.usage.cache_read_input_tokens for e in model)
    write = sum(e.usage.cache_creation_input_tokens for e in model)
    tool_latencies = [r.latency_s for e in ordered for r in e.tool_results]
    out: dict[str, Any] = {
        "session_id": first.session_id,
        "session_source": first.session_source,
        "app": first.app,
        "started_at": iso_utc(started),
        "started_at_ts": started,
        "last_seen_at": iso_utc(last_seen),
        "last_seen_at_ts": last_seen,
        "duration_s": last_seen - started,
        "open": now - last_seen <= idle_timeout_s,
        "model_calls": len(model),
        "error_calls": sum(1 for e in model if e.status >= 400 or e.outcome != "ok"),
        "retries": sum(1 for e in model if e.retry_count > 0),
        "tool_calls": sum(len(e.tool_uses) for e in model),
        "input_tokens": inp,
        "output_tokens": sum(e.usage.output_tokens for e in model),
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write,
        "cost_usd": math.fsum(e.cost_usd for e in model if e.cost_usd is not None),
        "unpriced_calls": sum(1 for e in model if e.cost_usd is None),
        "cache_hit_ratio": cache_hit_ratio(inp, read, write),
        "cache_savings_usd": math.fsum(e.cache_savings_usd for e in model),
        "cache_miss_cost_usd": math.fsum(e.cache_miss_cost_usd or 0.0 for e in model),
        "cache_misses": sum(1 for e in model if e.cache_miss_reason is not None),
        "cache_misses_by_reason": cache_misses(model),
        "model_time_s": math.fsum(e.duration_s for e in model),
        "tool_time_s": math.fsum(tool_latencies),
        "tools": tool_stats(ordered),
    }
    if with_calls:
        out["calls"] = [_call(e) for e in ordered]
    return out


def group_sessions(events: Iterable[CallEvent]) -> dict[str, list[CallEvent]]:
    """Events by session id, skipping events that belong to no session."""
    groups: dict[str, list[CallEvent]] = defaultdict(list)
    for e in events:
        if e.session_id:
            groups[e.session_id].append(e)
    return dict(groups)


def list_sessions(
    events: Iterable[CallEvent], *, now: float, idle_timeout_s: float, limit: int | None, order: str
) -> list[dict[str, Any]]:
    """Summaries (without ``calls``) of the sessions in ``events``.

    ``order="cost"``: most expensive first; ``"recent"``: most recently seen first (ties: most recent,
    then session id). ``limit=None`` keeps all.
    """
    if order not in ("cost", "recent"):
        raise ValueError(f"order must be 'cost' or 'recent', not {order!r}")
    summaries = [
        session_summary(evs, now=now, idle_timeout_s=idle_timeout_s, with_calls=False)
        for evs in group_sessions(events).values()
    ]
    summaries.sort(key=lambda s: s["session_id"])
    summaries.sort(key=lambda s: s["last_seen_at_ts"], reverse=True)
    if order == "cost":
        summaries.sort(key=lambda s: s["cost_usd"], reverse=True)
    return summaries if limit is None else summaries[: max(0, limit)]
