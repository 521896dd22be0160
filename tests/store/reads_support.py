"""Shared by the read-side tests: varied events whose float sums are exact in any order, and reference
aggregates computed in Python from the events (through ``core``), independently of the stores' SQL."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from sidecar.core.events import CallEvent, ToolResult
from sidecar.core.report import is_success
from sidecar.core.sessions import group_sessions, is_model_call, model_name, percentile, session_summary
from sidecar.core.usage import Usage
from sidecar.store.latency_buckets import DURATION, TTFT, UPPER, bucket_of
from sidecar.store.sqlite import SQLiteStore
from sidecar.store.sqlite_purge import hour_of
from sidecar.store.sqlite_reads import SQLiteReads

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
SPAN_S = 4 * 3600
SESSIONS = ("", "s-a", "s-b", "s-c", "s-d", "t-e")
TOOLS = ("grep", "read", "search ü")


def _dyadic(max_units: int, unit: int) -> st.SearchStrategy[float]:
    # Multiples of 1/unit: sums of a few hundred of them are exact, so every store agrees bit for bit.
    return st.integers(0, max_units).map(lambda k: k / unit)


@st.composite
def events(draw: st.DrawFn, index: int) -> CallEvent:
    op = draw(st.sampled_from(["chat", "chat", "chat", "count_tokens", "models"]))
    outcome = draw(st.sampled_from(["ok", "ok", "ok", "upstream_error", "refused", "client_disconnected"]))
    status = draw(st.sampled_from([200, 200, 201, 400, 429, 529, 0]))
    model = draw(st.sampled_from([None, "claude-a", "claude-b", "claude-x"]))
    write = draw(st.integers(0, 3000))
    split = draw(st.none() | st.integers(0, 4000))
    uses = tuple(draw(st.lists(st.sampled_from(TOOLS), max_size=3)))
    results = tuple(
        ToolResult(f"toolu_{index}_{k}", name, draw(_dyadic(4000, 8)), draw(st.booleans()))
        for k, name in enumerate(draw(st.lists(st.sampled_from(TOOLS), max_size=2)))
    )
    return CallEvent(
        event_id=f"ev-{index:04d}",
        started_at=T0
        + draw(st.sampled_from([0, 0, 86400, 2 * 86400 - 3600]))
        + draw(st.integers(0, SPAN_S * 4)) / 4,
        app=draw(st.sampled_from(["app-1", "app-2"])),
        session_id=draw(st.sampled_from(SESSIONS)),
        session_source=draw(st.sampled_from(["header", "fingerprint"])),
        method="POST",
        path=f"/v1/{op}",
        operation=op,
        stream=draw(st.booleans()),
        model=model,
        model_canonical=model if model in ("claude-a", "claude-b") else None,
        status=status,
        outcome=outcome,
        usage=Usage(
            input_tokens=draw(st.integers(0, 5000)),
            output_tokens=draw(st.integers(0, 2000)),
            cache_read_input_tokens=draw(st.integers(0, 9000)),
            cache_creation_input_tokens=write,
            cache_creation_1h=split,
            cache_creation_5m=None if split is None else max(0, write - split),
        ),
        cost_usd=draw(st.none() | _dyadic(100_000, 1024)),
        cache_savings_usd=draw(_dyadic(10_000, 1024)),
        ttft_s=draw(st.none() | _dyadic(400, 16)),
        duration_s=draw(_dyadic(800, 8)),
        tool_uses=uses,
        tool_use_ids=tuple(f"toolu_{index}_u{k}" for k in range(len(uses))),
        tool_results=results,
        retry_count=draw(st.sampled_from([0, 0, 1])),
        **with_miss(index, write),
        **draw(_agent_fields()),
    )


AGENTS = ("main", "sub-1", "sub-2")
PROVIDERS = ("anthropic", "bedrock", "vertex")


@st.composite
def _agent_fields(draw: st.DrawFn) -> dict[str, Any]:
    agent = draw(st.none() | st.sampled_from(AGENTS))
    parent = draw(st.none() | st.just("main")) if agent not in (None, "main") else None
    return {"agent_id": agent, "parent_agent_id": parent, "provider": draw(st.sampled_from(PROVIDERS))}


def with_agents(index: int) -> dict[str, Any]:
    """Claude Code agent ids and providers, in turn by index: a main agent, two subagents, none."""
    agent = (None, "main", "sub-1", "sub-2", "main")[index % 5]
    parent = "main" if agent in ("sub-1", "sub-2") else None
    return {"agent_id": agent, "parent_agent_id": parent, "provider": PROVIDERS[index // 3 % 3]}


_MISS_REASONS = ("system_changed", "ttl_expired", "evicted")


def with_miss(index: int, write: int) -> dict[str, Any]:
    """The cache diagnosis of every fourth event: a miss (reasons in turn, a dyadic cost); none else."""
    if index % 4 != 1:
        return {}
    return {
        "cache_outcome": "miss",
        "cache_miss_reason": _MISS_REASONS[index // 4 % len(_MISS_REASONS)],
        "cache_missed_tokens": write,
        "cache_miss_cost_usd": write / 1024,
    }


def event_pool(max_size: int = 40) -> st.SearchStrategy[list[CallEvent]]:
    return st.integers(1, max_size).flatmap(lambda n: st.tuples(*(events(i) for i in range(n)))).map(list)


def sample_events(
    seed: int, n: int, *, sessions: Sequence[str] = SESSIONS, span_s: int = SPAN_S, agents: bool = False
) -> list[CallEvent]:
    """``n`` varied events from a seeded generator (the strategy's values, without the search);
    ``agents``: with agent ids and providers (:func:`with_agents`), else all first-party, no agents."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        model = rng.choice([None, "claude-a", "claude-b", "claude-x"])
        write = rng.randrange(3000)
        split = rng.choice([None, rng.randrange(4000)])
        uses = tuple(rng.choice(TOOLS) for _ in range(rng.choice([0, 0, 1, 3])))
        results = tuple(
            ToolResult(f"toolu_{i}_{k}", rng.choice(TOOLS), rng.randrange(4000) / 8, rng.random() < 0.2)
            for k in range(rng.choice([0, 0, 1, 2]))
        )
        out.append(
            CallEvent(
                event_id=f"ev-{seed}-{i:05d}",
                started_at=T0 + rng.randrange(span_s * 4) / 4,
                app=rng.choice(["app-1", "app-2"]),
                session_id=rng.choice(list(sessions)),
                session_source=rng.choice(["header", "fingerprint"]),
                method="POST",
                path="/v1/messages",
                operation=rng.choice(["chat", "chat", "chat", "count_tokens"]),
                stream=rng.random() < 0.5,
                model=model,
                model_canonical=model if model in ("claude-a", "claude-b") else None,
                status=rng.choice([200, 200, 200, 400, 529]),
                outcome=rng.choice(["ok", "ok", "ok", "ok", "upstream_error", "refused"]),
                usage=Usage(
                    input_tokens=rng.randrange(5000),
                    output_tokens=rng.randrange(2000),
                    cache_read_input_tokens=rng.randrange(9000),
                    cache_creation_input_tokens=write,
                    cache_creation_1h=split,
                    cache_creation_5m=None if split is None else max(0, write - split),
                ),
                cost_usd=rng.choice([None, rng.randrange(100_000) / 1024, rng.randrange(100_000) / 1024]),
                cache_savings_usd=rng.randrange(10_000) / 1024,
                ttft_s=rng.choice([None, rng.randrange(400) / 16]),
                duration_s=rng.randrange(800) / 8,
                tool_uses=uses,
                tool_results=results,
                retry_count=rng.choice([0, 0, 1]),
                **with_miss(i, write),
                **(with_agents(i) if agents else {}),
            )
        )
    return out


def open_reads(path: Path, batches: Iterable[Sequence[CallEvent]]) -> SQLiteReads:
    """A store at ``path`` holding ``batches`` (written in turn), read through the query layer."""
    store = SQLiteStore(path)
    store.open()
    for batch in batches:
        store.write_events(batch)
    store.close()
    return SQLiteReads(path)


def first_wins(batches: Iterable[Sequence[CallEvent]]) -> dict[str, CallEvent]:
    """What a store keeps of these batches: each event id once, the first write."""
    kept: dict[str, CallEvent] = {}
    for batch in batches:
        for e in batch:
            kept.setdefault(e.event_id, e)
    return kept


def expected_sessions(evs: Iterable[CallEvent], *, now: float, idle_timeout_s: float) -> dict[str, Any]:
    """Per session: ``session_summary`` plus the fields only the rollup has."""
    out: dict[str, Any] = {}
    for sid, group in group_sessions(evs).items():
        s = session_summary(group, now=now, idle_timeout_s=idle_timeout_s, with_calls=False)
        model = [e for e in group if is_model_call(e)]
        splits = [e.usage.write_buckets() for e in model]
        s.update(
            events=len(group),
            tokens=sum(e.usage.total_input + e.usage.output_tokens for e in model),
            cache_write_5m=sum(a for a, _ in splits),
            cache_write_1h=sum(b for _, b in splits),
            measured_tool_results=sum(len(e.tool_results) for e in group),
            models=sorted({m for e in model if (m := e.model_canonical or e.model) is not None}),
            agent_ids=sorted({e.agent_id for e in group if e.agent_id is not None}),
            providers=sorted({e.provider for e in group}),
        )
        s.pop("cache_misses_by_reason")  # the session detail's, not the list's
        out[sid] = s
    return out


def expected_hourly(evs: Iterable[CallEvent]) -> dict[tuple[int, str, str], dict[str, Any]]:
    rows: dict[tuple[int, str, str], dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    for e in evs:
        r = rows[(hour_of(e.started_at), e.app, model_name(e))]
        r["requests"] += 1
        r["tool_results"] += len(e.tool_results)
        r["tool_time_s"] += math.fsum(t.latency_s for t in e.tool_results)
        if not is_model_call(e):
            continue
        u = e.usage
        five, one = u.write_buckets()
        r["model_calls"] += 1
        r["ok_calls"] += is_success(e)
        r["error_calls"] += not is_success(e)
        r["unpriced_calls"] += e.cost_usd is None
        r["tool_calls"] += len(e.tool_uses)
        r["input_tokens"] += u.input_tokens
        r["output_tokens"] += u.output_tokens
        r["cache_read_input_tokens"] += u.cache_read_input_tokens
        r["cache_creation_input_tokens"] += u.cache_creation_input_tokens
        r["cache_write_5m"] += five
        r["cache_write_1h"] += one
        r["cost_usd"] += e.cost_usd or 0.0
        r["cache_savings_usd"] += e.cache_savings_usd
        r["model_time_s"] += e.duration_s
        r["cache_miss_cost_usd"] += e.cache_miss_cost_usd or 0.0
        r["cache_misses"] += e.cache_miss_reason is not None
    return {k: dict(v) for k, v in rows.items()}


def expected_hist(
    evs: Iterable[CallEvent], period_s: int = 3600
) -> dict[tuple[int, str, str, int, int], int]:
    out: dict[tuple[int, str, str, int, int], int] = defaultdict(int)
    for e in evs:
        if not is_success(e):
            continue
        key = (hour_of(e.started_at) // period_s * period_s, e.app, model_name(e))
        out[(*key, DURATION, bucket_of(e.duration_s))] += 1
        if e.ttft_s is not None:
            out[(*key, TTFT, bucket_of(e.ttft_s))] += 1
    return dict(out)


def bucketed_percentile(values: Sequence[float], q: float) -> float | None:
    """What the stores report: the upper edge of the bucket of the exact nearest-rank percentile."""
    p = percentile(values, q)
    return None if p is None else UPPER[bucket_of(p)]


# The list and summary tests' traffic: 600 calls over 4 hours in 42 sessions (and none).
EVENTS = sample_events(7, 600, sessions=("", *(f"s-{k:02d}" for k in range(40)), "t-1", "t-2"))
