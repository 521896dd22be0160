"""Synthetic history for ``store_scale.py``: agent sessions over a week, generated in start-time order.

Most sessions make 10 to 88 calls 5 to 40 s apart; one in a thousand makes 500 (the long-session case). Each
call has realistic usage and cost, some tool use (results arrive with the next call), a few errors,
refusals and unpriced models. Events come out ordered by start time, as a live store receives them,
by merging the sessions' call schedules in a heap (memory: one entry per session, not per event).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator

from sidecar.core.events import CallEvent, ToolResult
from sidecar.core.usage import Usage

DAY = 86400.0
APPS = tuple(f"app-{k}" for k in range(5))
MODELS = ("claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001", "claude-opus-4-1-20250805")
PRICES = {MODELS[0]: (3.0, 15.0), MODELS[1]: (1.0, 5.0), MODELS[2]: (15.0, 75.0)}  # USD per Mtok in/out
TOOLS = ("search", "read_file", "edit_file", "bash", "grep", "web_fetch", "lookup", "write_file")
LONG_SESSION_CALLS = 500


def _sessions(rng: random.Random, n_events: int, now: float) -> list[tuple[float, int, float, int]]:
    """``(first start, calls, gap, index)`` per session, ~50 calls each on average."""
    out = []
    total = 0
    i = 0
    while total < n_events:
        calls = LONG_SESSION_CALLS if i % 1000 == 7 else rng.randint(10, 88)
        calls = min(calls, n_events - total)
        gap = rng.uniform(5.0, 40.0)
        start = rng.uniform(now - 7 * DAY, now - calls * gap - 60.0)
        out.append((start, calls, gap, i))
        total += calls
        i += 1
    return out


def _event(
    rng: random.Random, seq: int, sid: int, app: str, model: str, started: float, call: int
) -> CallEvent:
    priced = rng.random() > 0.005
    refused = rng.random() < 0.005
    error = not refused and rng.random() < 0.02
    inp, out = rng.randint(50, 4000), rng.randint(20, 2500)
    read = rng.randint(0, 60_000) if call else 0
    write = rng.randint(0, 8000)
    p_in, p_out = PRICES[model]
    cost = (inp * p_in + out * p_out + read * p_in * 0.1 + write * p_in * 1.25) / 1e6
    uses = tuple(rng.sample(TOOLS, rng.randint(1, 2))) if rng.random() < 0.4 else ()
    results = (
        tuple(
            ToolResult(f"toolu_{seq}_{k}", rng.choice(TOOLS), rng.expovariate(0.5), False) for k in range(1)
        )
        if call and rng.random() < 0.35
        else ()
    )
    duration = rng.lognormvariate(1.0, 0.8)
    return CallEvent(
        event_id=f"ev-{seq:010d}",
        started_at=started,
        app=app,
        session_id=f"sess-{sid:07d}",
        session_source="harness_header",
        method="POST",
        path="/v1/messages",
        operation="chat",
        stream=True,
        model=model,
        model_canonical=model if priced else None,
        request_id=f"req_{seq:012d}",
        status=429 if refused else (529 if error else 200),
        outcome="refused" if refused else ("upstream_error" if error else "ok"),
        stop_reason="tool_use" if uses else "end_turn",
        usage=Usage(inp, out, read, write, cache_creation_5m=write, cache_creation_1h=0),
        cost_usd=cost if priced and not refused else None,
        cache_savings_usd=read * p_in * 0.9 / 1e6,
        ttfb_s=duration * 0.2,
        ttft_s=duration * 0.25,
        duration_s=duration,
        overhead_s=0.0003,
        tool_use_ids=tuple(f"toolu_{seq}_u{k}" for k in range(len(uses))),
        tool_uses=uses,
        tool_results=results,
        system_hash="9f2c",
        request_bytes=rng.randint(2000, 200_000),
        response_bytes=rng.randint(500, 20_000),
    )


def history(n_events: int, now: float, seed: int = 1) -> Iterator[CallEvent]:
    """``n_events`` calls in ``n_events / 50`` sessions over the 7 days before ``now``, oldest first."""
    rng = random.Random(seed)
    heap: list[tuple[float, int, int]] = []  # (next start, session, calls made)
    plan = {}
    for start, calls, gap, i in _sessions(rng, n_events, now):
        plan[i] = (calls, gap, rng.choice(APPS), rng.choice(MODELS))
        heap.append((start, i, 0))
    heapq.heapify(heap)
    seq = 0
    while heap:
        started, i, made = heapq.heappop(heap)
        calls, gap, app, model = plan[i]
        yield _event(rng, seq, i, app, model, started, made)
        seq += 1
        if made + 1 < calls:
            heapq.heappush(heap, (started + gap * rng.uniform(0.5, 1.5), i, made + 1))


def long_session_id(n_events: int) -> str | None:
    """The id of a 500-call session, if the history has one (sessions 7, 1007, ...)."""
    return "sess-0000007" if n_events >= 50 * 8 + LONG_SESSION_CALLS else None
