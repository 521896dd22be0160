"""``GET /sidecar/v1/summary`` (SPEC R-RS-3, R-RS-5): totals and one row per group over a window, from
the hourly rollup and latency histograms of the read side."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from sidecar.admin.reads import (
    DEFAULT_WINDOW_S,
    FLUSH_TIMEOUT_S,
    Reader,
    Scope,
    Time,
    invalid,
    parse_time,
)
from sidecar.store.queries import GROUP_BYS, InvalidQuery, check_window


class Figures(BaseModel):
    """A group's (or the window's) figures: calls, errors, tokens by bucket, cost, cache savings,
    cache-miss cost, latency and TTFT p50/p95 (from histogram buckets)."""

    model_config = ConfigDict(extra="forbid")

    requests: int
    model_calls: int
    ok_calls: int
    error_calls: int
    unpriced_calls: int
    tool_calls: int
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int
    cache_write_5m: int
    cache_write_1h: int
    measured_tool_results: int
    cache_misses: int
    cost_usd: float
    cache_savings_usd: float
    cache_miss_cost_usd: float
    model_time_s: float
    tool_time_s: float
    cache_hit_ratio: float | None
    duration_p50_s: float | None
    duration_p95_s: float | None
    ttft_p50_s: float | None
    ttft_p95_s: float | None


class Misses(BaseModel):
    model_config = ConfigDict(extra="forbid")

    misses: int
    cost_usd: float


class Totals(Figures):
    sessions: int
    cache_misses_by_reason: dict[str, Misses] = Field(
        description="The window's cache misses and the dollars they lost, by reason (SPEC R-CD-3)"
    )


class Group(Figures):
    key: str | None
    key_ts: float | None = None  # the hour's or day's start, for group_by=hour|day


class Headroom(BaseModel):
    """The latest rate-limit headroom an answer reported for an app and key fingerprint (SPEC R-RL-1):
    an API-key limit (``type``) or a subscription window (``window``, with the ``status``)."""

    model_config = ConfigDict(extra="forbid")

    app: str
    key: str
    seen_at: float
    type: str | None = None
    window: str | None = None
    remaining: float | None = None
    limit: float | None = None
    utilization: float | None = None
    reset: float | None = None
    status: str | None = None


class Summary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: str
    until: str
    group_by: str
    totals: Totals
    rows: list[Group]
    ratelimit: list[Headroom] | None = Field(
        default=None, description="This replica's latest rate-limit headroom, whatever the window or scope"
    )


router = APIRouter(tags=["sessions"])


@router.get(
    "/sidecar/v1/summary",
    name="get_summary",
    response_model=Summary,
    response_model_exclude_unset=True,
)
async def summary_view(
    reader: Reader,
    since: Time = None,
    until: Time = None,
    group_by: Annotated[str, Query(description=f"One of {', '.join(GROUP_BYS)}.")] = "app",
    scope: Scope = "local",
) -> dict[str, Any]:
    """Calls started between ``since`` (default: 7 days ago) and ``until`` (default: now)."""
    now = time.time()
    start = parse_time("since", since, now - DEFAULT_WINDOW_S)
    end = parse_time("until", until, now)
    store = reader.pick(scope)
    try:
        check_window(start, end, group_by)
        if scope == "local":
            await asyncio.to_thread(reader.flush, FLUSH_TIMEOUT_S)
        doc: dict[str, Any] = await asyncio.to_thread(store.summary, start, end, group_by)
    except InvalidQuery as exc:
        raise invalid(exc) from None
    if reader.ratelimits is not None:
        doc["ratelimit"] = reader.ratelimits()
    return doc
